/*
 * Taking a BPF ring buffer's committed records in C: ringbuf.py's RingBuffer._take
 * (the reference), whose Python loop reads each record's header and slices it out,
 * a step per record of every event a recording handles.
 *
 * take(consumer, producer, data, mask) -> (records, discarded)
 *   consumer, producer: the addresses of consumer_pos and producer_pos; data: the
 *   data area, mapped twice in a row (a record past its end is contiguous); mask:
 *   its size - 1 (ringbuf.RingBuffer.mapped gives all four). Walks the records
 *   from consumer_pos up to producer_pos or the first one still being written,
 *   copies each committed one into a bytes object, skips (and counts) discarded
 *   ones, and only then publishes the new consumer_pos: the kernel may reuse the
 *   space from then on. The positions and headers are read with acquire
 *   semantics and consumer_pos written with release semantics, as the kernel's
 *   ring buffer requires (kernel/bpf/ringbuf.c).
 * tests/test_ringbuf.py compares the two on rings built in memory.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#ifndef SOURCE_SHA256
#define SOURCE_SHA256 ""
#endif

#define BUSY_BIT (1U << 31)
#define DISCARD_BIT (1U << 30)
#define HEADER_SIZE 8

static PyObject *take(PyObject *self, PyObject *args)
{
    (void)self;
    unsigned long long consumer_addr, producer_addr, data_addr, mask;
    if (!PyArg_ParseTuple(args, "KKKK:take", &consumer_addr, &producer_addr, &data_addr, &mask))
        return NULL;
    if (!consumer_addr || !producer_addr || !data_addr || (mask & (mask + 1))) {
        PyErr_SetString(PyExc_ValueError, "take: the ring's addresses and a size - 1 of a power of two");
        return NULL;
    }
    uint64_t *consumer = (uint64_t *)(uintptr_t)consumer_addr;
    const uint64_t *producer = (const uint64_t *)(uintptr_t)producer_addr;
    const uint8_t *data = (const uint8_t *)(uintptr_t)data_addr;

    uint64_t start = __atomic_load_n(consumer, __ATOMIC_ACQUIRE);
    uint64_t end = __atomic_load_n(producer, __ATOMIC_ACQUIRE);
    uint64_t pos = start;
    Py_ssize_t discarded = 0;
    PyObject *records = PyList_New(0);
    if (!records)
        return NULL;
    while (pos < end) {
        const uint8_t *header = data + (pos & mask);
        uint32_t length = __atomic_load_n((const uint32_t *)header, __ATOMIC_ACQUIRE);
        if (length & BUSY_BIT)
            break;                      /* reserved, not yet submitted: stop here */
        uint32_t size = length & ~(BUSY_BIT | DISCARD_BIT);
        if (length & DISCARD_BIT) {
            discarded++;
        } else {
            PyObject *record = PyBytes_FromStringAndSize((const char *)header + HEADER_SIZE, size);
            if (!record || PyList_Append(records, record) < 0) {
                Py_XDECREF(record);
                Py_DECREF(records);     /* nothing published: the records stay in the ring */
                return NULL;
            }
            Py_DECREF(record);
        }
        pos += ((uint64_t)size + HEADER_SIZE + 7) & ~(uint64_t)7;
    }
    if (pos != start)
        __atomic_store_n(consumer, pos, __ATOMIC_RELEASE);
    return Py_BuildValue("(Nn)", records, discarded);
}

static PyMethodDef methods[] = {
    {"take", take, METH_VARARGS,
     "take(consumer, producer, data, mask) -> (records, discarded): the committed records, their space given back."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_ringtake", "A ring buffer's committed records taken in C (see ringbuf.py).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__ringtake(void)
{
    PyObject *m = PyModule_Create(&module);
    if (!m)
        return NULL;
    if (PyModule_AddStringConstant(m, "SOURCE_SHA256", SOURCE_SHA256) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
