/*
 * What conn.log's row takes from a connection's final state, in C: conn_rows.py's
 * conn_values (the reference), which reads a CONN_END event field by field through
 * ctypes, a third of a connection end's handling in a replay.
 *
 * conn_values(event) -> (history, orig_bytes, resp_bytes, conn_state, missed_bytes,
 *                        orig_pkts, orig_ip_bytes, resp_pkts, resp_ip_bytes, first_ns, last_ns)
 *   event: a buffer holding one struct ca_conn_end_event (abi.ConnEndEvent).
 *   The payload sizes and conn_state are Zeek's (base/protocols/conn/main.zeek,
 *   TCP_Endpoint::Size), computed as conn_rows.py computes them;
 *   tests/test_conn_rows_compiled.py compares the two on recorded and random events.
 * conn_end_head(event) -> (conn_id, key, orig_slot, flags, ts_ns, first_parent, latest_parent,
 *                          packets, ip_bytes, reason)
 *   What the session reads of the event besides the row (conn_rows._conn_end_head, the
 *   reference): one call instead of a ctypes object per field.
 * The struct is the kernel program's own declaration (bpf/cicd_audit.h).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "../../bpf/cicd_audit.h"

#ifndef SOURCE_SHA256
#define SOURCE_SHA256 ""
#endif

static int no_data_acked(const struct ca_endpoint *ep)
{
    uint64_t ack = ((uint64_t)ep->ack_wraps << 32) + ep->ack_seq;
    return ack == ep->start_seq || ack == (uint64_t)ep->start_seq + 1;
}

/* Zeek's TCP_Endpoint::Size, in unsigned 64-bit arithmetic as Zeek has it. */
static uint64_t tcp_size(const struct ca_endpoint *ep, const struct ca_endpoint *peer)
{
    if (!(ep->flags & CA_EP_SEQ_VALID))
        return 0;
    if (ep->prev_state == CA_TCP_SYN_SENT && ep->state == CA_TCP_RESET && peer->state == CA_TCP_INACTIVE &&
        !no_data_acked(ep))
        return 0;       /* a half-open connection found and aborted */
    uint64_t last = ((uint64_t)ep->seq_wraps << 32) + ep->last_seq;
    uint64_t ack = ((uint64_t)ep->ack_wraps << 32) + ep->ack_seq;
    uint64_t size = (last > ack ? last : ack) - ep->start_seq;
    if (size)
        size--;         /* the SYN */
    if ((ep->flags & CA_EP_SAW_FIN) && size)
        size--;
    return size;
}

/* The history matches main.zeek's RSTOS0 pattern, /\^?S[^HAFGIQ]*R.* /. */
static int rstos0_history(const char *history, size_t len)
{
    size_t i = 0;
    if (i < len && history[i] == '^')
        i++;
    if (i >= len || history[i] != 'S')
        return 0;
    for (i++; i < len; i++) {
        if (history[i] == 'R')
            return 1;
        if (strchr("HAFGIQ", history[i]))
            return 0;
    }
    return 0;
}

static const char *tcp_conn_state(const struct ca_endpoint *orig, const struct ca_endpoint *resp,
                                  const char *history, size_t history_len, uint64_t orig_size, uint64_t resp_size)
{
    int os = orig->state, rs = resp->state;
    int o_inactive = os == CA_TCP_INACTIVE || os == CA_TCP_PARTIAL;
    int r_inactive = rs == CA_TCP_INACTIVE || rs == CA_TCP_PARTIAL;
    if (rs == CA_TCP_RESET) {
        if (os == CA_TCP_SYN_SENT || os == CA_TCP_SYN_ACK_SENT || (os == CA_TCP_RESET && orig_size == 0 && resp_size == 0))
            return "REJ";
        return o_inactive ? "RSTRH" : "RSTR";
    }
    if (os == CA_TCP_RESET) {
        if (r_inactive)
            return rstos0_history(history, history_len) ? "RSTOS0" : "OTH";
        return "RSTO";
    }
    if (rs == CA_TCP_CLOSED && os == CA_TCP_CLOSED)
        return "SF";
    if (os == CA_TCP_CLOSED)
        return r_inactive ? "SH" : "S2";
    if (rs == CA_TCP_CLOSED)
        return o_inactive ? "SHR" : "S3";
    if (os == CA_TCP_SYN_SENT && rs == CA_TCP_INACTIVE)
        return "S0";
    if (os == CA_TCP_ESTABLISHED && rs == CA_TCP_ESTABLISHED)
        return "S1";
    return "OTH";
}

/* Both sides' gaps: a Python int, as the reference's sum is never cut to 64 bits. */
static PyObject *missed_bytes(uint64_t orig, uint64_t resp)
{
    unsigned long long sum;
    if (!__builtin_add_overflow(orig, resp, &sum))
        return PyLong_FromUnsignedLongLong(sum);
    PyObject *a = PyLong_FromUnsignedLongLong(orig), *b = PyLong_FromUnsignedLongLong(resp);
    PyObject *total = a && b ? PyNumber_Add(a, b) : NULL;
    Py_XDECREF(a);
    Py_XDECREF(b);
    return total;
}

