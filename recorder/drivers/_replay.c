/*
 * The replay loop of `record --pcap` in C, for Ethernet frames (the common
 * case): each record's frame through the program with one BPF_PROG_TEST_RUN,
 * as packet_runner.PacketRunner.run does it, without a Python step per
 * frame. replay_loop.replay_each, frame by frame, is the reference;
 * tests/test_bulk_replay.py and tests/test_compiled_recording.py hold the
 * two to the same logs.
 *
 * The loop only runs frames. Whatever else a record may call for, it stops
 * and returns for Python to do: a sweep that is due, ring buffer records
 * that cannot wait, a frame the kernel refused, a record it does not read.
 * Records that can wait (a DNS message, a connection's end: Python keeps
 * their state, the kernel needs nothing back) stay in the ring until the
 * next stop, so a DNS replay is not a return to Python per message.
 *
 * It reads classic pcap and pcapng's Enhanced Packet Blocks of Ethernet
 * interfaces. Anything else (a section header, an interface description,
 * another block or link type, a timestamp out of range, and every kind of
 * damage) it hands over: capture_file.py reads it, or says why it cannot.
 *
 * Replayer(prog_fd, ring_consumer, ring_producer, ring_data, ring_size, may_wait)
 *   prog_fd: the pcap program; the ring buffer as this process maps it
 *   (ringbuf.RingBuffer.mapped): the addresses of its two positions and of
 *   its data area (mapped twice in a row), and its size; may_wait: the event
 *   types whose records can wait for the next stop, a bit per type.
 * Replayer.classic(big_endian, nano, limit)
 *   Read classic pcap records: the file's byte order and timestamp
 *   resolution, and the largest record length that is not damage.
 * Replayer.pcapng(big_endian, interfaces)
 *   Read a pcapng section: its byte order and its interfaces in order, each
 *   (ethernet, units_per_s, offset_s) as capture_file.PcapngLayout has them.
 *
 * Replayer.run(chunk, offset, next_sweep_ns, max_records) -> (stop, offset)
 *   Takes whole records of chunk (bytes) from offset on, until one of the
 *   stops below. next_sweep_ns: the packet time at which a sweep is due (a
 *   record at or past it stops the loop before it is taken); 0: none yet.
 *   Returns why it stopped and the offset of the first record not taken.
 *   Counters of the call: records (taken), frames (run through the program),
 *   last_ns (the latest packet time taken, 0 for none); of the stop: stop_ts_ns
 *   and stop_length (the record that is due a sweep or was refused), and
 *   urgent: an EVENTS stop found a record that cannot wait (not just a ring a
 *   quarter full).
 *
 * run() holds no Python object while it runs frames and releases the GIL:
 * bulk_replay handles the events of the frames before in the meantime.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/bpf.h>

#ifndef SOURCE_SHA256
#define SOURCE_SHA256 ""
#endif

/* Why run() stopped (mirrored by bulk_replay.Stop). */
enum stop {
    STOP_END = 0,       /* no whole record left in the chunk */
    STOP_SWEEP = 1,     /* the record at offset is due a sweep first; nothing of it is taken */
    STOP_EVENTS = 2,    /* the ring holds a record that cannot wait, or is a quarter full */
    STOP_REJECTED = 3,  /* the kernel refused the frame just taken (EINVAL) */
    STOP_HAND_OVER = 4, /* the record at offset is for the reference reader (see above) */
    STOP_BUDGET = 5,    /* max_records taken: Python's turn (signals, progress) */
};

enum layout { LAYOUT_NONE, LAYOUT_CLASSIC, LAYOUT_PCAPNG };

#define CLASSIC_HEADER 16
#define PCAPNG_SHB 0x0A0D0D0Au          /* the same in either byte order */
#define PCAPNG_EPB 6u
#define PCAPNG_EPB_FIXED 20             /* interface, timestamp (2), captured and wire lengths */
#define PCAPNG_MAX_BLOCK (16u * 1024 * 1024)
#define ETHERNET_HEADER 14
#define IPV4_MIN_FRAME (14 + 20)
#define IPV6_MIN_FRAME (14 + 40)
#define MARK_PADDED (1u << 31)          /* CA_MARK_PADDED (bpf/cicd_audit.h) */
#define DEFAULT_MAX_DATA 3712           /* as packet_runner.DEFAULT_MAX_DATA */
#define NS_PER_S 1000000000ull

