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
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "phase1._walcheck",
    "The WAL's per-line checksums at C speed (optional; see phase1.wal).", -1, methods,
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
