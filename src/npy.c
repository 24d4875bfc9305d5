/* npy.c: reading and writing NumPy .npy files (format versions 1.0, 2.0 and 3.0).
 *
 * Reading accepts what numpy.save writes for the harness's inputs: float32 logits, targets of any
 * integer, float or bool dtype whose values are exactly -1, 0 or 1, and float64 arrays (reference
 * gradients). Everything else (other dtypes, big-endian or Fortran-order data, a header that does
 * not parse, a data section shorter or longer than the shape says, a non-finite logit, a target
 * outside {-1,0,1}) is an error whose message starts with the path and says what was found.
 * Writing goes through a temporary file and rename() so that a failure never leaves a partial
 * file at the destination.
 */
#define _POSIX_C_SOURCE 200809L

#include "aploss/harness.h"

#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char npy_magic[6] = {'\x93', 'N', 'U', 'M', 'P', 'Y'};

/* A header larger than this is not something numpy writes for a plain array (numpy itself refuses
 * headers over 10000 bytes by default); refusing it avoids a huge allocation from a corrupt
 * length field. */
#define NPY_MAX_HEADER (1u << 20)

/* fread/fwrite in pieces of this size: some C libraries misbehave on single calls of several GiB,
 * and the targets conversion needs a bounded staging buffer anyway. */
#define NPY_CHUNK ((size_t)1 << 24)

