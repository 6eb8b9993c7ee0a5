/*
 * One Zeek TSV data line from a row dict, in C: the per-row loop of
 * tsv_format.format_tsv_row, which every conn.log and dns.log row goes through.
 *
 * Only the values whose text is certain are written here: plain ASCII strings,
 * floats as times, ints in range as counts and ports, bools, None, and lists or
 * tuples of those. Every other value goes to the field's Python converter
 * (tsv_format._tsv_field), the reference, so the two can only differ where
 * this file writes a value itself; tests/test_tsv_compiled.py compares them.
 *
 * tsv_line(names, kinds, converters, record) -> bytes
 *   names:      tuple of str, the schema's field names
 *   kinds:      bytes, one KIND_* per field (KIND_CONTAINER set for set/vector)
 *   converters: tuple of callables, value -> bytes (the Python path's)
 *   record:     dict
 * A converter's exception propagates (the caller then retries in Python, which
 * names the field), and a record with a key that is no field raises ValueError
 * (the caller's check names the key).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#ifndef SOURCE_SHA256
#define SOURCE_SHA256 ""
#endif

enum {
    KIND_OTHER = 0,     /* always the converter */
    KIND_STRING = 1,    /* string, enum */
    KIND_TIME = 2,      /* time, interval */
    KIND_COUNT = 3,
    KIND_PORT = 4,
    KIND_BOOL = 5,
    KIND_ADDR = 6,      /* an IPv4 address's text in its canonical form; any other, the converter */
    KIND_CONTAINER = 0x10,
};

struct out {
    char *buf;
    size_t len, cap;
};

static int out_put(struct out *o, const char *p, size_t n)
{
    if (o->len + n > o->cap) {
        size_t cap = o->cap ? o->cap : 512;
        while (cap < o->len + n)
            cap *= 2;
        char *grown = PyMem_Realloc(o->buf, cap);
        if (!grown) {
            PyErr_NoMemory();
            return -1;
        }
        o->buf = grown;
        o->cap = cap;
    }
    memcpy(o->buf + o->len, p, n);
    o->len += n;
    return 0;
}

/* An ASCII string's bytes (1: *text and *n set; 0: not ASCII). */
static int ascii_text(PyObject *s, const unsigned char **text, Py_ssize_t *n)
{
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(s) < 0) {
        PyErr_Clear();
        return 0;
    }
#endif
    if (!PyUnicode_IS_ASCII(s))
        return 0;
    *text = PyUnicode_1BYTE_DATA(s);
    *n = PyUnicode_GET_LENGTH(s);
    return 1;
}

/* Zeek writes a string as it is when every byte is printable ASCII other than
 * the backslash (and, inside a set or vector, the comma), unless it is empty,
 * "-" or "(empty)". */
static int plain_string(PyObject *s, int in_container, const char **text, Py_ssize_t *n)
{
    const unsigned char *p;
    Py_ssize_t len;
    if (!ascii_text(s, &p, &len))
        return 0;
    if (len == 0 || (len == 1 && p[0] == '-') || (len == 7 && memcmp(p, "(empty)", 7) == 0))
        return 0;
    for (Py_ssize_t i = 0; i < len; i++) {
        unsigned char c = p[i];
        if (c < 0x20 || c > 0x7e || c == '\\' || (in_container && c == ','))
            return 0;
    }
    *text = (const char *)p;
    *n = len;
    return 1;
}

/* A dotted quad as Zeek writes it (four numbers of 0-255, no leading zero): the
 * text an IPv4 address's converter would return unchanged. */
static int canonical_ipv4(PyObject *s, const char **text, Py_ssize_t *n)
{
    const unsigned char *p;
    Py_ssize_t len, i = 0;
    if (!ascii_text(s, &p, &len))
        return 0;
    for (int part = 0; part < 4; part++) {
        if (part && (i >= len || p[i++] != '.'))
            return 0;
        Py_ssize_t start = i;
        unsigned value = 0;
        while (i < len && p[i] >= '0' && p[i] <= '9' && i - start < 3)
            value = value * 10 + (p[i++] - '0');
        if (i == start || value > 255 || (i - start > 1 && p[start] == '0'))
            return 0;
    }
    if (i != len)
        return 0;
    *text = (const char *)p;
    *n = len;
    return 1;
}

/* value's decimal digits written backwards, ending at end; returns where they start. */
static char *digits_before(char *end, unsigned long long value)
{
    do {
        *--end = (char)('0' + value % 10);
        value /= 10;
    } while (value);
    return end;
}

/* "%.6f" of a time or interval from its exact binary value, rounded half to
 * even as Python's (correctly rounded) formatting does: v = m * 2^-k, so
 * v * 10^6 = m * 10^6 / 2^k, whose quotient and remainder say the digits and
 * the rounding. Only for 0 < v < 2^33 (every timestamp and interval a capture
 * has) and k < 120; 0 for any other value (PyOS_double_to_string writes it). */