/* A CONN_END event's bytes (any buffer) copied into *ev; -1 with ValueError if it has another size. */
static int copy_event(PyObject *event, struct ca_conn_end_event *ev, const char *who)
{
    Py_buffer view;
    if (PyObject_GetBuffer(event, &view, PyBUF_SIMPLE) < 0)
        return -1;
    int rc = 0;
    if (view.len != (Py_ssize_t)sizeof(*ev)) {
        PyErr_Format(PyExc_ValueError, "%s: %zd bytes, not a CONN_END event's %zu", who, view.len, sizeof(*ev));
        rc = -1;
    } else {
        memcpy(ev, view.buf, sizeof(*ev));
    }
    PyBuffer_Release(&view);
    return rc;
}

static PyObject *conn_values(PyObject *self, PyObject *event)
{
    struct ca_conn_end_event ev;
    if (copy_event(event, &ev, "conn_values") < 0)
        return NULL;

    const struct ca_conn *c = &ev.conn;
    const struct ca_endpoint *orig = &c->ep[0], *resp = &c->ep[1];
    /* As ctypes reads a char array: up to its first zero byte, then the history's length. */
    size_t history_len = strnlen(c->history, CA_HISTORY_MAX);
    if (c->history_len < history_len)
        history_len = c->history_len;
    uint64_t orig_size, resp_size;
    const char *state;
    switch (ev.key.ip_proto) {
    case 6:
        orig_size = tcp_size(orig, resp);
        resp_size = tcp_size(resp, orig);
        state = tcp_conn_state(orig, resp, c->history, history_len, orig_size, resp_size);
        break;
    case 17:
        orig_size = orig->payload_bytes;
        resp_size = resp->payload_bytes;
        if (orig->state == CA_UDP_ACTIVE)
            state = resp->state == CA_UDP_ACTIVE ? "SF" : "S0";
        else
            state = resp->state == CA_UDP_ACTIVE ? "SHR" : "OTH";
        break;
    case 1:
    case 58:
        orig_size = orig->payload_bytes;
        resp_size = resp->payload_bytes;
        state = "OTH";
        break;
    default:
        orig_size = resp_size = 0;      /* Zeek's unknown-protocol adapter tracks no payload size */
        state = "OTH";
    }
    PyObject *missed = missed_bytes(orig->gap_bytes, resp->gap_bytes);
    if (!missed)
        return NULL;
    PyObject *history = PyUnicode_DecodeASCII(c->history, (Py_ssize_t)history_len, "replace");
    if (!history) {
        Py_DECREF(missed);
        return NULL;
    }
    return Py_BuildValue("(NKKsNKKKKKK)", history, (unsigned long long)orig_size, (unsigned long long)resp_size,
                         state, missed,
                         (unsigned long long)orig->pkts, (unsigned long long)orig->ip_bytes,
                         (unsigned long long)resp->pkts, (unsigned long long)resp->ip_bytes,
                         (unsigned long long)c->first_ns, (unsigned long long)c->last_ns);
}

/* What a connection's end hands the session besides its row (conn_rows._conn_end_head is the reference). */
static PyObject *conn_end_head(PyObject *self, PyObject *event)
{
    struct ca_conn_end_event ev;
    if (copy_event(event, &ev, "conn_end_head") < 0)
        return NULL;
    const struct ca_conn *c = &ev.conn;
    return Py_BuildValue("(Ky#IIKKKKKI)", (unsigned long long)c->id, (const char *)&ev.key, (Py_ssize_t)sizeof(ev.key),
                         (unsigned)c->orig_slot, (unsigned)c->flags, (unsigned long long)ev.hdr.ts_ns,
                         (unsigned long long)c->tunnel_parents[0], (unsigned long long)c->tunnel_parents[1],
                         (unsigned long long)(c->ep[0].pkts + c->ep[1].pkts),
                         (unsigned long long)(c->ep[0].ip_bytes + c->ep[1].ip_bytes), (unsigned)ev.reason);
}

static PyMethodDef methods[] = {
    {"conn_end_head", conn_end_head, METH_O,
     "conn_end_head(event) -> (conn_id, key, orig_slot, flags, ts_ns, first_parent, latest_parent, packets, "
     "ip_bytes, reason)"},
    {"conn_values", conn_values, METH_O,
     "conn_values(event) -> (history, orig_bytes, resp_bytes, conn_state, missed_bytes, orig_pkts, "
     "orig_ip_bytes, resp_pkts, resp_ip_bytes, first_ns, last_ns)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_conn_rows", "conn.log values and a CONN_END event's head in C (see conn_rows.py).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__conn_rows(void)
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
