/*
 * A plain lookup's dns.log row in C: plain_pair.py's _lookup_row (the reference),
 * which builds main.zeek's DNS::Info for the query, fills it from the reply and
 * writes the row (log.dns_row), the most frequent row a recording writes.
 *
 * lookup_row(query, query_ts, reply, ts, uid, conn, answer_types) -> (row, addresses) | None
 *   query, reply: what message.read_plain read of each (_wirename.c's
 *   read_plain_message: header, question, answers); query_ts, ts: their times.
 *   None when the reply is not the query's (not a reply, or another transaction id).
 *   row: the dict log.dns_row gives, its keys in that order; addresses: the A and
 *   AAAA answers' addresses (render.plain_answer's second value), None if none.
 *   answer_types: the answer types whose reply event a loaded script handles.
 *   conn: the connection's orientation (orig_h, orig_p, resp_h, resp_p attributes).
 * The names come from names.py's tables, and from its functions where a table has
 * no name (their fallbacks); each answer's reply string from render.plain_answer
 * (an A answer's text is both its values there): given once by configure(), so
 * each has one implementation. tests/test_lookup_row_compiled.py compares the two.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#ifndef SOURCE_SHA256
#define SOURCE_SHA256 ""
#endif

/* read_plain_message's header fields (wire.Header's order) and answer fields. */
enum { H_ID, H_QR, H_OPCODE, H_AA, H_TC, H_RD, H_RA, H_Z, H_AD, H_CD, H_RCODE, H_QDCOUNT, H_ANCOUNT, H_NSCOUNT,
       H_ARCOUNT, H_FIELDS };
enum { Q_NAME, Q_ORIGINAL, Q_TYPE, Q_CLASS, Q_FIELDS };
enum { A_OWNER, A_TYPE, A_CLASS, A_TTL, A_RDLENGTH, A_VALUE, A_FIELDS };

/* dns_row's keys, in its order. */
enum { K_TS, K_UID, K_ORIG_H, K_ORIG_P, K_RESP_H, K_RESP_P, K_PROTO, K_TRANS_ID, K_RTT, K_QUERY, K_QCLASS,
       K_QCLASS_NAME, K_QTYPE, K_QTYPE_NAME, K_RCODE, K_RCODE_NAME, K_AA, K_TC, K_RD, K_RA, K_Z, K_ANSWERS,
       K_TTLS, K_REJECTED, K_OPCODE, K_OPCODE_NAME, K_FIELDS };
static const char *const key_text[K_FIELDS] = {
    "ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto", "trans_id", "rtt", "query", "qclass",
    "qclass_name", "qtype", "qtype_name", "rcode", "rcode_name", "AA", "TC", "RD", "RA", "Z", "answers", "TTLs",
    "rejected", "opcode", "opcode_name",
};
static PyObject *keys[K_FIELDS];
static PyObject *attr_orig_h, *attr_orig_p, *attr_resp_h, *attr_resp_p, *udp;

/* configure()'s names (names.py): each a table and the function that falls back when the table has no
 * name; and render.plain_answer. */
enum { N_QCLASS, N_QTYPE, N_RCODE, N_OPCODE, N_KINDS };
static PyObject *name_table[N_KINDS], *name_function[N_KINDS], *plain_answer;

static PyObject *configure(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *names, *answer;
    if (!PyArg_ParseTuple(args, "O!O:configure", &PyTuple_Type, &names, &answer))
        return NULL;
    if (PyTuple_GET_SIZE(names) != N_KINDS || !PyCallable_Check(answer)) {
        PyErr_SetString(PyExc_TypeError, "configure(names, plain_answer): four (table, function) pairs, a function");
        return NULL;
    }
    for (int i = 0; i < N_KINDS; i++) {
        PyObject *pair = PyTuple_GET_ITEM(names, i);
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2 || !PyDict_Check(PyTuple_GET_ITEM(pair, 0)) ||
            !PyCallable_Check(PyTuple_GET_ITEM(pair, 1))) {
            PyErr_SetString(PyExc_TypeError, "configure: each name is a (dict, function) pair");
            return NULL;
        }
    }
    for (int i = 0; i < N_KINDS; i++) {
        PyObject *pair = PyTuple_GET_ITEM(names, i);
        Py_INCREF(PyTuple_GET_ITEM(pair, 0));
        Py_XSETREF(name_table[i], PyTuple_GET_ITEM(pair, 0));
        Py_INCREF(PyTuple_GET_ITEM(pair, 1));
        Py_XSETREF(name_function[i], PyTuple_GET_ITEM(pair, 1));
    }
    Py_INCREF(answer);
    Py_XSETREF(plain_answer, answer);
    Py_RETURN_NONE;
}