static int host_is_little_endian(void)
{
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

static void bswap_inplace(unsigned char *p, size_t count, size_t size)
{
    for (size_t i = 0; i < count; i++, p += size)
        for (size_t a = 0, b = size - 1; a < b; a++, b--) {
            unsigned char t = p[a];
            p[a] = p[b];
            p[b] = t;
        }
}

/* Checked product of the dimensions: 0 (and *n untouched) on overflow. Any zero dimension makes
 * the count 0 even if the others would overflow, as in numpy. */
static int count_elems(const size_t *dims, int ndim, size_t *n)
{
    size_t c = 1;
    for (int d = 0; d < ndim; d++)
        if (dims[d] == 0) {
            *n = 0;
            return 1;
        }
    for (int d = 0; d < ndim; d++) {
        if (c > SIZE_MAX / dims[d])
            return 0;
        c *= dims[d];
    }
    *n = c;
    return 1;
}

size_t apl_shape_count(const apl_shape *s)
{
    size_t n;
    if (!s || s->ndim < 0 || s->ndim > APL_NPY_MAX_DIMS || !count_elems(s->dims, s->ndim, &n))
        return SIZE_MAX; /* not a count any allocation can satisfy */
    return n;
}

int apl_shape_equal(const apl_shape *a, const apl_shape *b)
{
    if (a->ndim != b->ndim)
        return 0;
    for (int d = 0; d < a->ndim; d++)
        if (a->dims[d] != b->dims[d])
            return 0;
    return 1;
}

/* "(2, 500, 20)", "(5,)" or "()": the tuple as Python prints it, so messages match numpy's. */
static const char *fmt_tuple(char *buf, size_t cap, const size_t *v, int n)
{
    size_t len = 0;
    buf[0] = '\0';
    len += (size_t)snprintf(buf, cap, "(");
    for (int d = 0; d < n && len < cap; d++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%zu", d ? ", " : "", v[d]);
    if (len < cap)
        snprintf(buf + len, cap - len, n == 1 ? ",)" : ")");
    return buf;
}

/* The C-order multi-dimensional index of flat index i. */
static const char *fmt_index(char *buf, size_t cap, const apl_shape *s, size_t i)
{
    size_t idx[APL_NPY_MAX_DIMS];
    for (int d = s->ndim - 1; d >= 0; d--) {
        idx[d] = i % s->dims[d];
        i /= s->dims[d];
    }
    return fmt_tuple(buf, cap, idx, s->ndim);
}

/* ---- header ---- */

typedef enum { K_FLOAT, K_INT, K_UINT, K_BOOL } npy_kind;

typedef struct {
    char descr[40];  /* as written, for messages */
    npy_kind kind;
    size_t itemsize;
    int known;       /* kind/itemsize describe a dtype this file supports at all */
    int big_endian;  /* multi-byte data not in little-endian order */
    int fortran;
    apl_shape shape;
    size_t count;
} npy_header;

typedef struct {
    const char *p, *end, *start;
    const char *path;
    apl_error *err;
} cursor;

static apl_status malformed(cursor *c, const char *what)
{
    return apl_fail(c->err, APL_ERR_FORMAT, "%s: malformed .npy header: %s at header offset %zu",
                    c->path, what, (size_t)(c->p - c->start));
}

static void skip_ws(cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static int accept(cursor *c, char ch)
{
    skip_ws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return 1;
    }
    return 0;
}

static int accept_word(cursor *c, const char *w)
{
    size_t n = strlen(w);
    skip_ws(c);
    if ((size_t)(c->end - c->p) >= n && memcmp(c->p, w, n) == 0) {
        c->p += n;
        return 1;
    }
    return 0;
}

/* A quoted Python string without escapes (numpy's keys and dtype strings never need any). */
static apl_status parse_string(cursor *c, char *out, size_t cap)
{
    skip_ws(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"'))
        return malformed(c, "expected a quoted string");
    char q = *c->p++;
    size_t n = 0;
    while (c->p < c->end && *c->p != q) {
        if (*c->p == '\\' || *c->p == '\n')
            return malformed(c, "unsupported character in string");
        if (n + 1 >= cap)
            return malformed(c, "string too long");
        out[n++] = *c->p++;
    }
    if (c->p >= c->end)
        return malformed(c, "unterminated string");
    c->p++;
    out[n] = '\0';
    return APL_OK;
}

/* Classifies a numpy type string such as '<f4' or '|i1'. Unknown kinds stay known = 0 and are
 * rejected by the reader that knows which dtypes it wants. */
static void classify_descr(npy_header *h)
{
    const char *s = h->descr;
    char order = '=';
    if (*s == '<' || *s == '>' || *s == '=' || *s == '|')
        order = *s++;
    char kind = *s ? *s++ : '\0';
    char *end;
    errno = 0;
    unsigned long size = strtoul(s, &end, 10);
    h->known = 0;
    if (s[0] < '0' || s[0] > '9' || *end != '\0' || errno)
        return;
    switch (kind) {
    case 'f': h->kind = K_FLOAT; h->known = size == 4 || size == 8; break;
    case 'i': h->kind = K_INT; h->known = size == 1 || size == 2 || size == 4 || size == 8; break;
    case 'u': h->kind = K_UINT; h->known = size == 1 || size == 2 || size == 4 || size == 8; break;
    case 'b': h->kind = K_BOOL; h->known = size == 1; break;
    default: return;
    }
    h->itemsize = size;
    /* '=' and '|' (and no prefix) mean native order; byte order is moot for one-byte items. */
    h->big_endian = size > 1 && (order == '>' || (order != '<' && !host_is_little_endian()));
}

static apl_status parse_shape(cursor *c, apl_shape *s)
{
    s->ndim = 0;
    if (!accept(c, '('))
        return malformed(c, "expected '(' to open 'shape'");
    int commas = 0;
    for (;;) {
        skip_ws(c);
        if (accept(c, ')'))
            break;
        if (c->p >= c->end || *c->p < '0' || *c->p > '9')
            return malformed(c, "expected a non-negative integer in 'shape'");
        size_t v = 0;
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
            unsigned digit = (unsigned)(*c->p++ - '0');
            if (v > (SIZE_MAX - digit) / 10)
                return apl_fail(c->err, APL_ERR_FORMAT,
                                "%s: a dimension in the header's shape does not fit in size_t",
                                c->path);
            v = v * 10 + digit;
        }
        if (c->p < c->end && *c->p == 'L') /* Python 2's numpy wrote longs as "10L" */
            c->p++;
        if (s->ndim == APL_NPY_MAX_DIMS)
            return apl_fail(c->err, APL_ERR_FORMAT,
                            "%s: the array has more than %d dimensions, which is not supported",
                            c->path, APL_NPY_MAX_DIMS);
        s->dims[s->ndim++] = v;
        if (accept(c, ',')) {
            commas++;
            continue;
        }
        if (accept(c, ')'))
            break;
        return malformed(c, "expected ',' or ')' in 'shape'");
    }
    /* "(5)" is the integer 5 in Python, not a tuple: numpy rejects it, and so do we. */
    if (s->ndim == 1 && commas == 0)
        return malformed(c, "'shape' (n) is not a tuple; expected (n,)");
    return APL_OK;
}

/* The header is a Python dict literal with exactly the keys 'descr', 'fortran_order' and 'shape',
 * in any order, followed by whitespace padding. */
static apl_status parse_header(const char *text, size_t len, const char *path, npy_header *h,
                               apl_error *err)
{
    cursor c = {text, text + len, text, path, err};
    int have_descr = 0, have_fortran = 0, have_shape = 0;
    apl_status st;
    if (!accept(&c, '{'))
        return malformed(&c, "expected '{'");
    for (;;) {
        if (accept(&c, '}'))
            break;
        char key[32];
        if ((st = parse_string(&c, key, sizeof key)) != APL_OK)
            return st;
        if (!accept(&c, ':'))
            return malformed(&c, "expected ':' after a key");
        if (strcmp(key, "descr") == 0 && !have_descr) {
            have_descr = 1;
            skip_ws(&c);
            if (c.p < c.end && *c.p == '[')
                return apl_fail(err, APL_ERR_FORMAT,
                                "%s: structured dtypes (a list 'descr') are not supported", path);
            if ((st = parse_string(&c, h->descr, sizeof h->descr)) != APL_OK)
                return st;
        } else if (strcmp(key, "fortran_order") == 0 && !have_fortran) {
            have_fortran = 1;
            if (accept_word(&c, "True"))
                h->fortran = 1;
            else if (accept_word(&c, "False"))
                h->fortran = 0;
            else
                return malformed(&c, "'fortran_order' is not True or False");
        } else if (strcmp(key, "shape") == 0 && !have_shape) {
            have_shape = 1;
            if ((st = parse_shape(&c, &h->shape)) != APL_OK)
                return st;
        } else {
            char what[80];
            snprintf(what, sizeof what, "unexpected or repeated key '%s'", key);
            return malformed(&c, what);
        }
        if (accept(&c, ','))
            continue;
        if (accept(&c, '}'))
            break;
        return malformed(&c, "expected ',' or '}'");
    }
    skip_ws(&c);
    if (c.p != c.end)
        return malformed(&c, "unexpected text after the closing '}'");
    if (!have_descr || !have_fortran || !have_shape)
        return malformed(&c, !have_descr ? "missing 'descr'"
                             : !have_fortran ? "missing 'fortran_order'"
                                             : "missing 'shape'");
    classify_descr(h);
    return APL_OK;
}

/* ---- reading ---- */

typedef struct {
    FILE *f;
    const char *path;
    int regular;          /* a regular file, so its size is known up front */
    uint64_t data_avail;  /* bytes after the header (regular files only) */
} npy_in;

/* Reads exactly `bytes`; `done` and `total` only word the message for a short read. */
static apl_status read_exact(npy_in *in, void *buf, size_t bytes, size_t done, size_t total,
                             apl_error *err)
{
    size_t got = 0;
    while (got < bytes) {
        size_t want = bytes - got < NPY_CHUNK ? bytes - got : NPY_CHUNK;
        errno = 0;
        size_t r = fread((char *)buf + got, 1, want, in->f);
        got += r;
        if (r < want) {
            if (ferror(in->f))
                return apl_fail(err, APL_ERR_IO, "%s: read failed: %s", in->path,
                                strerror(errno ? errno : EIO));
            return apl_fail(err, APL_ERR_FORMAT,
                            "%s: truncated: the header's shape needs %zu bytes of data, found %zu",
                            in->path, total, done + got);
        }
    }
    return APL_OK;
}

/* Opens path, checks the preamble and parses the header, leaving in->f at the first data byte. */
static apl_status open_npy(const char *path, npy_in *in, npy_header *h, apl_error *err)
{
    memset(h, 0, sizeof *h);
    in->path = path;
    in->f = fopen(path, "rb");
    if (!in->f)
        return apl_fail(err, APL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(in->f), &sb) != 0)
        return apl_fail(err, APL_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode))
        return apl_fail(err, APL_ERR_IO, "%s: cannot read: %s", path, strerror(EISDIR));
    in->regular = S_ISREG(sb.st_mode);

    unsigned char pre[12];
    size_t got = fread(pre, 1, 8, in->f);
    if (ferror(in->f))
        return apl_fail(err, APL_ERR_IO, "%s: read failed: %s", path, strerror(errno));
    if (got < 8 || memcmp(pre, npy_magic, sizeof npy_magic) != 0)
        return apl_fail(err, APL_ERR_FORMAT, "%s: not a .npy file (no \\x93NUMPY magic)", path);
    unsigned major = pre[6], minor = pre[7];
    if ((major != 1 && major != 2 && major != 3) || minor != 0)
        return apl_fail(err, APL_ERR_FORMAT,
                        "%s: unsupported .npy format version %u.%u (expected 1.0, 2.0 or 3.0)",
                        path, major, minor);
    size_t lenbytes = major == 1 ? 2 : 4;
    if (fread(pre + 8, 1, lenbytes, in->f) != lenbytes)
        return apl_fail(err, APL_ERR_FORMAT, "%s: truncated .npy header", path);
    uint32_t hlen = (uint32_t)pre[8] | (uint32_t)pre[9] << 8;
    if (lenbytes == 4)
        hlen |= (uint32_t)pre[10] << 16 | (uint32_t)pre[11] << 24;
    if (hlen > NPY_MAX_HEADER)
        return apl_fail(err, APL_ERR_FORMAT, "%s: .npy header length %" PRIu32
                        " is implausibly large (over %u bytes)", path, hlen, NPY_MAX_HEADER);
    char *text = malloc(hlen ? hlen : 1);
    if (!text)
        return apl_fail(err, APL_ERR_NOMEM, "cannot allocate %" PRIu32 " bytes for %s", hlen,
                        path);
    got = fread(text, 1, hlen, in->f);
    apl_status st;
    if (got < hlen)
        st = ferror(in->f) ? apl_fail(err, APL_ERR_IO, "%s: read failed: %s", path, strerror(errno))
                           : apl_fail(err, APL_ERR_FORMAT,
                                      "%s: truncated .npy header: expected %" PRIu32
                                      " bytes, found %zu", path, hlen, got);
    else
        st = parse_header(text, hlen, path, h, err);
    free(text);
    if (st != APL_OK)
        return st;

    if (h->fortran)
        return apl_fail(err, APL_ERR_FORMAT,
                        "%s: Fortran order is not supported: save with np.ascontiguousarray",
                        path);
    if (!count_elems(h->shape.dims, h->shape.ndim, &h->count)) {
        char sh[256];
        return apl_fail(err, APL_ERR_FORMAT,
                        "%s: shape %s has too many elements (overflows size_t)", path,
                        fmt_tuple(sh, sizeof sh, h->shape.dims, h->shape.ndim));
    }
    if (in->regular) {
        uint64_t start = 8 + (uint64_t)lenbytes + hlen;
        in->data_avail = (uint64_t)sb.st_size > start ? (uint64_t)sb.st_size - start : 0;
    }
    return APL_OK;
}

