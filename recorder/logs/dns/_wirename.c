/*
 * A DNS name read from the wire as Zeek's ExtractName reads it, in C: the walk's
 * most frequent step (message.py, _Interpreter.extract_name, is the reference);
 * and the plain message, a question and its answers, read whole.
 *
 * Only the plain case is read here: labels of 1-63 bytes, backward compression
 * pointers within the depth limit, a name under 255 bytes. Anything else (a
 * parse error, a weird to raise, NetBIOS's long labels, a read past the
 * message) returns None before anything changes, and the Python walk reads the
 * name itself, weirds and all. tests/test_dns_wirename.py compares the two.
 *
 * read_name(data, pos, left, size, downcase, depth, max_depth) -> (name, pos, left) | None
 *   data: the message; pos, left: the cursor (Zeek's data pointer and len);
 *   size: the name buffer's size; downcase: lower-case the labels read
 *   directly (those reached through a pointer always are, as in Zeek);
 *   depth: the pointers followed so far; max_depth: dns_max_compression_chain_depth.
 * name is the bytes Zeek's buffer holds (the trailing dot removed).
 *
 * read_question(data, pos, left, size, max_depth) -> (name, pos, left, qtype, qclass) | None
 *   A question entry: its name as read_name reads it without lower-casing,
 *   then its type and class; None also when fewer than 4 bytes follow the name
 *   (Zeek's DNS_truncated_quest_too_short, which the Python walk raises).
 *
 * read_rr_header(data, pos, left, size, max_depth) -> (name, pos, left, type, class, ttl, rdlength) | None
 *   A resource record up to its RDATA: the owner name lower-cased, then the
 *   fixed fields; None also when fewer than 10 bytes follow the name (Zeek's
 *   reads of a short header have quirks the Python walk keeps).
 *
 * read_plain_message(data, size, max_depth) -> (header, question, answers) | None
 *   A whole message in the shape of almost every lookup: a standard query
 *   (opcode 0) with one question and only A, AAAA, NS, CNAME or PTR answers,
 *   each read as the Python walk reads it (_Interpreter.run; rdata.py's _a,
 *   _aaaa, _target) and none raising a weird. The authority and additional
 *   sections are not read: the caller uses this only when Zeek skips them
 *   (dns_skip_all_auth and dns_skip_all_addl, its defaults). Anything else
 *   returns None and the Python walk reads the message.
 *   header: the 15 fields of wire.Header, in its order;
 *   question: (name lower-cased, name as sent, qtype, qclass);
 *   answers: one (owner, type, class, ttl, rdlength, value) per record, where
 *   value is the A address's text, the AAAA address's 16 bytes, or the
 *   NS/CNAME/PTR target. Names are str as wire.wire_str makes them.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#ifndef SOURCE_SHA256
#define SOURCE_SHA256 ""
#endif

#define NAME_MAX_BUFFER 1024    /* the largest size a caller passes is 1023 (TSIG) */
#define NAME_TOO_LONG 255       /* from here on Zeek raises DNS_NAME_too_long */

struct name {
    uint8_t text[NAME_MAX_BUFFER];
    Py_ssize_t len;
};

