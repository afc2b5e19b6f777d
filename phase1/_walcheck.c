/* phase1._walcheck: the WAL's per-line checksums at C speed (an optional accelerator).
 *
 * check_lines(data) walks the newline-terminated lines of `data` and returns how many lines,
 * from the first, end in a well-formed trailer `,"checksum":<crc>}` whose decimal <crc> (no
 * leading zero, at most 4294967295) equals the CRC-32 (zlib's polynomial) of the bytes
 * before `,"checksum":`.  It stops at the first line that does not (an empty line, a line
 * without the trailer, a mismatch) and at a final line without its newline, so the caller
 * compares the result with the number of lines.  phase1.wal falls back to zlib.crc32 per
 * line (same answer, slower) when this module is not built.  The GIL is released meanwhile.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static uint32_t crc_table[8][256];
static int little_endian;

static void init_tables(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xFF];
    uint16_t probe = 1;
    little_endian = *(const unsigned char *)&probe == 1;
}

static uint32_t crc32_of(const unsigned char *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    if (little_endian) { /* slicing-by-8 */
        while (n >= 8) {
            uint32_t lo, hi;
            memcpy(&lo, p, 4);
            memcpy(&hi, p + 4, 4);
            lo ^= c;
            c = crc_table[7][lo & 0xFF] ^ crc_table[6][(lo >> 8) & 0xFF] ^
                crc_table[5][(lo >> 16) & 0xFF] ^ crc_table[4][lo >> 24] ^
                crc_table[3][hi & 0xFF] ^ crc_table[2][(hi >> 8) & 0xFF] ^
                crc_table[1][(hi >> 16) & 0xFF] ^ crc_table[0][hi >> 24];
            p += 8;
            n -= 8;
        }
    }
    while (n--) c = crc_table[0][(c ^ *p++) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static const char TRAILER[] = ",\"checksum\":";
#define TRAILER_LEN (sizeof(TRAILER) - 1)

/* 1 if line [p, p + n) (without its newline) carries a matching trailer. */
static int line_ok(const unsigned char *p, size_t n) {
    if (n < TRAILER_LEN + 2 || p[n - 1] != '}') return 0;
    size_t end = n - 1, start = end;
    while (start > 0 && p[start - 1] >= '0' && p[start - 1] <= '9') start--;
    size_t digits = end - start;
    if (digits == 0 || digits > 10 || (digits > 1 && p[start] == '0')) return 0;
    if (start < TRAILER_LEN || memcmp(p + start - TRAILER_LEN, TRAILER, TRAILER_LEN) != 0)
        return 0;
    uint64_t stored = 0;
    for (size_t i = start; i < end; i++) stored = stored * 10 + (uint64_t)(p[i] - '0');
    if (stored > 0xFFFFFFFFu) return 0;
    return crc32_of(p, start - TRAILER_LEN) == (uint32_t)stored;
}

static PyObject *check_lines(PyObject *self, PyObject *arg) {
    (void)self;
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    const unsigned char *p = view.buf, *stop = p + view.len;
    Py_ssize_t good = 0;
    Py_BEGIN_ALLOW_THREADS
    while (p < stop) {
        const unsigned char *nl = memchr(p, '\n', (size_t)(stop - p));
        if (nl == NULL || !line_ok(p, (size_t)(nl - p))) break;
        good++;
        p = nl + 1;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(good);
}

static PyObject *crc32(PyObject *self, PyObject *arg) {
    (void)self;
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    uint32_t c = crc32_of(view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLong(c);
}

static PyMethodDef methods[] = {
    {"check_lines", check_lines, METH_O,
     "check_lines(data) -> int: leading lines of data whose checksum trailer holds."},
    {"crc32", crc32, METH_O, "crc32(data) -> int: zlib.crc32(data), for tests."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "phase1._walcheck",
    "The WAL's per-line checksums at C speed (optional; see phase1.wal).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__walcheck(void) {
    init_tables();
    return PyModule_Create(&module);
}