/* The size checks that need the dtype: done before allocating, so a corrupt shape cannot make us
 * allocate more than the file holds. */
static apl_status check_data_size(npy_in *in, const npy_header *h, size_t *bytes, apl_error *err)
{
    char sh[256];
    if (h->count > SIZE_MAX / h->itemsize)
        return apl_fail(err, APL_ERR_FORMAT,
                        "%s: shape %s has too many elements (byte size overflows size_t)", in->path,
                        fmt_tuple(sh, sizeof sh, h->shape.dims, h->shape.ndim));
    *bytes = h->count * h->itemsize;
    if (in->regular && in->data_avail < *bytes)
        return apl_fail(err, APL_ERR_FORMAT,
                        "%s: truncated: shape %s of '%s' needs %zu bytes of data, found %" PRIu64,
                        in->path, fmt_tuple(sh, sizeof sh, h->shape.dims, h->shape.ndim), h->descr,
                        *bytes, in->data_avail);
    if (in->regular && in->data_avail > *bytes)
        return apl_fail(err, APL_ERR_FORMAT,
                        "%s: %" PRIu64 " trailing bytes after the data (shape %s of '%s' needs %zu "
                        "bytes, found %" PRIu64 ")", in->path, in->data_avail - *bytes,
                        fmt_tuple(sh, sizeof sh, h->shape.dims, h->shape.ndim), h->descr, *bytes,
                        in->data_avail);
    return APL_OK;
}