static unsigned get16(const uint8_t *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

static unsigned long get32(const uint8_t *p)
{
    return (unsigned long)p[0] << 24 | (unsigned long)p[1] << 16 | (unsigned long)p[2] << 8 | p[3];
}

/* 1: read; 0: not the plain case (the caller's state untouched). */
static int read_labels(const uint8_t *data, Py_ssize_t end, Py_ssize_t *pos_io, Py_ssize_t *left_io,
                       struct name *name, Py_ssize_t size, int downcase, int depth, int max_depth)
{
    if (depth > max_depth)
        return 0;                       /* Zeek's DNS_max_compression_chain_depth_exceeded */
    Py_ssize_t pos = *pos_io, left = *left_io, start = name->len;
    for (;;) {
        if (left <= 0 || pos < 0 || pos >= end)
            return 0;
        Py_ssize_t here = pos;
        unsigned len = data[pos];
        if (len == 0) {
            pos++;
            left--;
            break;
        }
        if ((len & 0xC0) == 0xC0) {
            if (left <= 1 || pos + 1 >= end)
                return 0;
            Py_ssize_t target = ((Py_ssize_t)(len & 0x3F) << 8) | data[pos + 1];
            pos += 2;
            left -= 2;
            if (target >= here)
                return 0;               /* Zeek follows backward pointers only */
            Py_ssize_t sub_pos = target, sub_left = here - target;
            if (!read_labels(data, end, &sub_pos, &sub_left, name, size, 1, depth + 1, max_depth))
                return 0;
            break;
        }
        if (len > 63 || (Py_ssize_t)len >= left || (Py_ssize_t)len >= size - name->len ||
            pos + 1 + (Py_ssize_t)len > end)
            return 0;
        memcpy(name->text + name->len, data + pos + 1, len);
        name->len += len;
        name->text[name->len++] = '.';
        pos += 1 + len;
        left -= 1 + len;
    }
    Py_ssize_t n = name->len - start;
    if (n >= NAME_TOO_LONG)
        return 0;
    if (n >= 2 && name->text[name->len - 1] == '.')
        name->len--;
    if (downcase) {
        for (Py_ssize_t i = start; i < name->len; i++) {
            uint8_t c = name->text[i];
            if (c >= 'A' && c <= 'Z')
                name->text[i] = c + ('a' - 'A');
        }
    }
    *pos_io = pos;
    *left_io = left;
    return 1;
}

/* A name from the top level, then `fixed` bytes that must follow it: where those bytes are, with pos and left
 * past them; NULL when not the plain case. */
static const uint8_t *name_then_fixed(PyObject *data, Py_ssize_t *pos, Py_ssize_t *left, Py_ssize_t size,
                                      int downcase, int depth, int max_depth, Py_ssize_t fixed, struct name *name)
{
    const uint8_t *bytes = (const uint8_t *)PyBytes_AS_STRING(data);
    Py_ssize_t end = PyBytes_GET_SIZE(data);
    name->len = 0;
    if (size < 0 || size > NAME_MAX_BUFFER - 1 ||
        !read_labels(bytes, end, pos, left, name, size, downcase, depth, max_depth) || *left < fixed ||
        *pos + fixed > end)
        return NULL;
    const uint8_t *at = bytes + *pos;
    *pos += fixed;
    *left -= fixed;
    return at;
}

static PyObject *read_name(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *data;
    Py_ssize_t pos, left, size;
    int downcase, depth, max_depth;
    struct name name;
    if (!PyArg_ParseTuple(args, "O!nnnpii:read_name", &PyBytes_Type, &data, &pos, &left, &size, &downcase, &depth,
                          &max_depth))
        return NULL;
    if (!name_then_fixed(data, &pos, &left, size, downcase, depth, max_depth, 0, &name))
        Py_RETURN_NONE;
    return Py_BuildValue("(y#nn)", (const char *)name.text, name.len, pos, left);
}

static PyObject *read_question(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *data;
    Py_ssize_t pos, left, size;
    int max_depth;
    struct name name;
    if (!PyArg_ParseTuple(args, "O!nnni:read_question", &PyBytes_Type, &data, &pos, &left, &size, &max_depth))
        return NULL;
    const uint8_t *p = name_then_fixed(data, &pos, &left, size, 0, 0, max_depth, 4, &name);
    if (!p)
        Py_RETURN_NONE;
    return Py_BuildValue("(y#nnII)", (const char *)name.text, name.len, pos, left, get16(p), get16(p + 2));
}

static PyObject *read_rr_header(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *data;
    Py_ssize_t pos, left, size;
    int max_depth;
    struct name name;
    if (!PyArg_ParseTuple(args, "O!nnni:read_rr_header", &PyBytes_Type, &data, &pos, &left, &size, &max_depth))
        return NULL;
    const uint8_t *p = name_then_fixed(data, &pos, &left, size, 1, 0, max_depth, 10, &name);
    if (!p)
        Py_RETURN_NONE;
    return Py_BuildValue("(y#nnIIkI)", (const char *)name.text, name.len, pos, left, get16(p), get16(p + 2),
                         get32(p + 4), get16(p + 8));
}

#define HEADER_LEN 12
#define T_A 1
#define T_NS 2
#define T_CNAME 5
#define T_PTR 12
#define T_AAAA 28

/* The bytes Zeek holds, as wire.wire_str decodes them: UTF-8, any other byte a lone surrogate. */
static PyObject *wire_str(const struct name *name)
{
    return PyUnicode_DecodeUTF8((const char *)name->text, name->len, "surrogateescape");
}

/* A tuple of n items made from new references; NULL (and all released) if any is NULL. */
static PyObject *tuple_of(Py_ssize_t n, PyObject **items)
{
    PyObject *t = NULL;
    for (Py_ssize_t i = 0; i < n; i++)
        if (!items[i])
            goto fail;
    if (!(t = PyTuple_New(n)))
        goto fail;
    for (Py_ssize_t i = 0; i < n; i++)
        PyTuple_SET_ITEM(t, i, items[i]);
    return t;
fail:
    for (Py_ssize_t i = 0; i < n; i++)
        Py_XDECREF(items[i]);
    return NULL;
}

static PyObject *plain_header(const uint8_t *p)
{
    unsigned flags = get16(p + 2);
    PyObject *fields[15] = {
        PyLong_FromLong(get16(p)), PyBool_FromLong(flags & 0x8000), PyLong_FromLong((flags & 0x7800) >> 11),
        PyBool_FromLong(flags & 0x0400), PyBool_FromLong(flags & 0x0200), PyBool_FromLong(flags & 0x0100),
        PyBool_FromLong(flags & 0x0080), PyLong_FromLong((flags & 0x0070) >> 4), PyBool_FromLong(flags & 0x0020),
        PyBool_FromLong(flags & 0x0010), PyLong_FromLong(flags & 0x000F), PyLong_FromLong(get16(p + 4)),
        PyLong_FromLong(get16(p + 6)), PyLong_FromLong(get16(p + 8)), PyLong_FromLong(get16(p + 10)),
    };
    return tuple_of(15, fields);
}

static PyObject *plain_question(PyObject *data, Py_ssize_t *pos, Py_ssize_t *left, Py_ssize_t size, int max_depth)
{
    struct name name;
    const uint8_t *p = name_then_fixed(data, pos, left, size, 0, 0, max_depth, 4, &name);
    if (!p)
        return Py_None;               /* borrowed: not the plain case */
    PyObject *original = wire_str(&name);
    for (Py_ssize_t i = 0; i < name.len; i++) {
        uint8_t c = name.text[i];
        if (c >= 'A' && c <= 'Z')
            name.text[i] = c + ('a' - 'A');
    }
    PyObject *fields[4] = {original ? wire_str(&name) : NULL, original, PyLong_FromLong(get16(p)),
                           PyLong_FromLong(get16(p + 2))};
    return tuple_of(4, fields);
}

/* The value of one answer's RDATA, the cursor past it; Py_None (borrowed) when not plain. */
static PyObject *plain_rdata(PyObject *data, Py_ssize_t *pos, Py_ssize_t *left, Py_ssize_t size, int max_depth,
                             unsigned rtype, unsigned rdlength)
{
    const uint8_t *p = (const uint8_t *)PyBytes_AS_STRING(data) + *pos;
    struct name target;
    Py_ssize_t start = *pos;

    switch (rtype) {
    case T_A:
        if (rdlength != 4)
            return Py_None;           /* DNS_RR_bad_length */
        *pos += 4;
        *left -= 4;
        {
            char text[16];
            int n = snprintf(text, sizeof(text), "%u.%u.%u.%u", p[0], p[1], p[2], p[3]);
            return PyUnicode_FromStringAndSize(text, n);
        }
    case T_AAAA:
        if (rdlength != 16)
            return Py_None;           /* Zeek reads 16 bytes whatever the length says: the walk's to follow */
        *pos += 16;
        *left -= 16;
        return PyBytes_FromStringAndSize((const char *)p, 16);
    case T_NS:
    case T_CNAME:
    case T_PTR:
        if (!name_then_fixed(data, pos, left, size, 1, 0, max_depth, 0, &target) || *pos - start != rdlength)
            return Py_None;           /* DNS_RR_length_mismatch, or not a plain name */
        return wire_str(&target);
    default:
        return Py_None;
    }
}

static PyObject *read_plain_message(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *data, *header = NULL, *question = NULL, *answers = NULL;
    Py_ssize_t size, pos = HEADER_LEN, left;
    int max_depth;
    if (!PyArg_ParseTuple(args, "O!ni:read_plain_message", &PyBytes_Type, &data, &size, &max_depth))
        return NULL;
    const uint8_t *bytes = (const uint8_t *)PyBytes_AS_STRING(data);
    left = PyBytes_GET_SIZE(data) - HEADER_LEN;
    if (left < 0 || (get16(bytes + 2) & 0x7800) != 0 || get16(bytes + 4) != 1)
        Py_RETURN_NONE;
    unsigned ancount = get16(bytes + 6);

    question = plain_question(data, &pos, &left, size, max_depth);
    if (question == Py_None)
        Py_RETURN_NONE;
    if (!question || !(answers = PyTuple_New(ancount)))
        goto fail;
    for (unsigned i = 0; i < ancount; i++) {
        struct name owner;
        const uint8_t *p = name_then_fixed(data, &pos, &left, size, 1, 0, max_depth, 10, &owner);
        if (!p)
            goto not_plain;
        unsigned rtype = get16(p), rclass = get16(p + 2), rdlength = get16(p + 8);
        unsigned long ttl = get32(p + 4);
        if (rdlength == 0 || (Py_ssize_t)rdlength > left)
            goto not_plain;           /* DNS_zero_rdlength, DNS_truncated_RR_rdlength_lt_len, or the walk's quirks */
        PyObject *value = plain_rdata(data, &pos, &left, size, max_depth, rtype, rdlength);
        if (value == Py_None)
            goto not_plain;
        PyObject *fields[6] = {value ? wire_str(&owner) : NULL, PyLong_FromLong(rtype), PyLong_FromLong(rclass),
                               PyLong_FromUnsignedLong(ttl), PyLong_FromLong(rdlength), value};
        PyObject *answer = tuple_of(6, fields);
        if (!answer)
            goto fail;
        PyTuple_SET_ITEM(answers, i, answer);
    }
    if (!(header = plain_header(bytes)))
        goto fail;
    PyObject *read[3] = {header, question, answers};
    return tuple_of(3, read);

not_plain:
    Py_DECREF(question);
    Py_DECREF(answers);
    Py_RETURN_NONE;
fail:
    Py_XDECREF(question);
    Py_XDECREF(answers);
    return NULL;
}

static PyMethodDef methods[] = {
    {"read_name", read_name, METH_VARARGS,
     "read_name(data, pos, left, size, downcase, depth, max_depth) -> (name, pos, left), or None."},
    {"read_question", read_question, METH_VARARGS,
     "read_question(data, pos, left, size, max_depth) -> (name, pos, left, qtype, qclass), or None."},
    {"read_rr_header", read_rr_header, METH_VARARGS,
     "read_rr_header(data, pos, left, size, max_depth) -> (name, pos, left, type, class, ttl, rdlength), or None."},
    {"read_plain_message", read_plain_message, METH_VARARGS,
     "read_plain_message(data, size, max_depth) -> (header, question, answers), or None."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_wirename", "DNS names read as Zeek reads them, in C (see message.py).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__wirename(void)
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