static int put_time_exact(struct out *o, double v)
{
#ifdef __SIZEOF_INT128__
    if (!(v > 0 && v < 8589934592.0))
        return 0;
    int exponent;
    double fraction = frexp(v, &exponent);              /* v = fraction * 2^exponent, 0.5 <= fraction < 1 */
    uint64_t mantissa = (uint64_t)ldexp(fraction, 53);  /* exact: 53 bits */
    int k = 53 - exponent;                              /* v = mantissa * 2^-k, k > 0 as v < 2^33 */
    if (k >= 120)
        return 0;
    unsigned __int128 scaled = (unsigned __int128)mantissa * 1000000u;
    unsigned __int128 quotient = scaled >> k;
    unsigned __int128 remainder = scaled - (quotient << k);
    unsigned __int128 half = (unsigned __int128)1 << (k - 1);
    if (remainder > half || (remainder == half && (quotient & 1)))
        quotient++;
    uint64_t micros = (uint64_t)quotient;               /* < 2^33 * 10^6 */
    char text[32], *end = text + sizeof(text), *at = end;
    for (int i = 0; i < 6; i++) {                       /* the six decimals, zeros kept */
        *--at = (char)('0' + micros % 10);
        micros /= 10;
    }
    *--at = '.';
    at = digits_before(at, micros);
    return out_put(o, at, (size_t)(end - at)) < 0 ? -1 : 1;
#else
    (void)o;
    (void)v;
    return 0;
#endif
}

/* A count's decimal digits, as "%llu" writes them: snprintf's parsing of its
 * format was a tenth of a row's formatting. */
static int put_count(struct out *o, unsigned long long value)
{
    char digits[20], *end = digits + sizeof(digits);     /* 2^64 - 1 has 20 */
    char *at = digits_before(end, value);
    return out_put(o, at, (size_t)(end - at));
}

/* Writes one atom of the given kind if it is one the fast path knows.
 * Returns 1 written, 0 not known here (nothing written), -1 error. */
static int put_atom(struct out *o, int kind, PyObject *v, int in_container)
{
    switch (kind) {
    case KIND_STRING: {
        const char *text;
        Py_ssize_t len;
        if (!PyUnicode_CheckExact(v) || !plain_string(v, in_container, &text, &len))
            return 0;
        return out_put(o, text, (size_t)len) < 0 ? -1 : 1;
    }
    case KIND_TIME: {
        if (!PyFloat_CheckExact(v))
            return 0;
        int exact = put_time_exact(o, PyFloat_AS_DOUBLE(v));
        if (exact)
            return exact;
        /* What b"%.6f" % v runs (bytes formatting of a float). */
        char *text = PyOS_double_to_string(PyFloat_AS_DOUBLE(v), 'f', 6, 0, NULL);
        if (!text)
            return -1;
        int rc = out_put(o, text, strlen(text));
        PyMem_Free(text);
        return rc < 0 ? -1 : 1;
    }
    case KIND_COUNT:
    case KIND_PORT: {
        if (!PyLong_CheckExact(v))
            return 0;
        unsigned long long value = PyLong_AsUnsignedLongLong(v);
        if (value == (unsigned long long)-1 && PyErr_Occurred()) {
            PyErr_Clear();          /* negative or too large: the converter says which */
            return 0;
        }
        if (kind == KIND_PORT && value > 65535)
            return 0;
        return put_count(o, value) < 0 ? -1 : 1;
    }
    case KIND_ADDR: {
        const char *text;
        Py_ssize_t len;
        if (!PyUnicode_CheckExact(v) || !canonical_ipv4(v, &text, &len))
            return 0;
        return out_put(o, text, (size_t)len) < 0 ? -1 : 1;
    }
    case KIND_BOOL:
        if (v == Py_True)
            return out_put(o, "T", 1) < 0 ? -1 : 1;
        if (v == Py_False)
            return out_put(o, "F", 1) < 0 ? -1 : 1;
        return 0;
    default:
        return 0;
    }
}

/* A set or vector written element by element; 0 (and the output as it was) if
 * any element is not one the fast path knows. */
static int put_container(struct out *o, int kind, PyObject *v)
{
    if (!PyList_CheckExact(v) && !PyTuple_CheckExact(v))
        return 0;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(v);
    if (count == 0)
        return out_put(o, "(empty)", 7) < 0 ? -1 : 1;
    size_t start = o->len;
    PyObject **items = PySequence_Fast_ITEMS(v);
    for (Py_ssize_t i = 0; i < count; i++) {
        if (i && out_put(o, ",", 1) < 0)
            return -1;
        int rc = items[i] == Py_None ? (out_put(o, "-", 1) < 0 ? -1 : 1) : put_atom(o, kind, items[i], 1);
        if (rc <= 0) {
            o->len = start;
            return rc;
        }
    }
    return 1;
}