/* For files whose size was not known up front: the data must end exactly where the shape says. */
static apl_status check_at_end(npy_in *in, size_t bytes, apl_error *err)
{
    if (fgetc(in->f) != EOF)
        return apl_fail(err, APL_ERR_FORMAT,
                        "%s: trailing bytes after the %zu bytes of data the shape describes",
                        in->path, bytes);
    if (ferror(in->f))
        return apl_fail(err, APL_ERR_IO, "%s: read failed: %s", in->path, strerror(errno));
    return APL_OK;
}

/* Closes the file; returns the buffer on success, or frees it and clears the shape on failure. */
static void *finish(npy_in *in, void *buf, apl_status st, apl_shape *shape, const npy_header *h)
{
    if (in->f)
        fclose(in->f);
    if (st != APL_OK) {
        free(buf);
        if (shape)
            memset(shape, 0, sizeof *shape);
        return NULL;
    }
    if (shape)
        *shape = h->shape;
    return buf;
}

static apl_status read_float_data(npy_in *in, const npy_header *h, void **out, apl_error *err);

/* Reads a float array of exactly `itemsize` bytes per element (4 or 8) into a new buffer. `what`
 * names the array in messages: "logits must be float32 ('<f4'), got '<f8'". */
static apl_status read_floats(const char *path, size_t itemsize, const char *what, npy_in *in,
                              npy_header *h, void **out, apl_error *err)
{
    apl_status st = open_npy(path, in, h, err);
    if (st != APL_OK)
        return st;
    const char *type = itemsize == 4 ? "float32" : "float64";
    if (h->known && h->big_endian)
        return apl_fail(err, APL_ERR_FORMAT,
                        "%s: big-endian data is not supported ('%s'): save with "
                        "arr.astype('<f%zu')", path, h->descr, itemsize);
    if (!h->known || h->kind != K_FLOAT || h->itemsize != itemsize)
        return apl_fail(err, APL_ERR_FORMAT, "%s: %s must be %s ('<f%zu'), got '%s'", path, what,
                        type, itemsize, h->descr);
    return read_float_data(in, h, out, err);
}