/* A BPF ring buffer record's header (ringbuf.py: BUSY_BIT, DISCARD_BIT, HEADER_SIZE). */
#define RINGBUF_BUSY (1u << 31)
#define RINGBUF_DISCARD (1u << 30)
#define RINGBUF_HEADER 8

/* struct __sk_buff offsets used as test-run context (packet_runner.py). */
#define SKB_CTX_SIZE 192
#define SKB_MARK 8
#define SKB_TSTAMP 152
#define SKB_WIRE_LEN 160
#define WIRE_LEN_UNKNOWN 65536          /* as packet_runner.WIRE_LEN_UNKNOWN */

struct interface {
    int ethernet;
    uint64_t units_per_s;
    int64_t offset_s;
};

#define RECORD_READ (-1)                /* a record reader's "read": not a stop */

/* One packet record as read: its frame, its packet time, its size in the file. */
struct record {
    const uint8_t *frame;
    uint32_t caplen;
    uint32_t wire_len;                  /* the packet's length on the wire, as the record says */
    uint64_t ts_ns;
    Py_ssize_t size;
};

typedef struct {
    PyObject_HEAD
    int prog_fd;
    uint64_t *ring_consumer;
    uint64_t *ring_producer;
    const uint8_t *ring_data;   /* mapped twice in a row: a record is contiguous past the end */
    uint64_t ring_mask;         /* its size - 1 */
    uint64_t ring_checked;      /* records before this position were looked at */
    int urgent;                 /* the last EVENTS stop was for a record that cannot wait */
    uint32_t may_wait;          /* event types whose records can wait, a bit per type */
    int layout;
    int big_endian;
    int nano;                   /* classic */
    uint32_t limit;             /* classic */
    struct interface *interfaces;   /* pcapng: the section's */
    Py_ssize_t n_interfaces;
    /* Counters of the last run() and the record it stopped at. */
    Py_ssize_t records;
    Py_ssize_t frames;
    unsigned long long last_ns;
    unsigned long long stop_ts_ns;
    Py_ssize_t stop_length;
    Py_ssize_t max_data;        /* the most bytes a test-run skb takes here (shrinks once, as PacketRunner's) */
} Replayer;

static uint32_t read_u32(const uint8_t *p, int big_endian)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return big_endian ? __builtin_bswap32(v) : v;
}

/* RECORD_READ and *r filled, or the stop (STOP_END: not all of it in the chunk). */
static int classic_record(const Replayer *self, const uint8_t *at, Py_ssize_t left, struct record *r)
{
    if (left < CLASSIC_HEADER)
        return STOP_END;
    uint32_t caplen = read_u32(at + 8, self->big_endian);
    if (caplen > self->limit)
        return STOP_HAND_OVER;          /* damage */
    if ((Py_ssize_t)caplen > left - CLASSIC_HEADER)
        return STOP_END;
    r->ts_ns = (uint64_t)read_u32(at, self->big_endian) * NS_PER_S +
               (uint64_t)read_u32(at + 4, self->big_endian) * (self->nano ? 1 : 1000);
    r->frame = at + CLASSIC_HEADER;
    r->caplen = caplen;
    r->wire_len = read_u32(at + 12, self->big_endian);
    r->size = CLASSIC_HEADER + caplen;
    return RECORD_READ;
}

static int pcapng_record(const Replayer *self, const uint8_t *at, Py_ssize_t left, struct record *r)
{
    if (left < 8)
        return STOP_END;
    uint32_t type, length;
    memcpy(&type, at, 4);
    if (type == PCAPNG_SHB)
        return STOP_HAND_OVER;
    type = read_u32(at, self->big_endian);
    length = read_u32(at + 4, self->big_endian);
    if (type != PCAPNG_EPB || length < 12 + PCAPNG_EPB_FIXED || length % 4 || length > PCAPNG_MAX_BLOCK)
        return STOP_HAND_OVER;          /* another block, or damage */
    if ((Py_ssize_t)length > left)
        return STOP_END;
    const uint8_t *body = at + 8;
    uint32_t iface = read_u32(body, self->big_endian);
    uint32_t caplen = read_u32(body + 12, self->big_endian);
    if (read_u32(at + length - 4, self->big_endian) != length || iface >= self->n_interfaces ||
        !self->interfaces[iface].ethernet || caplen > length - 12 - PCAPNG_EPB_FIXED)
        return STOP_HAND_OVER;
    const struct interface *in = &self->interfaces[iface];
    uint64_t units = (uint64_t)read_u32(body + 4, self->big_endian) << 32 | read_u32(body + 8, self->big_endian);
    __int128 ts = (__int128)((unsigned __int128)units * NS_PER_S / in->units_per_s) + (__int128)in->offset_s * NS_PER_S;
    if (ts < 0 || ts > (__int128)UINT64_MAX)
        return STOP_HAND_OVER;          /* the reference's arithmetic is Python's: no range to keep to */
    r->ts_ns = (uint64_t)ts;
    r->frame = body + PCAPNG_EPB_FIXED;
    r->caplen = caplen;
    r->wire_len = read_u32(body + 16, self->big_endian);
    r->size = length;
    return RECORD_READ;
}