static int put_converted(struct out *o, PyObject *converter, PyObject *v)
{
    PyObject *text = PyObject_CallOneArg(converter, v);
    if (!text)
        return -1;
    if (!PyBytes_Check(text)) {
        PyErr_Format(PyExc_TypeError, "a TSV converter returned %.100s, not bytes", Py_TYPE(text)->tp_name);
        Py_DECREF(text);
        return -1;
    }
    int rc = out_put(o, PyBytes_AS_STRING(text), (size_t)PyBytes_GET_SIZE(text));
    Py_DECREF(text);
    return rc;
}

static PyObject *tsv_line(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 4 || !PyTuple_CheckExact(args[0]) || !PyBytes_CheckExact(args[1]) ||
        !PyTuple_CheckExact(args[2]) || !PyDict_CheckExact(args[3])) {
        PyErr_SetString(PyExc_TypeError, "tsv_line(names: tuple, kinds: bytes, converters: tuple, record: dict)");
        return NULL;
    }
    PyObject *names = args[0], *converters = args[2], *record = args[3];
    const unsigned char *kinds = (const unsigned char *)PyBytes_AS_STRING(args[1]);
    Py_ssize_t fields = PyTuple_GET_SIZE(names);
    if (PyBytes_GET_SIZE(args[1]) != fields || PyTuple_GET_SIZE(converters) != fields) {
        PyErr_SetString(PyExc_ValueError, "tsv_line: names, kinds and converters differ in length");
        return NULL;
    }

    struct out o = {NULL, 0, 0};
    Py_ssize_t found = 0;
    for (Py_ssize_t i = 0; i < fields; i++) {
        if (i && out_put(&o, "\t", 1) < 0)
            goto fail;
        PyObject *v = PyDict_GetItemWithError(record, PyTuple_GET_ITEM(names, i));   /* borrowed */
        if (!v) {
            if (PyErr_Occurred())
                goto fail;
            v = Py_None;
        } else {
            found++;
        }
        int rc;
        if (v == Py_None)
            rc = out_put(&o, "-", 1) < 0 ? -1 : 1;
        else if (kinds[i] & KIND_CONTAINER)
            rc = put_container(&o, kinds[i] & ~KIND_CONTAINER, v);
        else
            rc = put_atom(&o, kinds[i], v, 0);
        if (rc == 0)
            rc = put_converted(&o, PyTuple_GET_ITEM(converters, i), v) < 0 ? -1 : 1;
        if (rc < 0)
            goto fail;
    }
    if (found != PyDict_GET_SIZE(record)) {
        /* A key that is no field: the caller's check names it. */
        PyErr_SetString(PyExc_ValueError, "tsv_line: the record has keys that are not fields");
        goto fail;
    }
    if (out_put(&o, "\n", 1) < 0)
        goto fail;

    PyObject *line;
    if (o.buf[0] == '#') {      /* a line must not read as a header line */
        line = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)o.len + 3);
        if (line) {
            memcpy(PyBytes_AS_STRING(line), "\\x23", 4);
            memcpy(PyBytes_AS_STRING(line) + 4, o.buf + 1, o.len - 1);
        }
    } else {
        line = PyBytes_FromStringAndSize(o.buf, (Py_ssize_t)o.len);
    }
    PyMem_Free(o.buf);
    return line;

fail:
    PyMem_Free(o.buf);
    return NULL;
}

static PyMethodDef methods[] = {
    {"tsv_line", (PyCFunction)(void (*)(void))tsv_line, METH_FASTCALL,
     "tsv_line(names, kinds, converters, record) -> bytes: one TSV data line with its newline."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_tsvrow", "Zeek TSV rows in C (see tsv_format.py).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__tsvrow(void)
{
    PyObject *m = PyModule_Create(&module);
    if (!m)
        return NULL;
    if (PyModule_AddIntConstant(m, "KIND_OTHER", KIND_OTHER) < 0 ||
        PyModule_AddIntConstant(m, "KIND_STRING", KIND_STRING) < 0 ||
        PyModule_AddIntConstant(m, "KIND_TIME", KIND_TIME) < 0 ||
        PyModule_AddIntConstant(m, "KIND_COUNT", KIND_COUNT) < 0 ||
        PyModule_AddIntConstant(m, "KIND_PORT", KIND_PORT) < 0 ||
        PyModule_AddIntConstant(m, "KIND_BOOL", KIND_BOOL) < 0 ||
        PyModule_AddIntConstant(m, "KIND_ADDR", KIND_ADDR) < 0 ||
        PyModule_AddIntConstant(m, "KIND_CONTAINER", KIND_CONTAINER) < 0 ||
        PyModule_AddStringConstant(m, "SOURCE_SHA256", SOURCE_SHA256) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