/* The data of an opened little-endian float array (h->itemsize bytes each) into a new buffer. */
static apl_status read_float_data(npy_in *in, const npy_header *h, void **out, apl_error *err)
{
    apl_status st;
    const char *path = in->path;
    const size_t itemsize = h->itemsize;
    size_t bytes;
    if ((st = check_data_size(in, h, &bytes, err)) != APL_OK)
        return st;
    void *buf = malloc(bytes ? bytes : 1);
    if (!buf)
        return apl_fail(err, APL_ERR_NOMEM, "cannot allocate %zu bytes for %s", bytes, path);
    *out = buf;
    if ((st = read_exact(in, buf, bytes, 0, bytes, err)) != APL_OK)
        return st;
    if (!in->regular && (st = check_at_end(in, bytes, err)) != APL_OK)
        return st;
    if (!host_is_little_endian())
        bswap_inplace(buf, h->count, itemsize);
    return APL_OK;
}

apl_status apl_npy_read_logits(const char *path, float **data, apl_shape *shape, apl_error *err)
{
    if (!data)
        return apl_fail(err, APL_ERR_ARG, "apl_npy_read_logits: null data pointer");
    *data = NULL;
    if (!path)
        return apl_fail(err, APL_ERR_ARG, "apl_npy_read_logits: null path");
    npy_in in = {0};
    npy_header h;
    void *raw = NULL;
    apl_status st = read_floats(path, sizeof(float), "logits", &in, &h, &raw, err);
    const float *v = raw;
    for (size_t i = 0; st == APL_OK && i < h.count; i++)
        if (!isfinite(v[i])) {
            char ix[256];
            st = apl_fail(err, APL_ERR_INPUT,
                          "%s: logits[%zu] (index %s) = %s: logits must be finite", path, i,
                          fmt_index(ix, sizeof ix, &h.shape, i),
                          isnan(v[i]) ? "nan" : v[i] > 0 ? "inf" : "-inf");
        }
    *data = finish(&in, raw, st, shape, &h);
    return st;
}

/* No finiteness check here: a float64 array (a reference gradient) is data to compare, and the
 * comparison itself fails on NaN. */
apl_status apl_npy_read_f64(const char *path, double **data, apl_shape *shape, apl_error *err)
{
    if (!data)
        return apl_fail(err, APL_ERR_ARG, "apl_npy_read_f64: null data pointer");
    *data = NULL;
    if (!path)
        return apl_fail(err, APL_ERR_ARG, "apl_npy_read_f64: null path");
    npy_in in = {0};
    npy_header h;
    void *raw = NULL;
    apl_status st = read_floats(path, sizeof(double), "the array", &in, &h, &raw, err);
    *data = finish(&in, raw, st, shape, &h);
    return st;
}

/* One value per positive: a 1-D float32 or float64 array, returned as float32. A float64 value
 * must be finite and within float32's range; the loss's own rules (count, sign) are
 * apl_check_problem's. */
apl_status apl_npy_read_aux(const char *path, const char *what, float **data, size_t *count,
                            apl_error *err)
{
    if (!data || !count)
        return apl_fail(err, APL_ERR_ARG, "apl_npy_read_aux: null output pointer");
    *data = NULL;
    *count = 0;
    if (!path)
        return apl_fail(err, APL_ERR_ARG, "apl_npy_read_aux: null path");
    if (!what)
        what = "the array";
    npy_in in = {0};
    npy_header h;
    void *raw = NULL;
    apl_status st = open_npy(path, &in, &h, err);
    if (st == APL_OK && h.known && h.kind == K_FLOAT && h.big_endian)
        st = apl_fail(err, APL_ERR_FORMAT, "%s: big-endian data is not supported ('%s'): save "
                      "with arr.astype('<f4')", path, h.descr);
    else if (st == APL_OK && (!h.known || h.kind != K_FLOAT))
        st = apl_fail(err, APL_ERR_FORMAT, "%s: %s must be float32 ('<f4') or float64 ('<f8'), "
                      "got '%s'", path, what, h.descr);
    else if (st == APL_OK && h.shape.ndim != 1) {
        char sh[256];
        st = apl_fail(err, APL_ERR_FORMAT, "%s: %s must be 1-D (one value per positive), got "
                      "shape %s", path, what, fmt_tuple(sh, sizeof sh, h.shape.dims,
                                                        h.shape.ndim));
    }
    if (st == APL_OK)
        st = read_float_data(&in, &h, &raw, err);
    float *v = NULL;
    if (st == APL_OK && h.itemsize == 8) { /* narrow in place: float i fits where double i was */
        const double *d = raw;
        v = raw;
        for (size_t i = 0; i < h.count; i++) {
            double x = d[i];
            if (!isfinite(x) || fabs(x) > (double)FLT_MAX) {
                st = apl_fail(err, APL_ERR_INPUT, "%s: %s[%zu] = %g: expected a finite value "
                              "(within float32's range)", path, what, i, x);
                break;
            }
            v[i] = (float)x;
        }
    } else if (st == APL_OK) {
        v = raw;
        for (size_t i = 0; i < h.count; i++)
            if (!isfinite(v[i])) {
                st = apl_fail(err, APL_ERR_INPUT, "%s: %s[%zu] = %s: expected a finite value",
                              path, what, i, isnan(v[i]) ? "nan" : v[i] > 0 ? "inf" : "-inf");
                break;
            }
    }
    *data = finish(&in, raw, st, NULL, &h);
    if (st == APL_OK)
        *count = h.count;
    return st;
}