/* Whether the ring's records must be handled before the next frame: one is
 * of a type that cannot wait (a fragment: Python reassembles it and runs the
 * datagram through the program), or the ring is a quarter full (room for
 * what the frames up to the next stop write). Each record is looked at once. */
static int ring_needs_handling(Replayer *self)
{
    uint64_t consumer = __atomic_load_n(self->ring_consumer, __ATOMIC_ACQUIRE);
    uint64_t producer = __atomic_load_n(self->ring_producer, __ATOMIC_ACQUIRE);
    uint64_t pos = self->ring_checked > consumer ? self->ring_checked : consumer;

    while (pos < producer) {
        uint32_t header = __atomic_load_n((const uint32_t *)(self->ring_data + (pos & self->ring_mask)),
                                          __ATOMIC_ACQUIRE);
        uint32_t size = header & ~(RINGBUF_BUSY | RINGBUF_DISCARD);
        if (header & RINGBUF_BUSY) {
            self->urgent = 1;
            return 1;                   /* still being written (not after a test run): Python's to wait for */
        }
        if (!(header & RINGBUF_DISCARD)) {
            uint32_t type = UINT32_MAX;
            if (size >= sizeof(type))
                memcpy(&type, self->ring_data + (pos & self->ring_mask) + RINGBUF_HEADER, sizeof(type));
            if (type >= 32 || !(self->may_wait & (1u << type))) {
                self->ring_checked = pos;
                self->urgent = 1;
                return 1;
            }
        }
        pos += (size + RINGBUF_HEADER + 7) & ~7ull;
    }
    self->ring_checked = pos;
    return producer - consumer > (self->ring_mask + 1) / 4;
}

/* One frame through the program: 0, or an errno. A frame longer than the kernel
 * takes is cut; the mark carries its captured length, wire_len the record's
 * (as PacketRunner.run). */
/* What BPF_PROG_TEST_RUN needs at least to build an skb from the frame (packet_runner.runnable). */
static Py_ssize_t min_data(const uint8_t *frame, Py_ssize_t length)
{
    if (length < ETHERNET_HEADER)
        return ETHERNET_HEADER;
    if (frame[12] == 0x08 && frame[13] == 0x00)
        return IPV4_MIN_FRAME;
    if (frame[12] == 0x86 && frame[13] == 0xdd)
        return IPV6_MIN_FRAME;
    return ETHERNET_HEADER;
}

