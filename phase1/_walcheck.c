/* phase1._walcheck: the WAL's per-line checksums and its common records at C speed (an
 * optional accelerator; phase1.wal gives the same answers without it, slower).
 *
 * check_lines(data) walks the newline-terminated lines of `data` and returns how many lines,
 * from the first, end in a well-formed trailer `,"checksum":<crc>}` whose decimal <crc> (no
 * leading zero, at most 4294967295) equals the CRC-32 (zlib's polynomial) of the bytes
 * before `,"checksum":`.  It stops at the first line that does not (an empty line, a line
 * without the trailer, a mismatch) and at a final line without its newline, so the caller
 * compares the result with the number of lines.  The GIL is released meanwhile.
 *
 * decode_records(...) goes further: it turns each line, from `start`, into the Record
 * phase1.wal.decode_line would return, *only* for lines in the exact shape the writer
 * produces (keys in the writer's order, no whitespace, strings of printable ASCII without
 * escapes, integers of at most 18 digits, a valid timestamp, a matching checksum, the
 * next seq).  It stops at the first line it cannot vouch for, without judging it: the
 * caller reads that line with decode_line (which accepts it or names the damage) and calls
 * again after it.  So every error message comes from the Python path.  A job's payload is
 * built here when it is plain JSON (objects with distinct keys, arrays, strings as above,
 * integers, true/false/null, nesting at most 64 deep); any other payload's extent is found
 * (strings, nesting) and `loads` (orjson.loads) parses exactly that slice; if it refuses,
 * the line is left to the caller too.  Every read is bounded by the line; the caller's
 * seq arguments must fit int64 (no seq read here has more than 18 digits).  Given a list
 * `ids`, it also appends the job id of each ENQUEUE it appends to `out` (replay's
 * up-front check that ENQUEUEs name distinct, unknown jobs then needs no pass over rows).
 *
 * encode_records(recs, Record, Job, dumps, fallback) is the writer's side: the bytes
 * phase1.wal's Python encoder (_encode_records_py) writes for recs, byte for byte, built
 * here for the records it is sure of (see encode_one: the common DISPATCH / ACK / FAIL /
 * TIMEOUT / RETRY / DEAD records, with or without a reason, and plain ENQUEUEs, fields of
 * exact types, ints within long long, timestamps in years 1-9999, and ENQUEUEs whose job
 * has a status, a delay or dependencies).  Strings needing JSON
 * escapes and payloads outside a plain subset go through `dumps` (orjson.dumps, as the
 * Python path calls it); every other record, and any that `dumps` refuses, is
 * fallback(record)'s bytes (the Python path), so odd cases and every error message stay
 * Python's.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <limits.h>
#include <string.h>
#include <math.h>
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_CLMUL_PATH 1
static int have_clmul; /* set once by init_tables from the CPU's feature bits */
#endif

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
#ifdef HAVE_CLMUL_PATH
    __builtin_cpu_init();
    have_clmul = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
#endif
}

/* The table path: slicing-by-8 on little-endian machines, a byte at a time elsewhere.
 * `c` is the running register (pre- and post-inverted by the caller). */
static uint32_t crc32_table_update(uint32_t c, const unsigned char *p, size_t n) {
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
    return c;
}

#ifdef HAVE_CLMUL_PATH
/* Carry-less multiplication folding (Gopal et al., "Fast CRC Computation for Generic
 * Polynomials Using PCLMULQDQ Instruction", Intel, 2009), the bit-reflected form for zlib's
 * polynomial, as in Chromium's zlib (crc32_simd.c): fold 64 bytes at a time in four lanes,
 * then 16 at a time, then reduce 128 -> 64 -> 32 bits (Barrett).  n >= 64 and a multiple
 * of 16; `c` is the running register, as for the table path. */
__attribute__((target("pclmul,sse4.1"))) static uint32_t crc32_clmul_update(
    uint32_t c, const unsigned char *p, size_t n) {
    const __m128i k1k2 = _mm_set_epi64x(0x01c6e41596LL, 0x0154442bd4LL);
    const __m128i k3k4 = _mm_set_epi64x(0x00ccaa009eLL, 0x01751997d0LL);
    const __m128i k5k0 = _mm_set_epi64x(0, 0x0163cd6124LL);
    const __m128i poly = _mm_set_epi64x(0x01f7011641LL, 0x01db710641LL);
    const __m128i mask32 = _mm_setr_epi32(~0, 0, ~0, 0);
    __m128i x0, x1, x2, x3, x4, x5, x6, x7, x8;

    x1 = _mm_loadu_si128((const __m128i *)(p + 0x00));
    x2 = _mm_loadu_si128((const __m128i *)(p + 0x10));
    x3 = _mm_loadu_si128((const __m128i *)(p + 0x20));
    x4 = _mm_loadu_si128((const __m128i *)(p + 0x30));
    x1 = _mm_xor_si128(x1, _mm_cvtsi32_si128((int)c));
    p += 64;
    n -= 64;
    while (n >= 64) { /* four lanes, 512 bits apart */
        x5 = _mm_clmulepi64_si128(x1, k1k2, 0x00);
        x6 = _mm_clmulepi64_si128(x2, k1k2, 0x00);
        x7 = _mm_clmulepi64_si128(x3, k1k2, 0x00);
        x8 = _mm_clmulepi64_si128(x4, k1k2, 0x00);
        x1 = _mm_clmulepi64_si128(x1, k1k2, 0x11);
        x2 = _mm_clmulepi64_si128(x2, k1k2, 0x11);
        x3 = _mm_clmulepi64_si128(x3, k1k2, 0x11);
        x4 = _mm_clmulepi64_si128(x4, k1k2, 0x11);
        x1 = _mm_xor_si128(_mm_xor_si128(x1, x5), _mm_loadu_si128((const __m128i *)(p + 0x00)));
        x2 = _mm_xor_si128(_mm_xor_si128(x2, x6), _mm_loadu_si128((const __m128i *)(p + 0x10)));
        x3 = _mm_xor_si128(_mm_xor_si128(x3, x7), _mm_loadu_si128((const __m128i *)(p + 0x20)));
        x4 = _mm_xor_si128(_mm_xor_si128(x4, x8), _mm_loadu_si128((const __m128i *)(p + 0x30)));
        p += 64;
        n -= 64;
    }
    /* the four lanes into one */
    x0 = k3k4;
    x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
    x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
    x1 = _mm_xor_si128(_mm_xor_si128(x1, x2), x5);
    x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
    x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
    x1 = _mm_xor_si128(_mm_xor_si128(x1, x3), x5);
    x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
    x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
    x1 = _mm_xor_si128(_mm_xor_si128(x1, x4), x5);
    while (n >= 16) { /* single folds */
        x2 = _mm_loadu_si128((const __m128i *)p);
        x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
        x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
        x1 = _mm_xor_si128(_mm_xor_si128(x1, x2), x5);
        p += 16;
        n -= 16;
    }
    /* 128 -> 64 bits */
    x2 = _mm_clmulepi64_si128(x1, x0, 0x10);
    x1 = _mm_xor_si128(_mm_srli_si128(x1, 8), x2);
    x2 = _mm_srli_si128(x1, 4);
    x1 = _mm_and_si128(x1, mask32);
    x1 = _mm_clmulepi64_si128(x1, k5k0, 0x00);
    x1 = _mm_xor_si128(x1, x2);
    /* Barrett reduction to 32 bits */
    x2 = _mm_and_si128(x1, mask32);
    x2 = _mm_clmulepi64_si128(x2, poly, 0x10);
    x2 = _mm_and_si128(x2, mask32);
    x2 = _mm_clmulepi64_si128(x2, poly, 0x00);
    x1 = _mm_xor_si128(x1, x2);
    return (uint32_t)_mm_extract_epi32(x1, 1);
}
#endif

