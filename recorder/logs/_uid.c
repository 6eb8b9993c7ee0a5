/*
 * A connection uid's text in C: the conversion uid.py's reference does with
 * Python integers (_base62), a tenth of a DNS lookup's handling in a replay.
 *
 * uid_digits(random, at) -> str
 *   random: bytes, the OS's random bytes
 *   at:     offset of the uid's 12 bytes in random
 *   The base62 digits of the first 8 bytes read as a big-endian number, then
 *   of the last 4, most significant first and without leading zeros, as Zeek
 *   writes its 64 + 32 random bits (the caller puts the uid's letter first).
 * tests/test_uid.py compares it with the reference.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#ifndef SOURCE_SHA256
#define SOURCE_SHA256 ""
#endif

#define UID_BYTES 12

static const char ALPHABET[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/* Appends n's base62 digits at out; returns how many (at most 11 for 64 bits). */
static size_t base62(uint64_t n, char *out)
{
    char digits[11];
    size_t at = sizeof(digits);
    do {
        digits[--at] = ALPHABET[n % 62];
        n /= 62;
    } while (n);
    memcpy(out, digits + at, sizeof(digits) - at);
    return sizeof(digits) - at;
}

static uint64_t big_endian(const uint8_t *p, int bytes)
{
    uint64_t n = 0;
    for (int i = 0; i < bytes; i++)
        n = n << 8 | p[i];
    return n;
}

static PyObject *uid_digits(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyBytes_Check(args[0]) || !PyLong_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "uid_digits(random: bytes, at: int)");
        return NULL;
    }
    Py_ssize_t at = PyLong_AsSsize_t(args[1]);
    if (at == -1 && PyErr_Occurred())
        return NULL;
    if (at < 0 || at > PyBytes_GET_SIZE(args[0]) - UID_BYTES) {
        PyErr_SetString(PyExc_ValueError, "uid_digits: fewer than 12 random bytes at the offset");
        return NULL;
    }
    const uint8_t *random = (const uint8_t *)PyBytes_AS_STRING(args[0]) + at;
    char text[11 + 6];
    size_t len = base62(big_endian(random, 8), text);
    len += base62(big_endian(random + 8, 4), text + len);
    return PyUnicode_FromStringAndSize(text, (Py_ssize_t)len);
}

static PyMethodDef methods[] = {
    {"uid_digits", (PyCFunction)(void (*)(void))uid_digits, METH_FASTCALL,
     "uid_digits(random, at) -> str: a uid's digits from the 12 random bytes at the offset."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_uid", "Connection uids' text in C (see uid.py).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__uid(void)
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