/* The name of a code: the table's, or the function's when the table has none (its fallback). */
static PyObject *name_of(int kind, PyObject *code)
{
    PyObject *name = PyDict_GetItemWithError(name_table[kind], code);
    if (name) {
        Py_INCREF(name);
        return name;
    }
    return PyErr_Occurred() ? NULL : PyObject_CallOneArg(name_function[kind], code);
}

/* A tuple of exactly n items, or NULL with TypeError: what read_plain_message gives, checked. */
static PyObject *fields_of(PyObject *tuple, Py_ssize_t n, const char *what)
{
    if (!PyTuple_Check(tuple) || PyTuple_GET_SIZE(tuple) != n) {
        PyErr_Format(PyExc_TypeError, "lookup_row: %s is not a tuple of %zd fields", what, n);
        return NULL;
    }
    return tuple;
}

/* Sets row[key] = value, stealing value; -1 on failure (value released). */
static int put(PyObject *row, int key, PyObject *value)
{
    if (!value)
        return -1;
    int rc = PyDict_SetItem(row, keys[key], value);
    Py_DECREF(value);
    return rc;
}

static int put_borrowed(PyObject *row, int key, PyObject *value)
{
    return PyDict_SetItem(row, keys[key], value);
}

/* The reply's handled answers, as main.zeek's do_reply adds them: the reply strings and their TTLs,
 * the addresses, and whether any answer was handled (which sets rtt, AA and RA). */
struct replies {
    PyObject *answers, *ttls, *addresses;   /* NULL until the first one */
    int handled;
};

static int add_answer(struct replies *r, PyObject *answer, PyObject *answer_types)
{
    PyObject *rtype = PyTuple_GET_ITEM(answer, A_TYPE);
    int wanted = PySet_Contains(answer_types, rtype);
    if (wanted <= 0)
        return wanted;
    r->handled = 1;
    PyObject *value = PyTuple_GET_ITEM(answer, A_VALUE), *shown;
    if (PyLong_CheckExact(rtype) && PyLong_AsLong(rtype) == 1)
        shown = PyTuple_Pack(2, value, value);      /* an A answer's text is both (as plain_answer has it) */
    else
        shown = PyObject_CallFunctionObjArgs(plain_answer, rtype, value, NULL);
    if (!shown)
        return -1;
    if (!PyTuple_Check(shown) || PyTuple_GET_SIZE(shown) != 2) {
        Py_DECREF(shown);
        PyErr_SetString(PyExc_TypeError, "lookup_row: plain_answer must give (reply, address)");
        return -1;
    }
    PyObject *reply = PyTuple_GET_ITEM(shown, 0), *address = PyTuple_GET_ITEM(shown, 1);
    int rc = PyObject_IsTrue(reply);
    if (rc > 0) {
        if (!r->answers && (!(r->answers = PyList_New(0)) || !(r->ttls = PyList_New(0))))
            rc = -1;
        PyObject *ttl = rc > 0 ? PyNumber_Float(PyTuple_GET_ITEM(answer, A_TTL)) : NULL;
        if (!ttl || PyList_Append(r->answers, reply) < 0 || PyList_Append(r->ttls, ttl) < 0)
            rc = -1;
        Py_XDECREF(ttl);
        if (rc > 0 && address != Py_None) {
            if (!r->addresses && !(r->addresses = PyList_New(0)))
                rc = -1;
            else if (PyList_Append(r->addresses, address) < 0)
                rc = -1;
        }
    }
    Py_DECREF(shown);
    return rc < 0 ? -1 : 0;
}