static uint32_t crc32_of(const unsigned char *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
#ifdef HAVE_CLMUL_PATH
    if (have_clmul && n >= 64) {
        size_t whole = n & ~(size_t)15;
        c = crc32_clmul_update(c, p, whole);
        p += whole;
        n -= whole;
    }
#endif
    return crc32_table_update(c, p, n) ^ 0xFFFFFFFFu;
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

/* == decode_records ====================================================================== */
typedef const unsigned char *cptr;

typedef struct {
    cptr p, end;
} cursor;

/* The exact bytes `lit` next, consumed. */
static int eat(cursor *c, const char *lit, size_t n) {
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, lit, n) != 0) return 0;
    c->p += n;
    return 1;
}
#define EAT(c, lit) eat((c), (lit), sizeof(lit) - 1)

/* An integer as orjson writes it: -?(0|[1-9][0-9]*) with at most 18 digits (so it fits
 * int64 whatever it is); "-0" and a sign where none is allowed are left to Python. */
static int integer(cursor *c, int signed_ok, long long *out) {
    cptr p = c->p;
    int neg = 0;
    if (p < c->end && *p == '-') {
        if (!signed_ok) return 0;
        neg = 1;
        p++;
    }
    cptr d = p;
    while (p < c->end && *p >= '0' && *p <= '9') p++;
    size_t n = (size_t)(p - d);
    if (n == 0 || n > 18 || (*d == '0' && (n > 1 || neg))) return 0;
    long long v = 0;
    for (cptr q = d; q < p; q++) v = v * 10 + (*q - '0');
    *out = neg ? -v : v;
    c->p = p;
    return 1;
}

/* A string of printable ASCII without escapes: [*s, *s + *n). */
static int string(cursor *c, cptr *s, size_t *n) {
    if (c->p >= c->end || *c->p != '"') return 0;
    cptr q = c->p + 1;
    while (q < c->end && *q != '"') {
        if (*q < 0x20 || *q > 0x7E || *q == '\\') return 0;
        q++;
    }
    if (q >= c->end) return 0;
    *s = c->p + 1;
    *n = (size_t)(q - *s);
    c->p = q + 1;
    return 1;
}

static int digits(cptr p, int n, int *out) {
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') return 0;
        v = v * 10 + (p[i] - '0');
    }
    *out = v;
    return 1;
}

/* "YYYY-MM-DDTHH:MM:SS.mmmZ" (24 bytes) as milliseconds since 1970, for exactly the stamps
 * phase1.wal._parse_ts accepts without doubt (years 1-9999, real dates, hours < 24,
 * seconds < 60); anything else is left to it. */
static int stamp_ms(cptr t, long long *ms) {
    int y, mo, d, h, mi, s, milli;
    if (t[4] != '-' || t[7] != '-' || t[10] != 'T' || t[13] != ':' || t[16] != ':' ||
        t[19] != '.' || t[23] != 'Z')
        return 0;
    if (!digits(t, 4, &y) || !digits(t + 5, 2, &mo) || !digits(t + 8, 2, &d) ||
        !digits(t + 11, 2, &h) || !digits(t + 14, 2, &mi) || !digits(t + 17, 2, &s) ||
        !digits(t + 20, 3, &milli))
        return 0;
    static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 1 || mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || s > 59) return 0;
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (d > mdays[mo - 1] + (mo == 2 && leap)) return 0;
    /* days from the civil date (H. Hinnant's algorithm), y >= 1 so no negative eras */
    long long yy = y - (mo <= 2);
    long long era = yy / 400;
    long long yoe = yy - era * 400;
    long long doy = (153 * (mo > 2 ? mo - 3 : mo + 9) + 2) / 5 + d - 1;
    long long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    long long days = era * 146097 + doe - 719468;
    *ms = ((days * 86400 + h * 3600 + mi * 60 + s) * 1000) + milli;
    return 1;
}

#define PAYLOAD_DEPTH_MAX 64

/* Skip one JSON value without whitespace; strings may hold escapes and any byte (orjson
 * judges them), scalars are runs of [-+.0-9A-Za-z].  Only finds where the value ends. */
static int skip_value(cursor *c, int depth) {
    if (c->p >= c->end || depth > PAYLOAD_DEPTH_MAX) return 0;
    unsigned char ch = *c->p;
    if (ch == '"') {
        cptr q = c->p + 1;
        while (q < c->end && *q != '"') {
            if (*q == '\\') {
                if (c->end - q < 2) return 0; /* (never step past the end) */
                q += 2;
            } else {
                q++;
            }
        }
        if (q >= c->end) return 0;
        c->p = q + 1;
        return 1;
    }
    if (ch == '{' || ch == '[') {
        unsigned char close = ch == '{' ? '}' : ']';
        c->p++;
        if (c->p < c->end && *c->p == close) {
            c->p++;
            return 1;
        }
        for (;;) {
            if (ch == '{') {
                if (c->p >= c->end || *c->p != '"' || !skip_value(c, depth + 1)) return 0;
                if (c->p >= c->end || *c->p != ':') return 0;
                c->p++;
            }
            if (!skip_value(c, depth + 1)) return 0;
            if (c->p >= c->end) return 0;
            if (*c->p == close) {
                c->p++;
                return 1;
            }
            if (*c->p != ',') return 0;
            c->p++;
        }
    }
    cptr q = c->p;
    while (q < c->end && ((*q >= '0' && *q <= '9') || (*q >= 'a' && *q <= 'z') ||
                          (*q >= 'A' && *q <= 'Z') || *q == '-' || *q == '+' || *q == '.'))
        q++;
    if (q == c->p) return 0;
    c->p = q;
    return 1;
}

/* Where a line's trailer `,"checksum":<crc>}` starts (the body's length), or -1. */
static Py_ssize_t trailer_at(cptr p, size_t n, uint32_t *stored) {
    if (n < TRAILER_LEN + 2 || p[n - 1] != '}') return -1;
    size_t end = n - 1, start = end;
    while (start > 0 && p[start - 1] >= '0' && p[start - 1] <= '9') start--;
    size_t ndig = end - start;
    if (ndig == 0 || ndig > 10 || (ndig > 1 && p[start] == '0')) return -1;
    if (start < TRAILER_LEN || memcmp(p + start - TRAILER_LEN, TRAILER, TRAILER_LEN) != 0)
        return -1;
    uint64_t v = 0;
    for (size_t i = start; i < end; i++) v = v * 10 + (uint64_t)(p[i] - '0');
    if (v > 0xFFFFFFFFu) return -1;
    *stored = (uint32_t)v;
    return (Py_ssize_t)(start - TRAILER_LEN);
}

enum { T_ENQUEUE, T_DISPATCH, T_ACK, T_FAIL, T_TIMEOUT, T_RETRY, T_DEAD, N_TYPES };
static const char *const TYPE_NAMES[N_TYPES] = {"ENQUEUE", "DISPATCH", "ACK",  "FAIL",
                                                "TIMEOUT", "RETRY",    "DEAD"};
static PyObject *type_str[N_TYPES];
static PyObject *str_pending;

/* The fields of one line, as offsets into the buffer (no Python objects yet). */
typedef struct {
    long long seq, attempt, worker_id, deadline_ms, ms;
    int type, has_worker, has_deadline, has_reason, has_job;
    cptr id, reason, stamp;
    size_t id_n, reason_n;
    /* the job */
    cptr payload, status;
    size_t payload_n, status_n;
    long long jattempt, priority, scheduled;
    double scheduled_f; /* has_scheduled == 2: scheduled_at was a float */
    int has_priority, has_scheduled, n_deps;
    cptr deps, deps_end; /* depends_on's text between '[' and ']' */
} fields;

/* A job object in the writer's shape (`job_to_dict`: id, payload, attempt, status, then
 * priority, scheduled_at, depends_on when set) into f's job fields, its id in *jid. */
static int number_goes_on(unsigned char ch) { return ch == '.' || ch == 'e' || ch == 'E'; }

/* A JSON number, -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?, as the correctly rounded
 * double Python's float() gives; 0 for anything else, a text over 64 bytes, or a value
 * beyond the doubles (left to Python, which refuses it). */