/* PAP control points: float32 only (the heads hold them in float32, and the exact classification
 * of docs/SPEC_PAP.md is defined for float32 points), shape (rows, 12) with 4 or 5 rows. The
 * values themselves are apl_check_pap_params's to judge. */
apl_status apl_npy_read_pap_params(const char *path, float **data, int *rows, apl_error *err)
{
    if (!data || !rows)
        return apl_fail(err, APL_ERR_ARG, "apl_npy_read_pap_params: null output pointer");
    *data = NULL;
    *rows = 0;
    if (!path)
        return apl_fail(err, APL_ERR_ARG, "apl_npy_read_pap_params: null path");
    npy_in in = {0};
    npy_header h;
    void *raw = NULL;
    apl_status st = open_npy(path, &in, &h, err);
    if (st == APL_OK && (!h.known || h.kind != K_FLOAT || h.itemsize != 4 || h.big_endian))
        st = apl_fail(err, APL_ERR_FORMAT, "%s: pap parameters must be float32 ('<f4'), got '%s': "
                      "save with arr.astype('<f4')", path, h.descr);
    else if (st == APL_OK && (h.shape.ndim != 2 || h.shape.dims[1] != 12 ||
                              (h.shape.dims[0] != 4 && h.shape.dims[0] != 5))) {
        char sh[256];
        st = apl_fail(err, APL_ERR_FORMAT, "%s: pap parameters must have shape (5, 12) or (4, 12) "
                      "(rows H2 I2 I3 I1 [H1], each x0 y0 .. x5 y5), got shape %s", path,
                      fmt_tuple(sh, sizeof sh, h.shape.dims, h.shape.ndim));
    }
    if (st == APL_OK)
        st = read_float_data(&in, &h, &raw, err);
    *data = finish(&in, raw, st, NULL, &h);
    if (st == APL_OK)
        *rows = (int)h.shape.dims[0];
    return st;
}

/* Little-endian unsigned integer of `size` bytes. */
static uint64_t load_le(const unsigned char *p, size_t size)
{
    uint64_t v = 0;
    for (size_t b = size; b-- > 0;)
        v = v << 8 | p[b];
    return v;
}

/* Converts one raw element to -1/0/1; on a value outside that set returns 0 and writes the value
 * as text to `shown`. */
static int convert_target(const npy_header *h, const unsigned char *p, int8_t *out, char *shown,
                          size_t cap)
{
    uint64_t raw = load_le(p, h->itemsize);
    switch (h->kind) {
    case K_BOOL:
    case K_UINT:
        if (raw <= 1) {
            *out = (int8_t)raw;
            return 1;
        }
        snprintf(shown, cap, "%" PRIu64, raw);
        return 0;
    case K_INT: {
        /* Sign-extend from the item's width. */
        unsigned shift = (unsigned)(64 - 8 * h->itemsize);
        int64_t v = (int64_t)(raw << shift) >> shift;
        if (v >= -1 && v <= 1) {
            *out = (int8_t)v;
            return 1;
        }
        snprintf(shown, cap, "%" PRId64, v);
        return 0;
    }
    case K_FLOAT: {
        double v;
        if (h->itemsize == 4) {
            uint32_t r32 = (uint32_t)raw;
            float f;
            memcpy(&f, &r32, 4);
            v = f;
        } else {
            memcpy(&v, &raw, 8);
        }
        if (v == -1.0 || v == 0.0 || v == 1.0) {
            *out = (int8_t)v;
            return 1;
        }
        if (isnan(v))
            snprintf(shown, cap, "nan");
        else
            snprintf(shown, cap, "%.*g", h->itemsize == 4 ? 9 : 17, v);
        return 0;
    }
    }
    return 0;
}