/* row["id.*"]: str() of each address and int() of each port, as dns_row takes them from conn. */
static int put_conn(PyObject *row, PyObject *conn)
{
    PyObject *attrs[4] = {attr_orig_h, attr_orig_p, attr_resp_h, attr_resp_p};
    const int at[4] = {K_ORIG_H, K_ORIG_P, K_RESP_H, K_RESP_P};
    for (int i = 0; i < 4; i++) {
        PyObject *value = PyObject_GetAttr(conn, attrs[i]);
        if (!value)
            return -1;
        PyObject *shown = i % 2 ? PyNumber_Long(value) : PyObject_Str(value);
        Py_DECREF(value);
        if (put(row, at[i], shown) < 0)
            return -1;
    }
    return 0;
}

static PyObject *lookup_row(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 7) {
        PyErr_Format(PyExc_TypeError, "lookup_row takes 7 arguments (%zd given)", nargs);
        return NULL;
    }
    PyObject *query = args[0], *query_ts = args[1], *reply = args[2], *ts = args[3], *uid = args[4],
             *conn = args[5], *answer_types = args[6];
    if (!plain_answer) {
        PyErr_SetString(PyExc_RuntimeError, "lookup_row: configure() was not called");
        return NULL;
    }
    if (!PyAnySet_Check(answer_types)) {
        PyErr_SetString(PyExc_TypeError, "lookup_row: answer_types must be a set");
        return NULL;
    }
    PyObject *qh, *question, *rh, *answers;
    if (!fields_of(query, 3, "the query") || !fields_of(reply, 3, "the reply") ||
        !(qh = fields_of(PyTuple_GET_ITEM(query, 0), H_FIELDS, "the query's header")) ||
        !(question = fields_of(PyTuple_GET_ITEM(query, 1), Q_FIELDS, "the query's question")) ||
        !(rh = fields_of(PyTuple_GET_ITEM(reply, 0), H_FIELDS, "the reply's header")))
        return NULL;
    answers = PyTuple_GET_ITEM(reply, 2);
    if (!PyTuple_Check(answers)) {
        PyErr_SetString(PyExc_TypeError, "lookup_row: the reply's answers are not a tuple");
        return NULL;
    }
    int is_reply = PyObject_IsTrue(PyTuple_GET_ITEM(rh, H_QR));
    if (is_reply < 0)
        return NULL;
    int same_id = is_reply ? PyObject_RichCompareBool(PyTuple_GET_ITEM(rh, H_ID), PyTuple_GET_ITEM(qh, H_ID), Py_EQ) : 0;
    if (same_id < 0)
        return NULL;
    if (!same_id)
        Py_RETURN_NONE;

    struct replies r = {NULL, NULL, NULL, 0};
    Py_ssize_t n = PyTuple_GET_SIZE(answers);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *answer = PyTuple_GET_ITEM(answers, i);
        if (!fields_of(answer, A_FIELDS, "an answer") || add_answer(&r, answer, answer_types) < 0)
            goto fail;
    }
    int rejected = 0;       /* dns_rejected: a reply with no RRs at all */
    if (n == 0) {
        int ns = PyObject_IsTrue(PyTuple_GET_ITEM(rh, H_NSCOUNT)), ar = PyObject_IsTrue(PyTuple_GET_ITEM(rh, H_ARCOUNT));
        if (ns < 0 || ar < 0)
            goto fail;
        rejected = !ns && !ar;
    }
    PyObject *rtt = Py_None;        /* do_reply's: at the first handled answer, unset when zero */
    Py_INCREF(rtt);
    if (r.handled) {
        Py_DECREF(rtt);
        if (!(rtt = PyNumber_Subtract(ts, query_ts)))
            goto fail;
        int zero = PyObject_Not(rtt);
        if (zero < 0)
            goto fail_rtt;
        if (zero)
            Py_SETREF(rtt, (Py_INCREF(Py_None), Py_None));
    }
    PyObject *qclass = PyTuple_GET_ITEM(question, Q_CLASS), *qtype = PyTuple_GET_ITEM(question, Q_TYPE);
    PyObject *rcode = PyTuple_GET_ITEM(rh, H_RCODE), *opcode = PyTuple_GET_ITEM(rh, H_OPCODE);
    PyObject *row = PyDict_New();
    if (!row)
        goto fail_rtt;
    if (put_borrowed(row, K_TS, query_ts) < 0 || put_borrowed(row, K_UID, uid) < 0 || put_conn(row, conn) < 0 ||
        put_borrowed(row, K_PROTO, udp) < 0 || put_borrowed(row, K_TRANS_ID, PyTuple_GET_ITEM(qh, H_ID)) < 0 ||
        put_borrowed(row, K_RTT, rtt) < 0 || put_borrowed(row, K_QUERY, PyTuple_GET_ITEM(question, Q_NAME)) < 0 ||
        put_borrowed(row, K_QCLASS, qclass) < 0 ||
        put(row, K_QCLASS_NAME, name_of(N_QCLASS, qclass)) < 0 ||
        put_borrowed(row, K_QTYPE, qtype) < 0 ||
        put(row, K_QTYPE_NAME, name_of(N_QTYPE, qtype)) < 0 ||
        put_borrowed(row, K_RCODE, rcode) < 0 ||
        put(row, K_RCODE_NAME, name_of(N_RCODE, rcode)) < 0 ||
        put_borrowed(row, K_AA, r.handled ? PyTuple_GET_ITEM(rh, H_AA) : Py_False) < 0 ||
        put_borrowed(row, K_TC, PyTuple_GET_ITEM(qh, H_TC)) < 0 ||
        put_borrowed(row, K_RD, PyTuple_GET_ITEM(qh, H_RD)) < 0 ||
        put_borrowed(row, K_RA, r.handled ? PyTuple_GET_ITEM(rh, H_RA) : Py_False) < 0 ||
        put_borrowed(row, K_Z, PyTuple_GET_ITEM(qh, H_Z)) < 0 ||
        put_borrowed(row, K_ANSWERS, r.answers ? r.answers : Py_None) < 0 ||
        put_borrowed(row, K_TTLS, r.ttls ? r.ttls : Py_None) < 0 ||
        put_borrowed(row, K_REJECTED, rejected ? Py_True : Py_False) < 0 ||
        put_borrowed(row, K_OPCODE, opcode) < 0 ||
        put(row, K_OPCODE_NAME, name_of(N_OPCODE, opcode)) < 0) {
        Py_DECREF(row);
        goto fail_rtt;
    }
    Py_DECREF(rtt);
    Py_XDECREF(r.answers);
    Py_XDECREF(r.ttls);
    PyObject *addresses = Py_None;
    if (r.addresses) {
        addresses = PyList_AsTuple(r.addresses);
        Py_DECREF(r.addresses);
        if (!addresses) {
            Py_DECREF(row);
            return NULL;
        }
    } else {
        Py_INCREF(addresses);
    }
    return Py_BuildValue("(NN)", row, addresses);