static int json_double(cursor *c, double *out) {
    cptr p = c->p, e = c->end;
    if (p < e && *p == '-') p++;
    if (p >= e || *p < '0' || *p > '9') return 0;
    if (*p == '0') {
        p++;
    } else {
        while (p < e && *p >= '0' && *p <= '9') p++;
    }
    if (p < e && *p == '.') {
        cptr d = ++p;
        while (p < e && *p >= '0' && *p <= '9') p++;
        if (p == d) return 0;
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < e && (*p == '+' || *p == '-')) p++;
        cptr d = p;
        while (p < e && *p >= '0' && *p <= '9') p++;
        if (p == d) return 0;
    }
    size_t n = (size_t)(p - c->p);
    char text[65];
    if (n > 64) return 0;
    memcpy(text, c->p, n);
    text[n] = '\0';
    char *end;
    double v = PyOS_string_to_double(text, &end, NULL); /* NULL: overflow gives +-inf */
    if (v == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    if (end != text + n || !isfinite(v)) return 0;
    *out = v;
    c->p = p;
    return 1;
}

static int parse_job(cursor *c, long long priority_max, int floats_ok, fields *f, cptr *jid,
                     size_t *jid_n) {
    if (!EAT(c, "{\"id\":") || !string(c, jid, jid_n)) return 0;
    if (!EAT(c, ",\"payload\":")) return 0;
    f->payload = c->p;
    if (!skip_value(c, 1)) return 0;
    f->payload_n = (size_t)(c->p - f->payload);
    if (!EAT(c, ",\"attempt\":") || !integer(c, 0, &f->jattempt)) return 0;
    if (!EAT(c, ",\"status\":") || !string(c, &f->status, &f->status_n)) return 0;
    if (EAT(c, ",\"priority\":")) {
        if (!integer(c, 0, &f->priority) || f->priority > priority_max) return 0;
        f->has_priority = 1;
    }
    if (EAT(c, ",\"scheduled_at\":")) {
        cptr at = c->p;
        if (integer(c, 1, &f->scheduled) && (c->p >= c->end || !number_goes_on(*c->p))) {
            f->has_scheduled = 1;
        } else if (floats_ok && c->p > at && c->p < c->end && number_goes_on(*c->p)) {
            /* a float (an integer of over 18 digits is left to Python) */
            c->p = at;
            if (!json_double(c, &f->scheduled_f)) return 0;
            f->has_scheduled = 2;
        } else {
            return 0; /* left to Python */
        }
    }
    if (EAT(c, ",\"depends_on\":[")) {
        f->deps = f->deps_end = c->p;
        if (!EAT(c, "]")) {
            for (;;) {
                cptr s;
                size_t sn;
                if (!string(c, &s, &sn)) return 0;
                f->n_deps++;
                f->deps_end = c->p;
                if (EAT(c, "]")) break;
                if (!EAT(c, ",")) return 0;
            }
        }
    }
    return EAT(c, "}");
}

/* Parse the body [p, p + n) of a line (everything before its trailer). */
static int parse_body(cptr p, size_t n, long long priority_max, fields *f) {
    cursor c = {p, p + n};
    /* (only what may stay unset; a memset of the whole struct showed in profiles) */
    f->attempt = f->priority = 0;
    f->has_worker = f->has_deadline = f->has_reason = f->has_job = 0;
    f->has_priority = f->has_scheduled = f->n_deps = 0;
    f->deps = f->deps_end = NULL;
    if (!EAT(&c, "{\"seq\":") || !integer(&c, 0, &f->seq) || f->seq < 1) return 0;
    if (!EAT(&c, ",\"type\":\"")) return 0;
    f->type = -1;
    for (int t = 0; t < N_TYPES; t++) {
        size_t len = strlen(TYPE_NAMES[t]);
        if ((size_t)(c.end - c.p) > len && memcmp(c.p, TYPE_NAMES[t], len) == 0 &&
            c.p[len] == '"') {
            f->type = t;
            c.p += len + 1;
            break;
        }
    }
    if (f->type < 0) return 0;
    if (!EAT(&c, ",\"job_id\":") || !string(&c, &f->id, &f->id_n) || f->id_n == 0) return 0;
    if (!EAT(&c, ",\"timestamp\":\"") || c.end - c.p < 25 || c.p[24] != '"') return 0;
    f->stamp = c.p;
    c.p += 25;
    if (EAT(&c, ",\"attempt\":") && !integer(&c, 0, &f->attempt)) return 0;
    if (EAT(&c, ",\"worker_id\":")) {
        if (!integer(&c, 1, &f->worker_id)) return 0;
        f->has_worker = 1;
    }
    if (EAT(&c, ",\"deadline_ms\":")) {
        if (!integer(&c, 1, &f->deadline_ms)) return 0;
        f->has_deadline = 1;
    }
    if (EAT(&c, ",\"reason\":")) {
        if (!string(&c, &f->reason, &f->reason_n)) return 0;
        f->has_reason = 1;
    }
    if (EAT(&c, ",\"job\":")) {
        cptr jid;
        size_t jid_n;
        if (f->type != T_ENQUEUE) return 0;
        f->has_job = 1;
        if (!parse_job(&c, priority_max, 0, f, &jid, &jid_n) || jid_n != f->id_n ||
            memcmp(jid, f->id, jid_n) != 0)
            return 0;
    } else if (f->type == T_ENQUEUE) {
        return 0;
    }
    return c.p == c.end;
}

static PyObject *ascii_str(cptr s, size_t n) {
    PyObject *o = PyUnicode_New((Py_ssize_t)n, 127);
    if (o != NULL) memcpy(PyUnicode_1BYTE_DATA(o), s, n);
    return o;
}

/* Job ids repeat (ENQUEUE, DISPATCH, ACK of one job are a few lines apart): a small
 * direct-mapped cache gives the same str object again, which also makes the core's dict
 * lookups identity hits on a cached hash. */
#define ID_CACHE_BITS 10
typedef struct {
    PyObject **slot; /* NULL until the call has read a few lines */
} id_cache;

static uint32_t fnv1a(cptr s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 16777619u;
    return h;
}

/* The str in *slot if it holds exactly s[0:n], else a new one that replaces it there. */
static PyObject *cached_ascii(PyObject **slot, cptr s, size_t n) {
    PyObject *o = *slot;
    if (o != NULL && (size_t)PyUnicode_GET_LENGTH(o) == n &&
        memcmp(PyUnicode_1BYTE_DATA(o), s, n) == 0) {
        Py_INCREF(o);
        return o;
    }
    o = ascii_str(s, n);
    if (o == NULL) return NULL;
    Py_XDECREF(*slot);
    Py_INCREF(o);
    *slot = o;
    return o;
}

/* A new reference: v as an int, or None when the field was absent. */
static PyObject *optional_long(int present, long long v) {
    if (present) return PyLong_FromLongLong(v);
    Py_INCREF(Py_None);
    return Py_None;
}

static PyObject *job_id_str(id_cache *cache, cptr s, size_t n) {
    if (cache->slot == NULL) return ascii_str(s, n);
    return cached_ascii(&cache->slot[fnv1a(s, n) >> (32 - ID_CACHE_BITS)], s, n);
}

static void id_cache_free(id_cache *cache) {
    if (cache->slot == NULL) return;
    for (size_t i = 0; i < ((size_t)1 << ID_CACHE_BITS); i++) Py_XDECREF(cache->slot[i]);
    PyMem_Free(cache->slot);
    cache->slot = NULL;
}

/* A tuple subclass laid out as a plain tuple (a NamedTuple), so its items are set as a
 * tuple's are. */
static int plain_tuple_type(PyObject *t) {
    return PyType_Check(t) && PyType_IsSubtype((PyTypeObject *)t, &PyTuple_Type) &&
           ((PyTypeObject *)t)->tp_basicsize == PyTuple_Type.tp_basicsize &&
           ((PyTypeObject *)t)->tp_itemsize == PyTuple_Type.tp_itemsize;
}

static PyObject *new_tuple_of(PyTypeObject *type, Py_ssize_t n) {
    return type == &PyTuple_Type ? PyTuple_New(n) : type->tp_alloc(type, n);
}