static int run_frame(Replayer *self, const uint8_t *frame, Py_ssize_t length, uint32_t wire_len, uint64_t ts_ns)
{
    uint8_t ctx[SKB_CTX_SIZE] = {0};
    uint8_t padded[IPV6_MIN_FRAME];
    uint32_t mark = (uint32_t)length;
    Py_ssize_t need = min_data(frame, length);
    if (length < need) {
        /* Padded with zeros, its captured length in the mark: the program cuts it back. */
        memset(padded, 0, sizeof(padded));
        memcpy(padded, frame, (size_t)length);
        mark = (uint32_t)length | MARK_PADDED;
        frame = padded;
        length = need;
    }
    if (wire_len < (uint64_t)length)
        wire_len = (uint32_t)length;
    if (wire_len > WIRE_LEN_UNKNOWN)
        wire_len = WIRE_LEN_UNKNOWN;
    memcpy(ctx + SKB_MARK, &mark, sizeof(mark));
    memcpy(ctx + SKB_TSTAMP, &ts_ns, sizeof(ts_ns));
    memcpy(ctx + SKB_WIRE_LEN, &wire_len, sizeof(wire_len));
    for (;;) {
        Py_ssize_t size = length < self->max_data ? length : self->max_data;
        union bpf_attr attr;
        memset(&attr, 0, sizeof(attr));
        attr.test.prog_fd = (uint32_t)self->prog_fd;
        attr.test.data_in = (uint64_t)(uintptr_t)frame;
        attr.test.data_size_in = (uint32_t)size;
        attr.test.repeat = 1;
        attr.test.ctx_in = (uint64_t)(uintptr_t)ctx;
        attr.test.ctx_size_in = SKB_CTX_SIZE;
        if (syscall(__NR_bpf, BPF_PROG_TEST_RUN, &attr, sizeof(attr)) == 0)
            return 0;
        if (errno == EINVAL && size > 1024 && self->max_data > 1024) {
            self->max_data = size - 256;    /* this kernel allows less: shrink and retry */
            continue;
        }
        self->stop_length = size;
        return errno;
    }
}

static PyObject *Replayer_run(Replayer *self, PyObject *args)
{
    Py_buffer chunk;
    Py_ssize_t offset, max_records;
    unsigned long long next_sweep_ns;
    if (!PyArg_ParseTuple(args, "y*nKn", &chunk, &offset, &next_sweep_ns, &max_records))
        return NULL;
    if (self->layout == LAYOUT_NONE || offset < 0 || offset > chunk.len) {
        PyBuffer_Release(&chunk);
        PyErr_SetString(PyExc_ValueError, self->layout == LAYOUT_NONE ? "no layout: call classic() or pcapng() first"
                                                                       : "offset outside the chunk");
        return NULL;
    }
    const uint8_t *data = chunk.buf;
    int stop = STOP_BUDGET;
    int error = 0;
    self->records = self->frames = 0;
    self->last_ns = 0;
    self->urgent = 0;

    Py_BEGIN_ALLOW_THREADS
    while (self->records < max_records) {
        struct record r;
        stop = self->layout == LAYOUT_CLASSIC ? classic_record(self, data + offset, chunk.len - offset, &r)
                                              : pcapng_record(self, data + offset, chunk.len - offset, &r);
        if (stop != RECORD_READ)
            break;
        r.ts_ns -= r.ts_ns % 1000;      /* as Zeek reads it: replay_loop.as_zeek_reads_it */
        if (next_sweep_ns && r.ts_ns >= next_sweep_ns) {
            self->stop_ts_ns = r.ts_ns;
            stop = STOP_SWEEP;
            break;
        }
        offset += r.size;
        self->records++;
        if (r.ts_ns > self->last_ns)
            self->last_ns = r.ts_ns;
        stop = STOP_BUDGET;
        error = run_frame(self, r.frame, r.caplen, r.wire_len, r.ts_ns);
        if (error == EINVAL) {
            self->stop_ts_ns = r.ts_ns;
            error = 0;
            stop = STOP_REJECTED;
            break;
        }
        if (error)
            break;
        self->frames++;
        if (__atomic_load_n(self->ring_producer, __ATOMIC_ACQUIRE) != self->ring_checked &&
            ring_needs_handling(self)) {
            stop = STOP_EVENTS;
            break;
        }
    }
    Py_END_ALLOW_THREADS

    PyBuffer_Release(&chunk);
    if (error) {            /* as PacketRunner.run says it */
        PyObject *exc = Py_BuildValue("(iN)", error, PyUnicode_FromFormat("BPF_PROG_TEST_RUN failed: %s",
                                                                           strerror(error)));
        if (exc) {
            PyErr_SetObject(PyExc_OSError, exc);
            Py_DECREF(exc);
        }
        return NULL;
    }
    return Py_BuildValue("in", stop, offset);
}

static PyObject *Replayer_classic(Replayer *self, PyObject *args)
{
    unsigned int limit;
    if (!PyArg_ParseTuple(args, "ppI", &self->big_endian, &self->nano, &limit))
        return NULL;
    self->limit = limit;
    self->layout = LAYOUT_CLASSIC;
    Py_RETURN_NONE;
}