fail_rtt:
    Py_DECREF(rtt);
fail:
    Py_XDECREF(r.answers);
    Py_XDECREF(r.ttls);
    Py_XDECREF(r.addresses);
    return NULL;
}

static PyMethodDef methods[] = {
    {"configure", configure, METH_VARARGS,
     "configure(names, plain_answer): names, a (table, function) pair for qclass, qtype, rcode and opcode "
     "names; plain_answer, render.plain_answer."},
    {"lookup_row", (PyCFunction)(void (*)(void))lookup_row, METH_FASTCALL,
     "lookup_row(query, query_ts, reply, ts, uid, conn, answer_types) -> (row, addresses), or None."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_lookup_row", "A plain lookup's dns.log row in C (see plain_pair.py).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__lookup_row(void)
{
    for (int i = 0; i < K_FIELDS; i++)
        if (!keys[i] && !(keys[i] = PyUnicode_InternFromString(key_text[i])))
            return NULL;
    if (!(attr_orig_h = PyUnicode_InternFromString("orig_h")) || !(attr_orig_p = PyUnicode_InternFromString("orig_p")) ||
        !(attr_resp_h = PyUnicode_InternFromString("resp_h")) || !(attr_resp_p = PyUnicode_InternFromString("resp_p")) ||
        !(udp = PyUnicode_InternFromString("udp")))
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m)
        return NULL;
    if (PyModule_AddStringConstant(m, "SOURCE_SHA256", SOURCE_SHA256) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