/* Object keys of payloads repeat on every line ("index", "value", ...): a tiny cache. */
#define KEY_CACHE 64
static PyObject *key_str(PyObject **keys, cptr s, size_t n) {
    return cached_ascii(&keys[fnv1a(s, n) % KEY_CACHE], s, n);
}

/* A payload in the plain subset of JSON (objects with distinct keys, arrays, strings of
 * printable ASCII without escapes, integers of at most 18 digits, true, false, null; no
 * whitespace) as the object orjson.loads would return.  1: built in *out; 0: something
 * else (nothing set: orjson.loads decides); -1: an error is set. */
static int build_value(cursor *c, int depth, PyObject **keys, PyObject **out) {
    if (c->p >= c->end || depth > PAYLOAD_DEPTH_MAX) return 0;
    unsigned char ch = *c->p;
    if (ch == '"') {
        cptr s;
        size_t n;
        if (!string(c, &s, &n)) return 0;
        *out = ascii_str(s, n);
        return *out != NULL ? 1 : -1;
    }
    if (ch == '{') {
        c->p++;
        PyObject *d = PyDict_New();
        if (d == NULL) return -1;
        if (EAT(c, "}")) {
            *out = d;
            return 1;
        }
        for (;;) {
            cptr s;
            size_t n;
            PyObject *v;
            if (!string(c, &s, &n) || !EAT(c, ":")) break;
            int r = build_value(c, depth + 1, keys, &v);
            if (r < 0) {
                Py_DECREF(d);
                return -1;
            }
            if (r == 0) break;
            PyObject *k = key_str(keys, s, n);
            Py_ssize_t before = PyDict_GET_SIZE(d);
            int err = k == NULL ? -1 : PyDict_SetItem(d, k, v);
            Py_XDECREF(k);
            Py_DECREF(v);
            if (err < 0) {
                Py_DECREF(d);
                return -1;
            }
            if (PyDict_GET_SIZE(d) == before) break; /* a repeated key: orjson decides */
            if (EAT(c, "}")) {
                *out = d;
                return 1;
            }
            if (!EAT(c, ",")) break;
        }
        Py_DECREF(d);
        return 0;
    }
    if (ch == '[') {
        c->p++;
        PyObject *l = PyList_New(0);
        if (l == NULL) return -1;
        if (EAT(c, "]")) {
            *out = l;
            return 1;
        }
        for (;;) {
            PyObject *v;
            int r = build_value(c, depth + 1, keys, &v);
            if (r < 0) {
                Py_DECREF(l);
                return -1;
            }
            if (r == 0) break;
            int err = PyList_Append(l, v);
            Py_DECREF(v);
            if (err < 0) {
                Py_DECREF(l);
                return -1;
            }
            if (EAT(c, "]")) {
                *out = l;
                return 1;
            }
            if (!EAT(c, ",")) break;
        }
        Py_DECREF(l);
        return 0;
    }
    if (EAT(c, "true")) {
        Py_INCREF(Py_True);
        *out = Py_True;
        return 1;
    }
    if (EAT(c, "false")) {
        Py_INCREF(Py_False);
        *out = Py_False;
        return 1;
    }
    if (EAT(c, "null")) {
        Py_INCREF(Py_None);
        *out = Py_None;
        return 1;
    }
    long long v;
    if (!integer(c, 1, &v)) return 0;
    *out = PyLong_FromLongLong(v);
    return *out != NULL ? 1 : -1;
}

/* Build the Job of f; NULL with no exception set when loads refuses the payload. */
static PyObject *build_job(const fields *f, PyObject *job_id, PyTypeObject *job_t,
                           PyObject *loads, PyObject **keys) {
    PyObject *payload = NULL;
    cursor pc = {f->payload, f->payload + f->payload_n};
    int built = build_value(&pc, 1, keys, &payload);
    if (built < 0) return NULL;
    if (built && pc.p != pc.end) { /* e.g. 1.5: an integer, then more */
        Py_DECREF(payload);
        built = 0;
    }
    if (!built) {
        PyObject *raw =
            PyBytes_FromStringAndSize((const char *)f->payload, (Py_ssize_t)f->payload_n);
        if (raw == NULL) return NULL;
        payload = PyObject_CallOneArg(loads, raw);
        Py_DECREF(raw);
        if (payload == NULL) {
            if (PyErr_ExceptionMatches(PyExc_ValueError)) PyErr_Clear(); /* JSONDecodeError */
            return NULL;
        }
    }
    PyObject *job = new_tuple_of(job_t, 7);
    if (job == NULL) {
        Py_DECREF(payload);
        return NULL;
    }
    Py_INCREF(job_id);
    PyTuple_SET_ITEM(job, 0, job_id);
    PyTuple_SET_ITEM(job, 1, payload);
    PyObject *o = PyLong_FromLongLong(f->jattempt);
    if (o == NULL) goto fail;
    PyTuple_SET_ITEM(job, 2, o);
    if (f->status_n == 7 && memcmp(f->status, "pending", 7) == 0) {
        Py_INCREF(str_pending);
        o = str_pending;
    } else if ((o = ascii_str(f->status, f->status_n)) == NULL) {
        goto fail;
    }
    PyTuple_SET_ITEM(job, 3, o);
    if ((o = PyLong_FromLongLong(f->priority)) == NULL) goto fail;
    PyTuple_SET_ITEM(job, 4, o);
    o = f->has_scheduled == 2 ? PyFloat_FromDouble(f->scheduled_f)
                              : optional_long(f->has_scheduled, f->scheduled);
    if (o == NULL) goto fail;
    PyTuple_SET_ITEM(job, 5, o);
    if ((o = PyTuple_New(f->n_deps)) == NULL) goto fail;
    PyTuple_SET_ITEM(job, 6, o);
    cursor c = {f->deps, f->deps_end}; /* the ids parse_body checked, again */
    for (int i = 0; i < f->n_deps; i++) {
        cptr d;
        size_t dn;
        if ((i && !EAT(&c, ",")) || !string(&c, &d, &dn)) {
            PyErr_SetString(PyExc_SystemError, "_walcheck: depends_on re-read failed");
            goto fail;
        }
        PyObject *dep = ascii_str(d, dn);
        if (dep == NULL) goto fail;
        PyTuple_SET_ITEM(o, i, dep);
    }
    return job;
fail:
    Py_DECREF(job);
    return NULL;
}

/* The Record of f (seq, type, job_id, timestamp_ms, attempt, worker_id, deadline_ms, reason,
 * job); NULL with no exception set when the line must be left to Python. */
typedef struct {
    id_cache ids;
    PyObject *keys[KEY_CACHE];
    cptr last_stamp; /* the previous line's timestamp and its milliseconds */
    PyObject *last_ms;
    long long last_deadline;
    PyObject *last_deadline_obj;
} decoder;