static apl_status read_targets(const char *path, npy_in *in, npy_header *h, int8_t **out,
                               apl_error *err)
{
    apl_status st = open_npy(path, in, h, err);
    if (st != APL_OK)
        return st;
    if (h->known && h->big_endian)
        return apl_fail(err, APL_ERR_FORMAT,
                        "%s: big-endian data is not supported ('%s'): save with "
                        "arr.astype('<%c%zu')", path, h->descr,
                        h->kind == K_FLOAT ? 'f' : h->kind == K_INT ? 'i' : 'u', h->itemsize);
    if (!h->known)
        return apl_fail(err, APL_ERR_FORMAT,
                        "%s: unsupported targets dtype '%s': expected an integer, float or bool "
                        "dtype (|i1 <i2 <i4 <i8 |u1 <u2 <u4 <u8 <f4 <f8 |b1)", path, h->descr);
    size_t bytes;
    if ((st = check_data_size(in, h, &bytes, err)) != APL_OK)
        return st;
    int8_t *buf = malloc(h->count ? h->count : 1);
    if (!buf)
        return apl_fail(err, APL_ERR_NOMEM, "cannot allocate %zu bytes for %s", h->count, path);
    *out = buf;

    /* One-byte data is read straight into the result; wider items go through a staging chunk. */
    unsigned char *stage = NULL;
    size_t per = h->count;
    if (h->itemsize > 1) {
        per = NPY_CHUNK / h->itemsize;
        size_t sb = (h->count < per ? h->count : per) * h->itemsize;
        stage = malloc(sb ? sb : 1);
        if (!stage)
            return apl_fail(err, APL_ERR_NOMEM, "cannot allocate %zu bytes for %s", sb, path);
    }
    for (size_t i0 = 0; i0 < h->count && st == APL_OK; i0 += per) {
        size_t m = h->count - i0 < per ? h->count - i0 : per;
        unsigned char *src = stage ? stage : (unsigned char *)buf;
        if ((st = read_exact(in, src, m * h->itemsize, i0 * h->itemsize, bytes, err)) != APL_OK)
            break;
        for (size_t k = 0; k < m && st == APL_OK; k++) {
            char shown[40];
            if (!convert_target(h, src + k * h->itemsize, &buf[i0 + k], shown, sizeof shown)) {
                char ix[256];
                st = apl_fail(err, APL_ERR_INPUT,
                              "%s: targets[%zu] (index %s) = %s: expected -1, 0 or 1", path,
                              i0 + k, fmt_index(ix, sizeof ix, &h->shape, i0 + k), shown);
            }
        }
    }
    free(stage);
    if (st == APL_OK && !in->regular)
        st = check_at_end(in, bytes, err);
    return st;
}

apl_status apl_npy_read_targets(const char *path, int8_t **data, apl_shape *shape, apl_error *err)
{
    if (!data)
        return apl_fail(err, APL_ERR_ARG, "apl_npy_read_targets: null data pointer");
    *data = NULL;
    if (!path)
        return apl_fail(err, APL_ERR_ARG, "apl_npy_read_targets: null path");
    npy_in in = {0};
    npy_header h;
    int8_t *buf = NULL;
    apl_status st = read_targets(path, &in, &h, &buf, err);
    *data = finish(&in, buf, st, shape, &h);
    return st;
}

/* ---- writing ---- */

/* A version 1.0 preamble and header, padded with spaces so the data starts at a multiple of 64
 * bytes as numpy does. Returns its length. */
static size_t build_header(char *out, size_t cap, const char *descr, const apl_shape *s)
{
    char sh[256];
    char dict[400];
    int dl = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
                      descr, fmt_tuple(sh, sizeof sh, s->dims, s->ndim));
    size_t total = 10 + (size_t)dl + 1;
    size_t pad = (64 - total % 64) % 64;
    size_t hlen = (size_t)dl + pad + 1;
    if (10 + hlen > cap)
        return 0;
    memcpy(out, npy_magic, 6);
    out[6] = 1;
    out[7] = 0;
    out[8] = (char)(hlen & 0xff);
    out[9] = (char)(hlen >> 8);
    memcpy(out + 10, dict, (size_t)dl);
    memset(out + 10 + dl, ' ', pad);
    out[10 + hlen - 1] = '\n';
    return 10 + hlen;
}

/* Writes the data little-endian, swapping through a bounded buffer on big-endian hosts. */
static int write_data(FILE *f, const void *data, size_t count, size_t size)
{
    const unsigned char *p = data;
    size_t bytes = count * size;
    if (size == 1 || host_is_little_endian()) {
        for (size_t done = 0; done < bytes;) {
            size_t m = bytes - done < NPY_CHUNK ? bytes - done : NPY_CHUNK;
            if (fwrite(p + done, 1, m, f) != m)
                return 0;
            done += m;
        }
        return 1;
    }
    unsigned char *tmp = malloc(NPY_CHUNK);
    if (!tmp) {
        errno = ENOMEM;
        return 0;
    }
    int ok = 1;
    for (size_t done = 0; ok && done < bytes;) {
        size_t m = bytes - done < NPY_CHUNK ? bytes - done : NPY_CHUNK;
        memcpy(tmp, p + done, m);
        bswap_inplace(tmp, m / size, size);
        ok = fwrite(tmp, 1, m, f) == m;
        done += m;
    }
    free(tmp);
    return ok;
}