static PyObject *Replayer_pcapng(Replayer *self, PyObject *args)
{
    int big_endian;
    PyObject *interfaces;
    if (!PyArg_ParseTuple(args, "pO", &big_endian, &interfaces))
        return NULL;
    PyObject *seq = PySequence_Fast(interfaces, "interfaces must be a sequence");
    if (!seq)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    struct interface *table = PyMem_Calloc(n ? (size_t)n : 1, sizeof(*table));
    if (!table) {
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        struct interface *in = &table[i];
        unsigned long long units;
        long long offset;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "pKL", &in->ethernet, &units, &offset)) {
            PyMem_Free(table);
            Py_DECREF(seq);
            return NULL;
        }
        if (units == 0)
            in->ethernet = 0;           /* no clock to divide by: the reference loop reads its packets */
        in->units_per_s = units;
        in->offset_s = offset;
    }
    Py_DECREF(seq);
    PyMem_Free(self->interfaces);
    self->interfaces = table;
    self->n_interfaces = n;
    self->big_endian = big_endian;
    self->layout = LAYOUT_PCAPNG;
    Py_RETURN_NONE;
}

static int Replayer_init(Replayer *self, PyObject *args, PyObject *kwds)
{
    unsigned long long consumer, producer, data, size;
    unsigned int may_wait;
    if (!PyArg_ParseTuple(args, "iKKKKI", &self->prog_fd, &consumer, &producer, &data, &size, &may_wait))
        return -1;
    if (!consumer || !producer || !data || size < 8 || (size & (size - 1))) {
        PyErr_SetString(PyExc_ValueError, "the ring buffer's positions, data and size (a power of 2) are needed");
        return -1;
    }
    self->ring_consumer = (uint64_t *)(uintptr_t)consumer;
    self->ring_producer = (uint64_t *)(uintptr_t)producer;
    self->ring_data = (const uint8_t *)(uintptr_t)data;
    self->ring_mask = size - 1;
    self->ring_checked = 0;
    self->may_wait = may_wait;
    self->max_data = DEFAULT_MAX_DATA;
    self->layout = LAYOUT_NONE;
    return 0;
}

static void Replayer_dealloc(Replayer *self)
{
    PyMem_Free(self->interfaces);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Replayer_methods[] = {
    {"run", (PyCFunction)Replayer_run, METH_VARARGS, "Take whole records from offset on; see the module's doc."},
    {"classic", (PyCFunction)Replayer_classic, METH_VARARGS, "Read classic pcap records from here on."},
    {"pcapng", (PyCFunction)Replayer_pcapng, METH_VARARGS, "Read a pcapng section's packet blocks from here on."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef Replayer_members[] = {
    {"records", T_PYSSIZET, offsetof(Replayer, records), READONLY, "records taken by the last run()"},
    {"frames", T_PYSSIZET, offsetof(Replayer, frames), READONLY, "frames the last run() ran through the program"},
    {"last_ns", T_ULONGLONG, offsetof(Replayer, last_ns), READONLY, "the latest packet time taken, 0 for none"},
    {"stop_ts_ns", T_ULONGLONG, offsetof(Replayer, stop_ts_ns), READONLY, "packet time of the record stopped at"},
    {"stop_length", T_PYSSIZET, offsetof(Replayer, stop_length), READONLY, "length of the frame refused"},
    {"urgent", T_INT, offsetof(Replayer, urgent), READONLY, "the last EVENTS stop found a record that cannot wait"},
    {"max_data", T_PYSSIZET, offsetof(Replayer, max_data), 0, "the most bytes a test-run skb takes"},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject ReplayerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "_replay.Replayer",
    .tp_basicsize = sizeof(Replayer),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Packet records through a program, one test run each (see the module's doc).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Replayer_init,
    .tp_dealloc = (destructor)Replayer_dealloc,
    .tp_methods = Replayer_methods,
    .tp_members = Replayer_members,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_replay", "The replay loop of record --pcap, in C (see bulk_replay.py).", -1, NULL,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__replay(void)
{
    if (PyType_Ready(&ReplayerType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m)
        return NULL;
    Py_INCREF(&ReplayerType);
    if (PyModule_AddObject(m, "Replayer", (PyObject *)&ReplayerType) < 0 ||
        PyModule_AddStringConstant(m, "SOURCE_SHA256", SOURCE_SHA256) < 0) {
        Py_DECREF(&ReplayerType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