static PyObject *build_record(decoder *dc, const fields *f, PyTypeObject *rec_t,
                              PyTypeObject *job_t, PyObject *loads) {
    PyObject *job_id = job_id_str(&dc->ids, f->id, f->id_n);
    if (job_id == NULL) return NULL;
    PyObject *job = NULL;
    if (f->has_job) {
        job = build_job(f, job_id, job_t, loads, dc->keys);
        if (job == NULL) {
            Py_DECREF(job_id);
            return NULL;
        }
    }
    PyObject *rec = new_tuple_of(rec_t, 9);
    if (rec == NULL) {
        Py_DECREF(job_id);
        Py_XDECREF(job);
        return NULL;
    }
    PyTuple_SET_ITEM(rec, 2, job_id);
    if (job == NULL) {
        Py_INCREF(Py_None);
        job = Py_None;
    }
    PyTuple_SET_ITEM(rec, 8, job);
    PyObject *o = PyLong_FromLongLong(f->seq);
    if (o == NULL) goto fail;
    PyTuple_SET_ITEM(rec, 0, o);
    Py_INCREF(type_str[f->type]);
    PyTuple_SET_ITEM(rec, 1, type_str[f->type]);
    Py_INCREF(dc->last_ms);
    PyTuple_SET_ITEM(rec, 3, dc->last_ms);
    if ((o = PyLong_FromLongLong(f->attempt)) == NULL) goto fail;
    PyTuple_SET_ITEM(rec, 4, o);
    if ((o = optional_long(f->has_worker, f->worker_id)) == NULL) goto fail;
    PyTuple_SET_ITEM(rec, 5, o);
    if (f->has_deadline) {
        if (dc->last_deadline_obj == NULL || dc->last_deadline != f->deadline_ms) {
            if ((o = PyLong_FromLongLong(f->deadline_ms)) == NULL) goto fail;
            Py_XDECREF(dc->last_deadline_obj);
            dc->last_deadline_obj = o;
            dc->last_deadline = f->deadline_ms;
        }
        o = dc->last_deadline_obj;
    } else {
        o = Py_None;
    }
    Py_INCREF(o);
    PyTuple_SET_ITEM(rec, 6, o);
    if (f->has_reason) {
        if ((o = ascii_str(f->reason, f->reason_n)) == NULL) goto fail;
    } else {
        Py_INCREF(Py_None);
        o = Py_None;
    }
    PyTuple_SET_ITEM(rec, 7, o);
    return rec;
fail:
    Py_DECREF(rec);
    return NULL;
}

static PyObject *decode_records(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer view;
    Py_ssize_t start;
    long long prev, after, priority_max;
    PyObject *out, *rec_o, *job_o, *loads, *ids = Py_None;
    if (!PyArg_ParseTuple(args, "y*nLLO!OOOL|O:decode_records", &view, &start, &prev, &after,
                          &PyList_Type, &out, &rec_o, &job_o, &loads, &priority_max, &ids))
        return NULL;
    PyObject *result = NULL;
    decoder dc;
    memset(&dc, 0, sizeof(dc));
    if (!plain_tuple_type(rec_o) || !plain_tuple_type(job_o)) {
        PyErr_SetString(PyExc_TypeError, "decode_records: Record and Job must be NamedTuples");
        goto done;
    }
    if (start < 0 || start > view.len || prev < 0 || prev == LLONG_MAX) {
        PyErr_SetString(PyExc_ValueError, "decode_records: start or prev out of range");
        goto done;
    }
    if (!PyCallable_Check(loads)) {
        PyErr_SetString(PyExc_TypeError, "decode_records: loads must be callable");
        goto done;
    }
    if (ids != Py_None && !PyList_CheckExact(ids)) {
        PyErr_SetString(PyExc_TypeError, "decode_records: ids must be a list or None");
        goto done;
    }
    PyTypeObject *rec_t = (PyTypeObject *)rec_o, *job_t = (PyTypeObject *)job_o;
    cptr base = view.buf, stop = base + view.len, p = base + start;
    Py_ssize_t lines = 0;
    while (p < stop) {
        cptr nl = memchr(p, '\n', (size_t)(stop - p));
        if (nl == NULL) break;
        uint32_t stored;
        Py_ssize_t body = trailer_at(p, (size_t)(nl - p), &stored);
        if (body < 0) break;
        fields f;
        if (!parse_body(p, (size_t)body, priority_max, &f)) break;
        if (prev && f.seq != prev + 1) break; /* a sequence break: Python names it */
        if (dc.last_stamp == NULL || memcmp(dc.last_stamp, f.stamp, 24) != 0) {
            long long ms;
            if (!stamp_ms(f.stamp, &ms)) break;
            PyObject *o = PyLong_FromLongLong(ms);
            if (o == NULL) goto done;
            Py_XDECREF(dc.last_ms);
            dc.last_ms = o;
            dc.last_stamp = f.stamp;
        }
        if (crc32_of(p, (size_t)body) != stored) break;
        if (lines == 64 && dc.ids.slot == NULL) {
            dc.ids.slot = PyMem_Calloc((size_t)1 << ID_CACHE_BITS, sizeof(PyObject *));
            if (dc.ids.slot == NULL) {
                PyErr_NoMemory();
                goto done;
            }
        }
        PyObject *rec = build_record(&dc, &f, rec_t, job_t, loads);
        if (rec == NULL) {
            if (PyErr_Occurred()) goto done;
            break; /* loads refused the payload */
        }
        if (f.seq > after) {
            int err = PyList_Append(out, rec);
            if (err == 0 && f.type == T_ENQUEUE && ids != Py_None)
                err = PyList_Append(ids, PyTuple_GET_ITEM(rec, 2)); /* its job id */
            Py_DECREF(rec);
            if (err < 0) goto done;
        } else {
            Py_DECREF(rec);
        }
        prev = f.seq;
        lines++;
        p = nl + 1;
    }
    result = Py_BuildValue("(nnL)", (Py_ssize_t)(p - base), lines, prev);
done:
    id_cache_free(&dc.ids);
    for (int k = 0; k < KEY_CACHE; k++) Py_XDECREF(dc.keys[k]);
    Py_XDECREF(dc.last_ms);
    Py_XDECREF(dc.last_deadline_obj);
    PyBuffer_Release(&view);
    return result;
}

/* == decode_jobs ========================================================================= */
static const char *const JOB_STATUSES[] = {"pending", "in_flight", "failed", "completed",
                                           "dead"};

static int known_status(cptr s, size_t n) {
    for (size_t i = 0; i < sizeof(JOB_STATUSES) / sizeof(JOB_STATUSES[0]); i++)
        if (strlen(JOB_STATUSES[i]) == n && memcmp(JOB_STATUSES[i], s, n) == 0) return 1;
    return 0;
}

/* decode_jobs(data, Job, loads, priority_max) -> list[Job] | None: a snapshot's job array
 * (`[job, ...]`, each in job_to_dict's shape, no whitespace) as the Jobs snapshot.py's
 * msgspec path builds (scheduled_at as a float), or None, without judging, at anything else
 * (escapes, floats, an unknown status, a payload loads refuses...): the caller then takes
 * that path, which accepts it or names what is wrong. */
static PyObject *decode_jobs(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer view;
    PyObject *job_o, *loads;
    long long priority_max;
    if (!PyArg_ParseTuple(args, "y*OOL:decode_jobs", &view, &job_o, &loads, &priority_max))
        return NULL;
    PyObject *out = NULL, *keys[KEY_CACHE] = {NULL};
    if (!plain_tuple_type(job_o) || !PyCallable_Check(loads)) {
        PyErr_SetString(PyExc_TypeError, "decode_jobs: Job must be a NamedTuple, loads callable");
        goto done;
    }
    PyTypeObject *job_t = (PyTypeObject *)job_o;
    if ((out = PyList_New(0)) == NULL) goto done;
    cursor c = {view.buf, (cptr)view.buf + view.len};
    int ok = EAT(&c, "[");
    if (ok && !EAT(&c, "]")) {
        for (;;) {
            fields f;
            cptr jid;
            size_t jid_n;
            f.priority = f.scheduled = 0;
            f.has_priority = f.has_scheduled = f.n_deps = 0;
            f.deps = f.deps_end = NULL;
            if (!parse_job(&c, priority_max, 1, &f, &jid, &jid_n) || jid_n == 0 ||
                !known_status(f.status, f.status_n)) {
                ok = 0;
                break;
            }
            PyObject *job_id = ascii_str(jid, jid_n);
            if (job_id == NULL) goto fail;
            PyObject *job = build_job(&f, job_id, job_t, loads, keys);
            Py_DECREF(job_id);
            if (job == NULL) {
                if (PyErr_Occurred()) goto fail;
                ok = 0; /* loads refused the payload */
                break;
            }
            if (f.has_scheduled == 1) { /* snapshot.py's _fast_job: an int becomes a float */
                PyObject *at = PyFloat_FromDouble((double)f.scheduled);
                if (at == NULL) {
                    Py_DECREF(job);
                    goto fail;
                }
                Py_SETREF(((PyTupleObject *)job)->ob_item[5], at);
            }
            int err = PyList_Append(out, job);
            Py_DECREF(job);
            if (err < 0) goto fail;
            if (EAT(&c, "]")) break;
            if (!EAT(&c, ",")) {
                ok = 0;
                break;
            }
        }
    }
    if (!ok || c.p != c.end) {
        Py_DECREF(out);
        Py_INCREF(Py_None);
        out = Py_None;
    }
    goto done;
fail:
    Py_CLEAR(out);
done:
    for (int k = 0; k < KEY_CACHE; k++) Py_XDECREF(keys[k]);
    PyBuffer_Release(&view);
    return out;
}