static apl_status write_npy(const char *path, const void *data, const apl_shape *shape,
                            const char *descr, size_t itemsize, apl_error *err)
{
    if (!path || !shape)
        return apl_fail(err, APL_ERR_ARG, "npy write: null %s", path ? "shape" : "path");
    if (shape->ndim < 0 || shape->ndim > APL_NPY_MAX_DIMS)
        return apl_fail(err, APL_ERR_ARG, "%s: cannot write %d dimensions (at most %d)", path,
                        shape->ndim, APL_NPY_MAX_DIMS);
    size_t n;
    char sh[256];
    if (!count_elems(shape->dims, shape->ndim, &n) || n > SIZE_MAX / itemsize)
        return apl_fail(err, APL_ERR_ARG, "%s: shape %s has too many elements", path,
                        fmt_tuple(sh, sizeof sh, shape->dims, shape->ndim));
    if (n > 0 && !data)
        return apl_fail(err, APL_ERR_ARG, "%s: null data for %zu elements", path, n);
    char head[512];
    size_t hl = build_header(head, sizeof head, descr, shape);

    size_t plen = strlen(path);
    char *tmp = malloc(plen + sizeof ".tmp.XXXXXX");
    if (!tmp)
        return apl_fail(err, APL_ERR_NOMEM, "cannot allocate %zu bytes for %s",
                        plen + sizeof ".tmp.XXXXXX", path);
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp.XXXXXX", sizeof ".tmp.XXXXXX");
    /* Hold back the signals that would end the process (Ctrl-C, kill, hang-up, the file-size
     * limit) while the temporary file exists: a signal then arrives after the rename or the
     * unlink, and nothing partial is left behind. SIGXFSZ blocked makes write() fail with EFBIG
     * instead. (SIGKILL cannot be held back.) */
    sigset_t hold, saved;
    sigemptyset(&hold);
    sigaddset(&hold, SIGINT);
    sigaddset(&hold, SIGTERM);
    sigaddset(&hold, SIGHUP);
    sigaddset(&hold, SIGQUIT);
    sigaddset(&hold, SIGXFSZ);
    pthread_sigmask(SIG_BLOCK, &hold, &saved);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        int e = errno;
        pthread_sigmask(SIG_SETMASK, &saved, NULL);
        free(tmp);
        return apl_fail(err, APL_ERR_IO, "%s: cannot create a temporary file beside it: %s", path,
                        strerror(e));
    }
    /* mkstemp makes the file 0600; give the result the mode an ordinary fopen would under the
     * usual umask 022. */
    const char *step = "cannot set the mode of the temporary file";
    FILE *f = NULL;
    int ok = fchmod(fd, 0644) == 0;
    if (ok) {
        step = "cannot open the temporary file";
        f = fdopen(fd, "wb");
        ok = f != NULL;
    }
    if (ok) {
        step = "write failed";
        errno = 0;
        ok = fwrite(head, 1, hl, f) == hl && write_data(f, data, n, itemsize) && fflush(f) == 0;
    }
    /* fsync so that a crash after the rename cannot leave an empty file at path; filesystems
     * that cannot sync (EINVAL) are not an error. */
    if (ok && fsync(fileno(f)) != 0 && errno != EINVAL) {
        step = "fsync failed";
        ok = 0;
    }
    int e = errno;
    if (f) {
        if (fclose(f) != 0 && ok) {
            e = errno;
            step = "close failed";
            ok = 0;
        }
    } else {
        close(fd);
    }
    if (ok && rename(tmp, path) != 0) {
        e = errno;
        step = "cannot rename the temporary file onto it";
        ok = 0;
    }
    if (!ok)
        unlink(tmp);
    free(tmp);
    if (!ok)
        apl_fail(err, APL_ERR_IO, "%s: %s: %s", path, step, strerror(e ? e : EIO));
    pthread_sigmask(SIG_SETMASK, &saved, NULL); /* a pending signal is delivered here */
    if (!ok)
        return APL_ERR_IO;
    return APL_OK;
}

apl_status apl_npy_write_f32(const char *path, const float *data, const apl_shape *shape,
                             apl_error *err)
{
    return write_npy(path, data, shape, "<f4", sizeof *data, err);
}

apl_status apl_npy_write_i8(const char *path, const int8_t *data, const apl_shape *shape,
                            apl_error *err)
{
    return write_npy(path, data, shape, "|i1", 1, err);
}