static PyObject *crc32_table_only(PyObject *self, PyObject *arg) {
    (void)self;
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    uint32_t c = crc32_table_update(0xFFFFFFFFu, view.buf, (size_t)view.len) ^ 0xFFFFFFFFu;
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLong(c);
}

/* == encode_records ======================================================================
 * The writer's side: Records to their lines, byte for byte what phase1.wal's Python
 * encoder writes, for the shapes it is sure of (see encode_one); any other record goes to
 * the Python callback, so every odd case and every error message stays Python's. */
typedef struct {
    char *buf;
    size_t len, cap;
} outbuf;

/* ob_reserve's slow path: room for n more bytes. */
static int ob_grow(outbuf *o, size_t n) {
    size_t cap = o->cap ? o->cap : 1024;
    while (cap - o->len < n) {
        if (cap > (size_t)PY_SSIZE_T_MAX / 2) {
            PyErr_NoMemory();
            return -1;
        }
        cap *= 2;
    }
    char *b = PyMem_Realloc(o->buf, cap);
    if (b == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    o->buf = b;
    o->cap = cap;
    return 0;
}

/* (inline, as ob_put, so that the many short constant copies compile to moves) */
static Py_ALWAYS_INLINE inline int ob_reserve(outbuf *o, size_t n) {
    return o->cap - o->len >= n ? 0 : ob_grow(o, n);
}

static Py_ALWAYS_INLINE inline int ob_put(outbuf *o, const void *s, size_t n) {
    if (ob_reserve(o, n) < 0) return -1;
    memcpy(o->buf + o->len, s, n);
    o->len += n;
    return 0;
}
#define OB_LIT(o, lit) ob_put((o), (lit), sizeof(lit) - 1)

static const char DIGIT_PAIRS[201] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

/* v in decimal, as both %d and orjson write it (two digits a step). */
static int ob_ll(outbuf *o, long long v) {
    char tmp[24], *e = tmp + sizeof(tmp), *p = e;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    while (u >= 100) {
        p -= 2;
        memcpy(p, DIGIT_PAIRS + 2 * (u % 100), 2);
        u /= 100;
    }
    if (u >= 10) {
        p -= 2;
        memcpy(p, DIGIT_PAIRS + 2 * u, 2);
    } else {
        *--p = (char)('0' + u);
    }
    if (v < 0) *--p = '-';
    return ob_put(o, p, (size_t)(e - p));
}

/* 1: o is an int (exactly) that fits long long, in *v; 0: anything else; -1: error. */
static int exact_ll(PyObject *o, long long *v) {
    if (!PyLong_CheckExact(o)) return 0;
    int overflow;
    *v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (overflow) return 0;
    if (*v == -1 && PyErr_Occurred()) return -1;
    return 1;
}

/* 1 if s is an exact str of printable ASCII without '"' or '\\' (JSON needs no escape). */
static int plain_str(PyObject *s) {
    if (!PyUnicode_CheckExact(s) || !PyUnicode_IS_ASCII(s)) return 0;
    const unsigned char *p = PyUnicode_1BYTE_DATA(s);
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    for (Py_ssize_t i = 0; i < n; i++)
        if (p[i] < 0x20 || p[i] > 0x7E || p[i] == '"' || p[i] == '\\') return 0;
    return 1;
}

static int put_plain_str(outbuf *o, PyObject *s) {
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    if (ob_reserve(o, (size_t)n + 2) < 0) return -1;
    o->buf[o->len++] = '"';
    memcpy(o->buf + o->len, PyUnicode_1BYTE_DATA(s), (size_t)n);
    o->len += (size_t)n;
    o->buf[o->len++] = '"';
    return 0;
}

/* dumps(v)'s bytes appended.  1: done; 0: dumps refused v with a TypeError (orjson's
 * JSONEncodeError is one; cleared: the Python path raises it again); -1: other error. */
static int put_dumped(outbuf *o, PyObject *dumps, PyObject *v) {
    PyObject *b = PyObject_CallOneArg(dumps, v);
    if (b == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_TypeError)) return -1;
        PyErr_Clear();
        return 0;
    }
    int r = 1;
    if (!PyBytes_Check(b)) {
        PyErr_SetString(PyExc_TypeError, "encode_records: dumps must return bytes");
        r = -1;
    } else if (ob_put(o, PyBytes_AS_STRING(b), (size_t)PyBytes_GET_SIZE(b)) < 0) {
        r = -1;
    }
    Py_DECREF(b);
    return r;
}

/* A str field (job_id, reason) as orjson writes it: 1 done, 0 not a str orjson takes (or
 * not a str at all), -1 error. */
static int put_str(outbuf *o, PyObject *dumps, PyObject *s) {
    if (plain_str(s)) return put_plain_str(o, s) < 0 ? -1 : 1;
    if (!PyUnicode_CheckExact(s)) return 0;
    return put_dumped(o, dumps, s);
}

#define ENCODE_DEPTH_MAX 32

/* A payload in the plain subset (None, bools, ints that fit long long, plain strs, and
 * dicts with plain str keys and lists of those, exact types, at most 32 deep) as orjson
 * writes it.  1: written; 0: something else (partly written: the caller rewinds); -1:
 * error.  Runs no Python code, so nothing can change the containers meanwhile. */
static int put_value(outbuf *o, PyObject *v, int depth) {
    if (v == Py_None) return OB_LIT(o, "null") < 0 ? -1 : 1;
    if (v == Py_True) return OB_LIT(o, "true") < 0 ? -1 : 1;
    if (v == Py_False) return OB_LIT(o, "false") < 0 ? -1 : 1;
    if (PyLong_CheckExact(v)) {
        long long x;
        int r = exact_ll(v, &x);
        if (r <= 0) return r;
        return ob_ll(o, x) < 0 ? -1 : 1;
    }
    if (PyUnicode_CheckExact(v)) {
        if (!plain_str(v)) return 0;
        return put_plain_str(o, v) < 0 ? -1 : 1;
    }
    if (depth >= ENCODE_DEPTH_MAX) return 0;
    if (PyDict_CheckExact(v)) {
        if (OB_LIT(o, "{") < 0) return -1;
        Py_ssize_t pos = 0;
        PyObject *k, *x;
        int first = 1;
        while (PyDict_Next(v, &pos, &k, &x)) {
            if (!plain_str(k)) return 0;
            if ((!first && OB_LIT(o, ",") < 0) || put_plain_str(o, k) < 0 || OB_LIT(o, ":") < 0)
                return -1;
            first = 0;
            int r = put_value(o, x, depth + 1);
            if (r <= 0) return r;
        }
        return OB_LIT(o, "}") < 0 ? -1 : 1;
    }
    if (PyList_CheckExact(v)) {
        if (OB_LIT(o, "[") < 0) return -1;
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(v); i++) {
            if (i && OB_LIT(o, ",") < 0) return -1;
            int r = put_value(o, PyList_GET_ITEM(v, i), depth + 1);
            if (r <= 0) return r;
        }
        return OB_LIT(o, "]") < 0 ? -1 : 1;
    }
    return 0;
}

/* A payload: built here when plain, else dumps(payload) (as the Python path calls it). */
static int put_payload(outbuf *o, PyObject *dumps, PyObject *v) {
    size_t mark = o->len;
    int r = put_value(o, v, 0);
    if (r != 0) return r;
    o->len = mark;
    return put_dumped(o, dumps, v);
}

/* A payload inside the record's dict, as the Python path writes a job that is not plain
 * (one dumps of the whole record, where orjson's recursion limit counts the two levels
 * above the payload): built here when plain, else dumps([[payload]]) without its outer
 * two brackets (the same two levels above it). */
static int put_nested_payload(outbuf *o, PyObject *dumps, PyObject *v) {
    size_t mark = o->len;
    int r = put_value(o, v, 0);
    if (r != 0) return r;
    o->len = mark;
    PyObject *inner = PyList_New(1), *outer;
    if (inner == NULL) return -1;
    Py_INCREF(v);
    PyList_SET_ITEM(inner, 0, v);
    if ((outer = PyList_New(1)) == NULL) {
        Py_DECREF(inner);
        return -1;
    }
    PyList_SET_ITEM(outer, 0, inner);
    r = put_dumped(o, dumps, outer);
    Py_DECREF(outer);
    if (r <= 0) return r;
    size_t n = o->len - mark;
    if (n < 4 || memcmp(o->buf + mark, "[[", 2) != 0 || memcmp(o->buf + o->len - 2, "]]", 2) != 0) {
        PyErr_SetString(PyExc_ValueError, "encode_records: dumps([[payload]]) is not [[...]]");
        return -1;
    }
    memmove(o->buf + mark, o->buf + mark + 2, n - 4);
    o->len -= 4;
    return 1;
}

/* The range phase1.wal._iso formats (years 1 to 9999); it refuses anything outside. */
#define ISO_MS_MIN (-62135596800000LL)
#define ISO_MS_MAX 253402300799999LL

/* "YYYY-MM-DDTHH:MM:SS.mmmZ" of ms since 1970 (UTC), ms within the range above. */
static void iso_of(long long ms, char out[24]) {
    long long sec = ms / 1000, milli = ms % 1000;
    if (milli < 0) {
        milli += 1000;
        sec -= 1;
    }
    long long days = sec / 86400, sod = sec % 86400;
    if (sod < 0) {
        sod += 86400;
        days -= 1;
    }
    /* the civil date of a day number (H. Hinnant's algorithm) */
    long long z = days + 719468;
    long long era = (z >= 0 ? z : z - 146096) / 146097;
    long long doe = z - era * 146097;
    long long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    long long doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    long long mp = (5 * doy + 2) / 153;
    long long d = doy - (153 * mp + 2) / 5 + 1;
    long long m = mp < 10 ? mp + 3 : mp - 9;
    long long y = yoe + era * 400 + (m <= 2);
    long long f[7] = {y, m, d, sod / 3600, sod / 60 % 60, sod % 60, milli};
    static const int width[7] = {4, 2, 2, 2, 2, 2, 3};
    static const char sep[7] = {'-', '-', 'T', ':', ':', '.', 'Z'};
    int at = 0;
    for (int i = 0; i < 7; i++) {
        long long v = f[i];
        for (int k = width[i] - 1; k >= 0; k--) {
            out[at + k] = (char)('0' + v % 10);
            v /= 10;
        }
        at += width[i];
        out[at++] = sep[i];
    }
}

typedef struct {
    outbuf o;
    PyTypeObject *rec_t, *job_t;
    PyObject *dumps;
    long long last_ms;
    int have_stamp;
    char stamp[24];
} encoder;

/* 1 if s is the exact str `lit` (interned as *cached). */
static int str_is(PyObject *s, PyObject *cached) {
    if (s == cached) return 1;
    return PyUnicode_CheckExact(s) && PyUnicode_GET_LENGTH(s) == PyUnicode_GET_LENGTH(cached) &&
           PyUnicode_Compare(s, cached) == 0;
}

static int type_of(PyObject *s) {
    if (!PyUnicode_CheckExact(s)) return -1;
    for (int t = 0; t < N_TYPES; t++)
        if (s == type_str[t]) return t;
    for (int t = 0; t < N_TYPES; t++)
        if (str_is(s, type_str[t])) return t;
    return -1;
}

/* Append rec's line.  1: done; 0: a record this does not vouch for (possibly partly
 * written: the caller rewinds and asks Python); -1: an error is set.  Vouched for: a
 * Record (exact type) whose seq, timestamp_ms (years 1-9999), attempt and the worker_id
 * and deadline_ms present are ints that fit long long, whose type is one of the seven,
 * job_id and any reason strs (orjson's dumps for those needing escapes), job None
 * except for an ENQUEUE; an ENQUEUE only with nothing but its job: a Job (exact type) with
 * the same id, int attempt and priority, a str status, a scheduled_at None, float or int,
 * a tuple of strs as depends_on.  A plain job's payload (pending, no delay, no
 * dependencies) is written as the Python path's dumps(payload) writes it, any other's as
 * one dumps of the whole record would. */
static int encode_one(encoder *e, PyObject *rec) {
    if (Py_TYPE(rec) != e->rec_t || PyTuple_GET_SIZE(rec) != 9) return 0;
    PyObject **it = ((PyTupleObject *)rec)->ob_item;
    PyObject *job_id = it[2], *worker = it[5], *deadline = it[6], *reason = it[7], *job = it[8];
    long long seq, ms, attempt, w = 0, dl = 0, jattempt = 0, priority = 0;
    int r, plain_job = 0, t = type_of(it[1]);
    if (t < 0) return 0;
    if ((r = exact_ll(it[0], &seq)) <= 0 || (r = exact_ll(it[3], &ms)) <= 0 ||
        (r = exact_ll(it[4], &attempt)) <= 0)
        return r;
    if (ms < ISO_MS_MIN || ms > ISO_MS_MAX || !PyUnicode_CheckExact(job_id)) return 0;
    if (worker != Py_None && (r = exact_ll(worker, &w)) <= 0) return r;
    if (deadline != Py_None && (r = exact_ll(deadline, &dl)) <= 0) return r;
    if (reason != Py_None && !PyUnicode_CheckExact(reason)) return 0;
    if (job == Py_None) {
        if (t == T_ENQUEUE) return 0;
    } else {
        if (t != T_ENQUEUE || attempt != 0 || worker != Py_None || deadline != Py_None ||
            reason != Py_None)
            return 0;
        if (Py_TYPE(job) != e->job_t || PyTuple_GET_SIZE(job) != 7) return 0;
        PyObject **j = ((PyTupleObject *)job)->ob_item;
        if (j[0] != job_id && !str_is(j[0], job_id)) return 0;
        if (!PyUnicode_CheckExact(j[3]) || !PyTuple_CheckExact(j[6])) return 0;
        if (j[5] != Py_None && !PyFloat_CheckExact(j[5]) && !PyLong_CheckExact(j[5])) return 0;
        if ((r = exact_ll(j[2], &jattempt)) <= 0 || (r = exact_ll(j[4], &priority)) <= 0)
            return r;
        /* (exact types here, so exactly the jobs the Python path formats directly; the
         * others it puts in a dict for one dumps of the whole record) */
        plain_job = str_is(j[3], str_pending) && j[5] == Py_None && PyTuple_GET_SIZE(j[6]) == 0;
    }
    if (!e->have_stamp || ms != e->last_ms) {
        iso_of(ms, e->stamp);
        e->last_ms = ms;
        e->have_stamp = 1;
    }
    outbuf *o = &e->o;
    size_t start = o->len;
    const char *tn = TYPE_NAMES[t];
    if (OB_LIT(o, "{\"seq\":") < 0 || ob_ll(o, seq) < 0 || OB_LIT(o, ",\"type\":\"") < 0 ||
        ob_put(o, tn, strlen(tn)) < 0 || OB_LIT(o, "\",\"job_id\":") < 0)
        return -1;
    size_t id_at = o->len;
    if ((r = put_str(o, e->dumps, job_id)) <= 0) return r;
    size_t id_end = o->len;
    if (OB_LIT(o, ",\"timestamp\":\"") < 0 || ob_put(o, e->stamp, 24) < 0 || OB_LIT(o, "\"") < 0)
        return -1;
    if (job != Py_None) {
        PyObject **j = ((PyTupleObject *)job)->ob_item;
        if (OB_LIT(o, ",\"job\":{\"id\":") < 0 || ob_reserve(o, id_end - id_at) < 0) return -1;
        memcpy(o->buf + o->len, o->buf + id_at, id_end - id_at); /* the id dumped once */
        o->len += id_end - id_at;
        if (OB_LIT(o, ",\"payload\":") < 0) return -1;
        r = plain_job ? put_payload(o, e->dumps, j[1]) : put_nested_payload(o, e->dumps, j[1]);
        if (r <= 0) return r;
        if (OB_LIT(o, ",\"attempt\":") < 0 || ob_ll(o, jattempt) < 0 ||
            OB_LIT(o, ",\"status\":") < 0)
            return -1;
        if ((r = put_str(o, e->dumps, j[3])) <= 0) return r;
        if (priority && (OB_LIT(o, ",\"priority\":") < 0 || ob_ll(o, priority) < 0)) return -1;
        if (j[5] != Py_None) {
            long long at;
            if (OB_LIT(o, ",\"scheduled_at\":") < 0) return -1;
            if (PyLong_CheckExact(j[5])) {
                if ((r = exact_ll(j[5], &at)) <= 0) return r;
                if (ob_ll(o, at) < 0) return -1;
            } else if ((r = put_dumped(o, e->dumps, j[5])) <= 0) { /* a float */
                return r;
            }
        }
        Py_ssize_t ndeps = PyTuple_GET_SIZE(j[6]);
        if (ndeps) {
            if (OB_LIT(o, ",\"depends_on\":[") < 0) return -1;
            for (Py_ssize_t i = 0; i < ndeps; i++) {
                if (i && OB_LIT(o, ",") < 0) return -1;
                if ((r = put_str(o, e->dumps, PyTuple_GET_ITEM(j[6], i))) <= 0) return r;
            }
            if (OB_LIT(o, "]") < 0) return -1;
        }
        if (OB_LIT(o, "}") < 0) return -1;
    } else {
        if (attempt && (OB_LIT(o, ",\"attempt\":") < 0 || ob_ll(o, attempt) < 0)) return -1;
        if (worker != Py_None && (OB_LIT(o, ",\"worker_id\":") < 0 || ob_ll(o, w) < 0))
            return -1;
        if (deadline != Py_None && (OB_LIT(o, ",\"deadline_ms\":") < 0 || ob_ll(o, dl) < 0))
            return -1;
        if (reason != Py_None) {
            if (OB_LIT(o, ",\"reason\":") < 0) return -1;
            if ((r = put_str(o, e->dumps, reason)) <= 0) return r;
        }
    }
    uint32_t crc = crc32_of((const unsigned char *)o->buf + start, o->len - start);
    if (ob_put(o, TRAILER, TRAILER_LEN) < 0 || ob_ll(o, (long long)crc) < 0 ||
        OB_LIT(o, "}\n") < 0)
        return -1;
    return 1;
}

/* One record: encode_one's line, or fallback(rec)'s bytes. */
static int encode_or_fallback(encoder *e, PyObject *rec, PyObject *fallback) {
    size_t start = e->o.len;
    int r = encode_one(e, rec);
    if (r != 0) return r;
    e->o.len = start;
    PyObject *b = PyObject_CallOneArg(fallback, rec);
    if (b == NULL) return -1;
    int ok = PyBytes_Check(b);
    if (!ok) PyErr_SetString(PyExc_TypeError, "encode_records: fallback must return bytes");
    else ok = ob_put(&e->o, PyBytes_AS_STRING(b), (size_t)PyBytes_GET_SIZE(b)) == 0;
    Py_DECREF(b);
    return ok ? 1 : -1;
}

static PyObject *encode_records(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError,
                        "encode_records(recs, Record, Job, dumps, fallback) takes 5 arguments");
        return NULL;
    }
    PyObject *recs = args[0], *fallback = args[4];
    if (!plain_tuple_type(args[1]) || !plain_tuple_type(args[2])) {
        PyErr_SetString(PyExc_TypeError, "encode_records: Record and Job must be NamedTuples");
        return NULL;
    }
    if (!PyCallable_Check(args[3]) || !PyCallable_Check(fallback)) {
        PyErr_SetString(PyExc_TypeError, "encode_records: dumps and fallback must be callable");
        return NULL;
    }
    encoder e;
    memset(&e, 0, sizeof(e));
    e.rec_t = (PyTypeObject *)args[1];
    e.job_t = (PyTypeObject *)args[2];
    e.dumps = args[3];
    PyObject *result = NULL;
    if (PyList_CheckExact(recs) || PyTuple_CheckExact(recs)) {
        /* (by index, as a for loop reads a list: a fallback may change it meanwhile) */
        int is_list = PyList_CheckExact(recs);
        Py_ssize_t n = is_list ? PyList_GET_SIZE(recs) : PyTuple_GET_SIZE(recs);
        if (n > 0 && n < PY_SSIZE_T_MAX / 256 && ob_reserve(&e.o, (size_t)n * 160) < 0) goto done;
        for (Py_ssize_t i = 0; i < (is_list ? PyList_GET_SIZE(recs) : n); i++) {
            PyObject *rec = is_list ? PyList_GET_ITEM(recs, i) : PyTuple_GET_ITEM(recs, i);
            Py_INCREF(rec);
            int r = encode_or_fallback(&e, rec, fallback);
            Py_DECREF(rec);
            if (r < 0) goto done;
        }
    } else {
        PyObject *iter = PyObject_GetIter(recs), *rec;
        if (iter == NULL) goto done;
        while ((rec = PyIter_Next(iter)) != NULL) {
            int r = encode_or_fallback(&e, rec, fallback);
            Py_DECREF(rec);
            if (r < 0) break;
        }
        Py_DECREF(iter);
        if (PyErr_Occurred()) goto done;
    }
    result = PyBytes_FromStringAndSize(e.o.buf, (Py_ssize_t)e.o.len);
done:
    PyMem_Free(e.o.buf);
    return result;
}

static PyMethodDef methods[] = {
    {"check_lines", check_lines, METH_O,
     "check_lines(data) -> int: leading lines of data whose checksum trailer holds."},
    {"crc32", crc32, METH_O, "crc32(data) -> int: zlib.crc32(data), for tests."},
    {"decode_jobs", decode_jobs, METH_VARARGS,
     "decode_jobs(data, Job, loads, priority_max) -> list | None: a snapshot's array of\n"
     "jobs in the writer's shape as Jobs, or None for anything else (the caller decides)."},
    {"crc32_table", crc32_table_only, METH_O,
     "crc32_table(data) -> int: crc32 by the table path alone (no CLMUL), for tests."},
    {"decode_records", decode_records, METH_VARARGS,
     "decode_records(data, start, prev, after_seq, out, Record, Job, loads, priority_max,\n"
     "ids=None) -> (stop, lines, prev): append the Records of the writer-shaped lines of\n"
     "data from offset start (those with seq > after_seq) to out, and the job id of each\n"
     "ENQUEUE among them to the list ids if given; stop at the first other line."},
    {"encode_records", (PyCFunction)(void (*)(void))encode_records, METH_FASTCALL,
     "encode_records(recs, Record, Job, dumps, fallback) -> bytes: the lines of recs as\n"
     "phase1.wal writes them; each record this does not vouch for is fallback(record)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "phase1._walcheck",
    "The WAL's lines checked, decoded and encoded at C speed (optional; see phase1.wal).", -1,
    methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__walcheck(void) {
    init_tables();
    for (int t = 0; t < N_TYPES; t++) {
        if (type_str[t] == NULL && (type_str[t] = PyUnicode_InternFromString(TYPE_NAMES[t])) == NULL)
            return NULL;
    }
    if (str_pending == NULL && (str_pending = PyUnicode_InternFromString("pending")) == NULL)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
#ifdef HAVE_CLMUL_PATH
    int clmul = have_clmul;
#else
    int clmul = 0;
#endif
    if (PyModule_AddIntConstant(m, "HAVE_CLMUL", clmul) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
