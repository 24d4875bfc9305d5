/* test_npy.c: the .npy reader and writer (src/npy.c). Files are built byte by byte here, so
 * each test states exactly what is on disk: the SPEC fixtures, round trips, every accepted targets
 * dtype and header version, every rejection (status and a distinctive part of the message), and
 * writes that fail part-way, which must leave the destination as it was. */
#define _POSIX_C_SOURCE 200809L

#include "aploss/harness.h"
#include "check.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define PATH_LEN 1024
static char work_dir[512];

/* buf has PATH_LEN bytes. */
static const char *in_work(char *buf, const char *name)
{
    snprintf(buf, PATH_LEN, "%s/%s", work_dir, name);
    return buf;
}

/* A fresh, empty work directory, so the leftover checks see only this run's files. */
static void reset_work_dir(void)
{
    snprintf(work_dir, sizeof work_dir, "%s/npy_work", APL_TEST_TMP);
    mkdir(work_dir, 0755);
    DIR *d = opendir(work_dir);
    if (!d) {
        fprintf(stderr, "cannot open %s: %s\n", work_dir, strerror(errno));
        exit(2);
    }
    struct dirent *e;
    char p[PATH_LEN];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        in_work(p, e->d_name);
        if (unlink(p) != 0)
            rmdir(p);
    }
    closedir(d);
}

/* Names in dir containing ".tmp." (the writer's temporary files). */
static int tmp_leftovers(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += strstr(e->d_name, ".tmp.") != NULL;
    closedir(d);
    return n;
}

static void write_bytes(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(2);
    }
}

/* The whole file; NULL if it cannot be read. */
static unsigned char *read_bytes(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, len = 0;
    unsigned char *b = malloc(cap);
    size_t r;
    while (b && (r = fread(b + len, 1, cap - len, f)) > 0) {
        len += r;
        if (len == cap)
            b = realloc(b, cap *= 2);
    }
    fclose(f);
    *n = len;
    return b;
}

static int contains(const unsigned char *buf, size_t len, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= len; i++)
        if (memcmp(buf + i, needle, n) == 0)
            return 1;
    return 0;
}

static int exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* The raw image of a .npy file: magic, version major.0, the header dict padded with spaces to a
 * multiple of 64 and a newline, then `nbytes` of data. */
static unsigned char *npy_image(int major, const char *dict, const void *data, size_t nbytes,
                                size_t *len)
{
    size_t lenfield = major == 1 ? 2 : 4;
    size_t dl = strlen(dict);
    size_t pre = 8 + lenfield;
    size_t pad = (64 - (pre + dl + 1) % 64) % 64;
    size_t hlen = dl + pad + 1;
    *len = pre + hlen + nbytes;
    unsigned char *b = malloc(*len ? *len : 1);
    memcpy(b, "\x93NUMPY", 6);
    b[6] = (unsigned char)major;
    b[7] = 0;
    for (size_t i = 0; i < lenfield; i++)
        b[8 + i] = (unsigned char)(hlen >> (8 * i));
    memcpy(b + pre, dict, dl);
    memset(b + pre + dl, ' ', pad);
    b[pre + hlen - 1] = '\n';
    if (nbytes)
        memcpy(b + pre + hlen, data, nbytes);
    return b;
}

static const char *put_npy(const char *name, int major, const char *dict, const void *data,
                           size_t nbytes)
{
    static char p[PATH_LEN];
    size_t len;
    unsigned char *b = npy_image(major, dict, data, nbytes, &len);
    write_bytes(in_work(p, name), b, len);
    free(b);
    return p;
}

/* "{'descr': 'D', 'fortran_order': False, 'shape': S, }" as numpy writes it. */
static const char *dict_of(const char *descr, const char *shape)
{
    static char d[256];
    snprintf(d, sizeof d, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }", descr, shape);
    return d;
}

/* Every read failure must leave no data and an empty shape. */
#define CHECK_READ_FAILED(buf, shape)                                                            \
    CHECK((buf) == NULL && (shape).ndim == 0, "failed read left data %p, ndim %d", (void *)(buf), \
          (shape).ndim)

static apl_status read_logits_err(const char *path, apl_error *err)
{
    static float sentinel; /* not NULL, so the check below sees the reader clear it */
    float *d = &sentinel;
    apl_shape s = {.ndim = 5};
    apl_status st = apl_npy_read_logits(path, &d, &s, err);
    if (st != APL_OK)
        CHECK_READ_FAILED(d, s);
    else
        free(d);
    return st;
}

static apl_status read_targets_err(const char *path, apl_error *err)
{
    static int8_t sentinel;
    int8_t *d = &sentinel;
    apl_shape s = {.ndim = 5};
    apl_status st = apl_npy_read_targets(path, &d, &s, err);
    if (st != APL_OK)
        CHECK_READ_FAILED(d, s);
    else
        free(d);
    return st;
}

/* ---- the SPEC fixtures ---- */

static void test_fixtures(void)
{
    apl_error err = {0};
    apl_shape s;
    float *l = NULL;
    int8_t *t = NULL;

    apl_status st = apl_npy_read_logits(APL_CASES_DIR "/hand/logits.npy", &l, &s, &err);
    CHECK(st == APL_OK, "hand/logits.npy: %s", err.msg);
    if (st == APL_OK) {
        const float want[10] = {2.0f, 0.3f, -1.0f, 1.5f, 0.9f, -0.2f, -3.5f, 0.3f, 5.0f, -0.7f};
        CHECK(s.ndim == 1 && s.dims[0] == 10, "hand logits shape ndim %d", s.ndim);
        CHECK(memcmp(l, want, sizeof want) == 0, "hand logits values differ");
    }
    free(l);

    st = apl_npy_read_targets(APL_CASES_DIR "/hand/targets.npy", &t, &s, &err);
    CHECK(st == APL_OK, "hand/targets.npy: %s", err.msg);
    if (st == APL_OK) {
        const int8_t want[10] = {1, 0, 1, 0, 1, -1, 0, 0, -1, 0};
        CHECK(s.ndim == 1 && s.dims[0] == 10, "hand targets shape ndim %d", s.ndim);
        CHECK(memcmp(t, want, sizeof want) == 0, "hand targets values differ");
    }
    free(t);

    st = apl_npy_read_targets(APL_CASES_DIR "/small_mid_d0.5/targets.npy", &t, &s, &err);
    CHECK(st == APL_OK, "small_mid_d0.5/targets.npy: %s", err.msg);
    if (st == APL_OK) {
        CHECK(s.ndim == 3 && s.dims[0] == 2 && s.dims[1] == 500 && s.dims[2] == 20,
              "small_mid targets shape");
        CHECK(apl_shape_count(&s) == 20000, "count %zu", apl_shape_count(&s));
        size_t pos = 0, neg = 0, ign = 0;
        for (size_t i = 0; i < 20000; i++) {
            pos += t[i] == 1;
            neg += t[i] == 0;
            ign += t[i] == -1;
        }
        CHECK(pos == 9 && neg == 19571 && ign == 420, "counts %zu/%zu/%zu", pos, neg, ign);
    }
    free(t);

    st = apl_npy_read_logits(APL_CASES_DIR "/small_mid_d0.5/logits.npy", &l, &s, &err);
    CHECK(st == APL_OK, "small_mid_d0.5/logits.npy: %s", err.msg);
    if (st == APL_OK) {
        CHECK(s.ndim == 3 && s.dims[0] == 2 && s.dims[1] == 500 && s.dims[2] == 20,
              "small_mid logits shape");
        CHECK(l[0] == -1.9181617498397827f && l[19999] == -6.520798206329346f,
              "small_mid logits first/last %.9g %.9g", (double)l[0], (double)l[19999]);
    }
    free(l);

    /* The float64 reference gradient: the values are the file's last 80 bytes. */
    double *g = NULL;
    st = apl_npy_read_f64(APL_CASES_DIR "/hand/grad_f64.npy", &g, &s, &err);
    CHECK(st == APL_OK, "hand/grad_f64.npy: %s", err.msg);
    size_t len;
    unsigned char *raw = read_bytes(APL_CASES_DIR "/hand/grad_f64.npy", &len);
    if (st == APL_OK && raw) {
        CHECK(s.ndim == 1 && s.dims[0] == 10, "hand grad shape ndim %d", s.ndim);
        CHECK(len == 128 + 80 && memcmp(g, raw + 128, 80) == 0, "hand grad values differ");
    }
    free(raw);
    free(g);
}

static void test_f64(void)
{
    apl_error err = {0};
    const double v[3] = {0.25, NAN, -1e300};
    double *g = NULL;
    apl_shape s;
    /* Not finiteness-checked: a NaN in a reference is for the comparison to catch. */
    apl_status st = apl_npy_read_f64(put_npy("g.npy", 2, dict_of("<f8", "(1, 3)"), v, 24), &g,
                                     &s, &err);
    CHECK(st == APL_OK && s.ndim == 2 && s.dims[1] == 3 && g[0] == 0.25 && isnan(g[1]) &&
              g[2] == -1e300,
          "f64 read: %s", err.msg);
    free(g);
    g = (double *)v;
    st = apl_npy_read_f64(put_npy("g4.npy", 1, dict_of("<f4", "(3,)"), v, 12), &g, &s, &err);
    CHECK_ERR(st, &err, APL_ERR_FORMAT, "must be float64 ('<f8'), got '<f4'");
    CHECK(g == NULL && s.ndim == 0, "failed f64 read left data");
    st = apl_npy_read_f64(put_npy("gbe.npy", 1, dict_of(">f8", "(3,)"), v, 24), &g, &s, &err);
    CHECK_ERR(st, &err, APL_ERR_FORMAT, "big-endian data is not supported ('>f8')");
    st = apl_npy_read_f64(put_npy("gtr.npy", 1, dict_of("<f8", "(3,)"), v, 23), &g, &s, &err);
    CHECK_ERR(st, &err, APL_ERR_FORMAT, "needs 24 bytes of data, found 23");
}

/* ---- round trips ---- */

static void round_trip(const apl_shape *shape, const char *name)
{
    apl_error err = {0};
    char p[PATH_LEN];
    size_t n = apl_shape_count(shape);
    float *f = malloc((n ? n : 1) * sizeof *f);
    int8_t *t = malloc(n ? n : 1);
    for (size_t i = 0; i < n; i++) {
        f[i] = (float)i * 0.25f - 3.0f;
        t[i] = (int8_t)((int)(i % 3) - 1);
    }

    snprintf(p, sizeof p, "%s/%s_f32.npy", work_dir, name);
    apl_status st = apl_npy_write_f32(p, f, shape, &err);
    CHECK(st == APL_OK, "%s: write f32: %s", name, err.msg);
    size_t len;
    unsigned char *raw = read_bytes(p, &len);
    CHECK(raw && len >= 64 && memcmp(raw, "\x93NUMPY\x01\x00", 8) == 0, "%s: f32 preamble", name);
    if (raw && len >= 10) {
        size_t data_at = 10 + (size_t)(raw[8] | raw[9] << 8);
        CHECK(data_at % 64 == 0 && len == data_at + 4 * n, "%s: data at %zu, length %zu", name,
              data_at, len);
        CHECK(raw[data_at - 1] == '\n', "%s: header does not end in a newline", name);
        CHECK(contains(raw, data_at, "'descr': '<f4'"), "%s: descr", name);
    }
    free(raw);
    struct stat sb;
    CHECK(stat(p, &sb) == 0 && (sb.st_mode & 0777) == 0644, "%s: mode %o", name,
          (unsigned)(sb.st_mode & 0777));
    float *fr = NULL;
    apl_shape sr;
    st = apl_npy_read_logits(p, &fr, &sr, &err);
    CHECK(st == APL_OK && fr != NULL, "%s: read f32: %s", name, err.msg);
    if (st == APL_OK) {
        CHECK(sr.ndim == shape->ndim &&
                  memcmp(sr.dims, shape->dims, (size_t)shape->ndim * sizeof sr.dims[0]) == 0,
              "%s: f32 shape differs", name);
        CHECK(n == 0 || memcmp(fr, f, n * sizeof *f) == 0, "%s: f32 values differ", name);
    }
    free(fr);

    snprintf(p, sizeof p, "%s/%s_i8.npy", work_dir, name);
    st = apl_npy_write_i8(p, t, shape, &err);
    CHECK(st == APL_OK, "%s: write i8: %s", name, err.msg);
    raw = read_bytes(p, &len);
    if (raw && len >= 10) {
        size_t data_at = 10 + (size_t)(raw[8] | raw[9] << 8);
        CHECK(data_at % 64 == 0 && len == data_at + n, "%s: i8 data at %zu, length %zu", name,
              data_at, len);
        CHECK(contains(raw, data_at, "'descr': '|i1'"), "%s: i8 descr", name);
    }
    free(raw);
    int8_t *tr = NULL;
    st = apl_npy_read_targets(p, &tr, &sr, &err);
    CHECK(st == APL_OK && tr != NULL, "%s: read i8: %s", name, err.msg);
    if (st == APL_OK) {
        CHECK(sr.ndim == shape->ndim &&
                  memcmp(sr.dims, shape->dims, (size_t)shape->ndim * sizeof sr.dims[0]) == 0,
              "%s: i8 shape differs", name);
        CHECK(n == 0 || memcmp(tr, t, n) == 0, "%s: i8 values differ", name);
    }
    free(tr);
    free(f);
    free(t);
}

static void test_round_trips(void)
{
    apl_shape s1 = {1, {5}}, s3 = {3, {2, 3, 4}}, s0 = {1, {0}}, s303 = {3, {2, 0, 3}},
              scalar = {0, {0}}, s8 = {8, {1, 2, 1, 2, 1, 2, 1, 3}};
    round_trip(&s1, "one_d");
    round_trip(&s3, "three_d");
    round_trip(&s0, "empty");
    round_trip(&s303, "empty_3d");
    round_trip(&scalar, "scalar");
    round_trip(&s8, "eight_d");
    CHECK(apl_shape_count(&scalar) == 1, "0-d count %zu", apl_shape_count(&scalar));
    CHECK(apl_shape_count(&s303) == 0, "(2, 0, 3) count %zu", apl_shape_count(&s303));

    /* A second write replaces the first. */
    apl_error err = {0};
    char p[PATH_LEN];
    in_work(p, "replace.npy");
    float a[2] = {1, 2}, b[3] = {7, 8, 9};
    apl_shape sa = {1, {2}}, sb = {1, {3}};
    CHECK(apl_npy_write_f32(p, a, &sa, &err) == APL_OK, "%s", err.msg);
    CHECK(apl_npy_write_f32(p, b, &sb, &err) == APL_OK, "%s", err.msg);
    float *r = NULL;
    apl_shape sr;
    CHECK(apl_npy_read_logits(p, &r, &sr, &err) == APL_OK && sr.dims[0] == 3 && r[2] == 9.0f,
          "replaced file not read back: %s", err.msg);
    free(r);
    CHECK(tmp_leftovers(work_dir) == 0, "temporary files left in %s", work_dir);
}

/* ---- what the reader accepts ---- */

static void expect_targets(const char *path, const int8_t *want, size_t n, const char *what)
{
    apl_error err = {0};
    int8_t *t = NULL;
    apl_shape s;
    apl_status st = apl_npy_read_targets(path, &t, &s, &err);
    CHECK(st == APL_OK, "%s: %s", what, err.msg);
    if (st == APL_OK) {
        CHECK(s.ndim == 1 && s.dims[0] == n, "%s: shape", what);
        CHECK(memcmp(t, want, n) == 0, "%s: values %d %d %d %d %d", what, t[0], t[1], t[2], t[3],
              t[4]);
    }
    free(t);
}

static void test_target_dtypes(void)
{
    const int8_t sgn[5] = {-1, 0, 1, 1, 0}, uns[5] = {0, 1, 1, 0, 1};
    const int8_t i1[5] = {-1, 0, 1, 1, 0};
    const int16_t i2[5] = {-1, 0, 1, 1, 0};
    const int32_t i4[5] = {-1, 0, 1, 1, 0};
    const int64_t i8[5] = {-1, 0, 1, 1, 0};
    const uint8_t u1[5] = {0, 1, 1, 0, 1};
    const uint16_t u2[5] = {0, 1, 1, 0, 1};
    const uint32_t u4[5] = {0, 1, 1, 0, 1};
    const uint64_t u8[5] = {0, 1, 1, 0, 1};
    const float f4[5] = {-1.0f, 0.0f, 1.0f, 1.0f, -0.0f};
    const double f8[5] = {-1.0, -0.0, 1.0, 1.0, 0.0};
    const uint8_t b1[5] = {0, 1, 1, 0, 1};
    const char *shape = "(5,)";
    char what[64];
    for (int major = 1; major <= 3; major++) {
        struct {
            const char *descr;
            const void *data;
            size_t size;
            const int8_t *want;
        } cases[] = {
            {"|i1", i1, 1, sgn}, {"<i1", i1, 1, sgn}, {"=i1", i1, 1, sgn}, {"<i2", i2, 2, sgn},
            {"<i4", i4, 4, sgn}, {"<i8", i8, 8, sgn}, {"=i8", i8, 8, sgn}, {"|u1", u1, 1, uns},
            {"<u1", u1, 1, uns}, {"<u2", u2, 2, uns}, {"<u4", u4, 4, uns}, {"<u8", u8, 8, uns},
            {"<f4", f4, 4, sgn}, {"<f8", f8, 8, sgn}, {"|b1", b1, 1, uns}, {"=b1", b1, 1, uns},
        };
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            snprintf(what, sizeof what, "v%d.0 %s", major, cases[c].descr);
            const char *p = put_npy("dtype.npy", major, dict_of(cases[c].descr, shape),
                                    cases[c].data, 5 * cases[c].size);
            expect_targets(p, cases[c].want, 5, what);
        }
    }

    /* Header spellings numpy or a hand-written file may use. */
    const char *dicts[] = {
        "{'shape': (5,), 'fortran_order': False, 'descr': '|i1'}",
        "{\"descr\": \"|i1\", \"fortran_order\": False, \"shape\": (5, ), }",
        "{ 'descr' : '|i1' ,\n 'fortran_order' : False , 'shape' : ( 5 , ) , }",
        "{'descr': '|i1', 'fortran_order': False, 'shape': (5L,), }",
    };
    for (size_t d = 0; d < sizeof dicts / sizeof dicts[0]; d++) {
        snprintf(what, sizeof what, "header spelling %zu", d);
        expect_targets(put_npy("spelling.npy", 1, dicts[d], i1, 5), sgn, 5, what);
    }

    /* A header padded without a multiple-of-64 start or a final newline still parses. */
    unsigned char raw[128];
    const char *dict = "{'descr': '|i1', 'fortran_order': False, 'shape': (5,)}";
    size_t dl = strlen(dict);
    memcpy(raw, "\x93NUMPY\x01\x00", 8);
    raw[8] = (unsigned char)(dl + 2);
    raw[9] = 0;
    memcpy(raw + 10, dict, dl);
    raw[10 + dl] = ' ';
    raw[11 + dl] = ' ';
    memcpy(raw + 12 + dl, i1, 5);
    char p[PATH_LEN];
    write_bytes(in_work(p, "unaligned.npy"), raw, 17 + dl);
    expect_targets(p, sgn, 5, "unaligned header");

    /* Logits in v2.0 and v3.0 files, a 0-d array, and a shape whose zero makes it empty even
     * though the other dimensions multiply past SIZE_MAX. */
    const float lv[3] = {1.5f, -2.0f, 0.0f};
    apl_error err = {0};
    for (int major = 2; major <= 3; major++) {
        float *l = NULL;
        apl_shape s;
        apl_status st = apl_npy_read_logits(put_npy("v.npy", major, dict_of("<f4", "(3,)"), lv, 12),
                                            &l, &s, &err);
        CHECK(st == APL_OK && s.ndim == 1 && s.dims[0] == 3 && memcmp(l, lv, 12) == 0,
              "v%d.0 logits: %s", major, err.msg);
        free(l);
    }
    float *l = NULL;
    apl_shape s;
    apl_status st = apl_npy_read_logits(put_npy("scalar.npy", 1, dict_of("=f4", "()"), lv, 4), &l,
                                        &s, &err);
    CHECK(st == APL_OK && s.ndim == 0 && l && l[0] == 1.5f, "0-d logits: %s", err.msg);
    free(l);
    st = apl_npy_read_logits(
        put_npy("zero.npy", 1, dict_of("<f4", "(9223372036854775808, 4, 0)"), NULL, 0), &l, &s,
        &err);
    CHECK(st == APL_OK && s.ndim == 3 && apl_shape_count(&s) == 0 && l != NULL,
          "empty huge shape: %s", err.msg);
    free(l);
}

/* ---- what the reader rejects ---- */

static void test_rejections(void)
{
    apl_error err = {0};
    char p[PATH_LEN];
    const float f[10] = {0};
    const int8_t t[10] = {0};
    apl_status st;

    st = read_logits_err(in_work(p, "does_not_exist.npy"), &err);
    CHECK_ERR(st, &err, APL_ERR_IO, "No such file or directory");
    CHECK(strncmp(err.msg, p, strlen(p)) == 0, "message does not start with the path: %s",
          err.msg);
    st = read_targets_err(work_dir, &err);
    CHECK_ERR(st, &err, APL_ERR_IO, "Is a directory");

    write_bytes(in_work(p, "short.npy"), "\x93NU", 3);
    st = read_logits_err(p, &err);
    CHECK_ERR(st, &err, APL_ERR_FORMAT, "not a .npy file");
    CHECK(strncmp(err.msg, p, strlen(p)) == 0, "message does not start with the path: %s",
          err.msg);
    size_t len;
    unsigned char *img = npy_image(1, dict_of("<f4", "(10,)"), f, 40, &len);
    img[1] = 'n';
    write_bytes(in_work(p, "magic.npy"), img, len);
    st = read_logits_err(p, &err);
    CHECK_ERR(st, &err, APL_ERR_FORMAT, "not a .npy file");
    img[1] = 'N';
    img[6] = 4;
    write_bytes(in_work(p, "v4.npy"), img, len);
    st = read_logits_err(p, &err);
    CHECK_ERR(st, &err, APL_ERR_FORMAT, "unsupported .npy format version 4.0");
    img[6] = 1;
    img[7] = 1;
    write_bytes(in_work(p, "v11.npy"), img, len);
    st = read_logits_err(p, &err);
    CHECK_ERR(st, &err, APL_ERR_FORMAT, "unsupported .npy format version 1.1");
    img[7] = 0;
    write_bytes(in_work(p, "cut_header.npy"), img, 60);
    st = read_logits_err(p, &err);
    CHECK_ERR(st, &err, APL_ERR_FORMAT, "truncated .npy header: expected 118 bytes, found 50");
    free(img);
    /* A v2.0 length field of 4 GiB - 1. */
    write_bytes(in_work(p, "huge_header.npy"), "\x93NUMPY\x02\x00\xff\xff\xff\xff{}", 14);
    st = read_logits_err(p, &err);
    CHECK_ERR(st, &err, APL_ERR_FORMAT, "implausibly large");

    struct {
        const char *dict, *needle;
    } bad[] = {
        {"{'descr': '<f4', 'fortran_order': False}", "missing 'shape'"},
        {"{'fortran_order': False, 'shape': (10,)}", "missing 'descr'"},
        {"{'descr': '<f4', 'shape': (10,)}", "missing 'fortran_order'"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (10,)", "expected ',' or '}'"},
        {"'descr': '<f4'", "expected '{'"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (10)}", "is not a tuple"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (-10,)}", "non-negative integer"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': [10]}", "expected '('"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (10,,)}", "non-negative integer"},
        {"{'descr': '<f4', 'fortran_order': 0, 'shape': (10,)}", "not True or False"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (10,), 'x': 1}",
         "unexpected or repeated key 'x'"},
        {"{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (10,)}",
         "unexpected or repeated key 'descr'"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (10,)} x", "after the closing"},
        {"{'descr': <f4, 'fortran_order': False, 'shape': (10,)}", "expected a quoted string"},
        {"{'descr' '<f4', 'fortran_order': False, 'shape': (10,)}", "expected ':'"},
        {"{'descr': '<f4, 'fortran_order': False, 'shape': (10,)}", "expected ',' or '}'"},
        {"{'descr': '<f4', 'fortran_order': False 'shape': (10,)}", "expected ',' or '}'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        st = read_logits_err(put_npy("malformed.npy", 1, bad[i].dict, f, 40), &err);
        CHECK_ERR(st, &err, APL_ERR_FORMAT, bad[i].needle);
        CHECK_ERR(st, &err, APL_ERR_FORMAT, "malformed .npy header");
    }

    st = read_logits_err(
        put_npy("fortran.npy", 1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 5), }",
                f, 40),
        &err);
    CHECK_ERR(st, &err, APL_ERR_FORMAT,
              "Fortran order is not supported: save with np.ascontiguousarray");
    st = read_logits_err(put_npy("be.npy", 1, dict_of(">f4", "(10,)"), f, 40), &err);
    CHECK_ERR(st, &err, APL_ERR_FORMAT, "big-endian data is not supported");
    st = read_targets_err(put_npy("be_t.npy", 1, dict_of(">i4", "(10,)"), f, 40), &err);
    CHECK_ERR(st, &err, APL_ERR_FORMAT, "big-endian data is not supported");
    st = read_targets_err(put_npy("be_t8.npy", 2, dict_of(">f8", "(5,)"), f, 40), &err);
    CHECK_ERR(st, &err, APL_ERR_FORMAT, "big-endian data is not supported ('>f8')");

    st = read_logits_err(put_npy("f8.npy", 1, dict_of("<f8", "(5,)"), f, 40), &err);
    CHECK_ERR(st, &err, APL_ERR_FORMAT, "logits must be float32 ('<f4'), got '<f8'");
    st = read_logits_err(put_npy("i1.npy", 1, dict_of("|i1", "(10,)"), t, 10), &err);
    CHECK_ERR(st, &err, APL_ERR_FORMAT, "logits must be float32 ('<f4'), got '|i1'");
    st = read_logits_err(put_npy("obj.npy", 1, dict_of("|O", "(5,)"), f, 40), &err);
    CHECK_ERR(st, &err, APL_ERR_FORMAT, "got '|O'");

    const char *unknown[] = {"|O", "O", "<c8", "<U3", "|S5", "<f2", "<M8[ns]", "|V8", "<i3", "<"};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        char needle[64];
        snprintf(needle, sizeof needle, "unsupported targets dtype '%s'", unknown[i]);
        st = read_targets_err(put_npy("unknown.npy", 1, dict_of(unknown[i], "(1,)"), f, 40),
                              &err);
        CHECK_ERR(st, &err, APL_ERR_FORMAT, needle);
    }
    st = read_targets_err(
        put_npy("struct.npy", 1,
                "{'descr': [('a', '<i4'), ('b', '<f4')], 'fortran_order': False, 'shape': (5,), }",
                f, 40),
        &err);
    CHECK_ERR(st, &err, APL_ERR_FORMAT, "structured dtypes");
    st = read_logits_err(
        put_npy("struct_l.npy", 1,
                "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (10,), }", f, 40),
        &err);
    CHECK_ERR(st, &err, APL_ERR_FORMAT, "structured dtypes");

    st = read_logits_err(put_npy("nine.npy", 1, dict_of("<f4", "(1, 1, 1, 1, 1, 1, 1, 1, 10)"),
                                 f, 40),
                         &err);
    CHECK_ERR(st, &err, APL_ERR_FORMAT, "more than 8 dimensions");
    st = read_logits_err(put_npy("overflow.npy", 1,
                                 dict_of("<f4", "(4294967296, 4294967296, 2)"), f, 40),
                         &err);
    CHECK_ERR(st, &err, APL_ERR_FORMAT, "too many elements (overflows size_t)");
    st = read_logits_err(put_npy("overflow_b.npy", 1, dict_of("<f4", "(4611686018427387904,)"),
                                 f, 40),
                         &err);
    CHECK_ERR(st, &err, APL_ERR_FORMAT, "byte size overflows");
    st = read_targets_err(put_npy("bigdim.npy", 1, dict_of("|i1", "(99999999999999999999999,)"),
                                  t, 10),
                          &err);
    CHECK_ERR(st, &err, APL_ERR_FORMAT, "does not fit in size_t");
    /* A shape far larger than the file is refused before any allocation. */
    st = read_logits_err(put_npy("claims_huge.npy", 1, dict_of("<f4", "(1000000000000,)"), f, 40),
                         &err);
    CHECK_ERR(st, &err, APL_ERR_FORMAT, "needs 4000000000000 bytes of data, found 40");

    st = read_logits_err(put_npy("trunc.npy", 1, dict_of("<f4", "(10,)"), f, 39), &err);
    CHECK_ERR(st, &err, APL_ERR_FORMAT,
              "truncated: shape (10,) of '<f4' needs 40 bytes of data, found 39");
    st = read_targets_err(put_npy("trunc_t.npy", 1, dict_of("<i4", "(2, 5)"), f, 38), &err);
    CHECK_ERR(st, &err, APL_ERR_FORMAT, "needs 40 bytes of data, found 38");
    st = read_logits_err(put_npy("trail.npy", 1, dict_of("<f4", "(9,)"), f, 40), &err);
    CHECK_ERR(st, &err, APL_ERR_FORMAT, "4 trailing bytes after the data");
    st = read_targets_err(put_npy("trail_t.npy", 1, dict_of("|i1", "()"), t, 2), &err);
    CHECK_ERR(st, &err, APL_ERR_FORMAT, "1 trailing bytes after the data");
}

/* ---- values ---- */

static void test_values(void)
{
    apl_error err = {0};
    apl_status st;

    float *l = calloc(2 * 20 * 80, sizeof *l);
    l[1043] = NAN;
    l[2000] = INFINITY; /* later: the first offender is the one named */
    st = read_logits_err(put_npy("nan.npy", 1, dict_of("<f4", "(2, 20, 80)"), l, 4 * 3200), &err);
    CHECK_ERR(st, &err, APL_ERR_INPUT,
              "logits[1043] (index (0, 13, 3)) = nan: logits must be finite");
    CHECK_ERR(st, &err, APL_ERR_INPUT, "nan.npy: logits[1043]");
    l[1043] = 0;
    st = read_logits_err(put_npy("inf.npy", 1, dict_of("<f4", "(2, 20, 80)"), l, 4 * 3200), &err);
    CHECK_ERR(st, &err, APL_ERR_INPUT, "logits[2000] (index (1, 5, 0)) = inf");
    l[0] = -INFINITY;
    st = read_logits_err(put_npy("ninf.npy", 1, dict_of("<f4", "(3200,)"), l, 4 * 3200), &err);
    CHECK_ERR(st, &err, APL_ERR_INPUT, "logits[0] (index (0,)) = -inf");
    st = read_logits_err(put_npy("inf0d.npy", 1, dict_of("<f4", "()"), &l[2000], 4), &err);
    CHECK_ERR(st, &err, APL_ERR_INPUT, "logits[0] (index ()) = inf");
    free(l);

    int8_t t8[16] = {0, 1, -1, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0};
    st = read_targets_err(put_npy("three.npy", 1, dict_of("|i1", "(2, 2, 4)"), t8, 16), &err);
    CHECK_ERR(st, &err, APL_ERR_INPUT, "targets[7] (index (0, 1, 3)) = 3: expected -1, 0 or 1");
    t8[7] = -128;
    st = read_targets_err(put_npy("m128.npy", 1, dict_of("|i1", "(16,)"), t8, 16), &err);
    CHECK_ERR(st, &err, APL_ERR_INPUT, "targets[7] (index (7,)) = -128: expected");

    float tf[4] = {1, 0, 0.5f, -1};
    st = read_targets_err(put_npy("half.npy", 1, dict_of("<f4", "(4,)"), tf, 16), &err);
    CHECK_ERR(st, &err, APL_ERR_INPUT, "targets[2] (index (2,)) = 0.5: expected -1, 0 or 1");
    double td[4] = {1, 0, -1, NAN};
    st = read_targets_err(put_npy("nan_t.npy", 1, dict_of("<f8", "(2, 2)"), td, 32), &err);
    CHECK_ERR(st, &err, APL_ERR_INPUT, "targets[3] (index (1, 1)) = nan: expected -1, 0 or 1");
    td[3] = -INFINITY;
    st = read_targets_err(put_npy("inf_t.npy", 1, dict_of("<f8", "(2, 2)"), td, 32), &err);
    CHECK_ERR(st, &err, APL_ERR_INPUT, "= -inf: expected");
    td[3] = 1.0000000000000002;
    st = read_targets_err(put_npy("near_t.npy", 1, dict_of("<f8", "(2, 2)"), td, 32), &err);
    CHECK_ERR(st, &err, APL_ERR_INPUT, "= 1.0000000000000002: expected");

    uint8_t u1[3] = {0, 255, 1};
    st = read_targets_err(put_npy("u255.npy", 1, dict_of("|u1", "(3,)"), u1, 3), &err);
    CHECK_ERR(st, &err, APL_ERR_INPUT, "targets[1] (index (1,)) = 255: expected -1, 0 or 1");
    uint64_t u8[2] = {1, UINT64_MAX};
    st = read_targets_err(put_npy("u8max.npy", 1, dict_of("<u8", "(2,)"), u8, 16), &err);
    CHECK_ERR(st, &err, APL_ERR_INPUT, "= 18446744073709551615: expected");
    int64_t i8[2] = {-1, INT64_MIN};
    st = read_targets_err(put_npy("i8min.npy", 1, dict_of("<i8", "(2,)"), i8, 16), &err);
    CHECK_ERR(st, &err, APL_ERR_INPUT, "= -9223372036854775808: expected");
    int16_t i2[2] = {-1, -2};
    st = read_targets_err(put_npy("i2m2.npy", 1, dict_of("<i2", "(2,)"), i2, 4), &err);
    CHECK_ERR(st, &err, APL_ERR_INPUT, "targets[1] (index (1,)) = -2: expected");
    uint8_t b1[2] = {1, 2};
    st = read_targets_err(put_npy("b2.npy", 1, dict_of("|b1", "(2,)"), b1, 2), &err);
    CHECK_ERR(st, &err, APL_ERR_INPUT, "targets[1] (index (1,)) = 2: expected");

    /* Wide targets are converted through a staging buffer in chunks: an offender past the first
     * chunk must still be named by its global index, and values before it converted. */
    size_t n = 3000000;
    int64_t *big = calloc(n, sizeof *big);
    for (size_t i = 0; i < n; i++)
        big[i] = (int64_t)(i % 3) - 1;
    const char *p = put_npy("big_i8.npy", 1, dict_of("<i8", "(3000000,)"), big, n * 8);
    int8_t *t = NULL;
    apl_shape s;
    st = apl_npy_read_targets(p, &t, &s, &err);
    CHECK(st == APL_OK, "big <i8 targets: %s", err.msg);
    int same = st == APL_OK;
    for (size_t i = 0; same && i < n; i++)
        same = t[i] == big[i];
    CHECK(same, "big <i8 targets converted wrongly");
    free(t);
    big[2500001] = 2;
    st = read_targets_err(put_npy("big_i8_bad.npy", 1, dict_of("<i8", "(1000, 3000)"), big, n * 8),
                          &err);
    CHECK_ERR(st, &err, APL_ERR_INPUT, "targets[2500001] (index (833, 1001)) = 2: expected");
    free(big);
}

/* ---- non-seekable input: sizes are only known by reading ---- */

static apl_status read_via_fifo(const unsigned char *img, size_t len, int targets, apl_error *err)
{
    char p[PATH_LEN];
    in_work(p, "fifo");
    unlink(p);
    if (mkfifo(p, 0600) != 0) {
        fprintf(stderr, "mkfifo %s: %s\n", p, strerror(errno));
        exit(2);
    }
    pid_t pid = fork();
    if (pid == 0) {
        FILE *w = fopen(p, "wb");
        if (w) {
            fwrite(img, 1, len, w);
            fclose(w);
        }
        _exit(0);
    }
    apl_status st = targets ? read_targets_err(p, err) : read_logits_err(p, err);
    int status;
    waitpid(pid, &status, 0);
    unlink(p);
    return st;
}

static void test_fifo(void)
{
    signal(SIGPIPE, SIG_IGN); /* the child may write past what the reader takes */
    apl_error err = {0};
    const float f[4] = {1, 2, 3, 4};
    size_t len;
    unsigned char *img = npy_image(1, dict_of("<f4", "(4,)"), f, 16, &len);
    CHECK(read_via_fifo(img, len, 0, &err) == APL_OK, "fifo logits: %s", err.msg);
    CHECK_ERR(read_via_fifo(img, len - 1, 0, &err), &err, APL_ERR_FORMAT,
              "needs 16 bytes of data, found 15");
    free(img);
    img = npy_image(1, dict_of("<f4", "(3,)"), f, 16, &len);
    CHECK_ERR(read_via_fifo(img, len, 0, &err), &err, APL_ERR_FORMAT,
              "trailing bytes after the 12 bytes of data");
    free(img);
    const int16_t t[4] = {1, 0, -1, 0};
    img = npy_image(2, dict_of("<i2", "(4,)"), t, 8, &len);
    CHECK(read_via_fifo(img, len, 1, &err) == APL_OK, "fifo targets: %s", err.msg);
    CHECK_ERR(read_via_fifo(img, len - 3, 1, &err), &err, APL_ERR_FORMAT,
              "needs 8 bytes of data, found 5");
    free(img);
}

/* ---- writes that fail ---- */

static void test_write_failures(void)
{
    apl_error err = {0};
    char p[PATH_LEN], dir[PATH_LEN];
    const float f[4] = {1, 2, 3, 4};
    const int8_t t[4] = {1, 0, -1, 0};
    apl_shape s4 = {1, {4}};
    apl_status st;

    /* No such directory: nothing is created. */
    in_work(dir, "no_such_dir");
    snprintf(p, sizeof p, "%s/no_such_dir/out.npy", work_dir);
    st = apl_npy_write_f32(p, f, &s4, &err);
    CHECK_ERR(st, &err, APL_ERR_IO, "No such file or directory");
    CHECK(strncmp(err.msg, p, strlen(p)) == 0, "message does not start with the path: %s",
          err.msg);
    CHECK(!exists(dir), "%s was created", dir);

    /* The path is a directory: the rename fails, the directory stays, no temporary remains. */
    in_work(dir, "is_a_dir.npy");
    CHECK(mkdir(dir, 0755) == 0, "mkdir %s: %s", dir, strerror(errno));
    st = apl_npy_write_i8(dir, t, &s4, &err);
    CHECK_ERR(st, &err, APL_ERR_IO, "is_a_dir.npy: cannot rename the temporary file onto it");
    struct stat sb;
    CHECK(stat(dir, &sb) == 0 && S_ISDIR(sb.st_mode), "%s is no longer a directory", dir);
    CHECK(tmp_leftovers(work_dir) == 0, "temporary file left after a failed rename");
    CHECK(tmp_leftovers(dir) == 0, "temporary file left inside the directory");

    /* Argument errors: nothing is created. */
    in_work(p, "bad_args.npy");
    apl_shape nine = {9, {1}};
    CHECK_ERR(apl_npy_write_f32(p, f, &nine, &err), &err, APL_ERR_ARG, "at most 8");
    apl_shape neg = {-1, {0}};
    CHECK_ERR(apl_npy_write_f32(p, f, &neg, &err), &err, APL_ERR_ARG,
              "cannot write -1 dimensions");
    apl_shape over = {2, {SIZE_MAX / 2, 3}};
    CHECK_ERR(apl_npy_write_i8(p, t, &over, &err), &err, APL_ERR_ARG, "too many elements");
    apl_shape over4 = {1, {SIZE_MAX / 2}};
    CHECK_ERR(apl_npy_write_f32(p, f, &over4, &err), &err, APL_ERR_ARG, "too many elements");
    CHECK_ERR(apl_npy_write_f32(p, NULL, &s4, &err), &err, APL_ERR_ARG, "null data for 4");
    CHECK_ERR(apl_npy_write_f32(p, f, NULL, &err), &err, APL_ERR_ARG, "null shape");
    CHECK_ERR(apl_npy_write_f32(NULL, f, &s4, &err), &err, APL_ERR_ARG, "null path");
    CHECK(!exists(p), "%s created by a rejected write", p);
    apl_shape empty = {1, {0}};
    CHECK(apl_npy_write_f32(p, NULL, &empty, &err) == APL_OK, "empty write with NULL data: %s",
          err.msg);

    /* A write that fails part-way (the file size limit makes write() fail with EFBIG) leaves an
     * existing file at path byte for byte as it was. */
    in_work(p, "existing.npy");
    CHECK(apl_npy_write_f32(p, f, &s4, &err) == APL_OK, "%s", err.msg);
    size_t before_len, after_len;
    unsigned char *before = read_bytes(p, &before_len);
    size_t n = 1 << 20;
    float *big = calloc(n, sizeof *big);
    apl_shape sbig = {2, {1024, 1024}};
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = 65536;
    signal(SIGXFSZ, SIG_IGN);
    CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0, "setrlimit: %s", strerror(errno));
    st = apl_npy_write_f32(p, big, &sbig, &err);
    setrlimit(RLIMIT_FSIZE, &old);
    CHECK_ERR(st, &err, APL_ERR_IO, "existing.npy: write failed: File too large");
    unsigned char *after = read_bytes(p, &after_len);
    CHECK(before && after && before_len == after_len && memcmp(before, after, before_len) == 0,
          "existing file changed by a failed write");
    CHECK(tmp_leftovers(work_dir) == 0, "temporary file left after a failed write");
    free(before);
    free(after);

    /* The same with no file there before: nothing appears. */
    in_work(p, "new_big.npy");
    CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0, "setrlimit: %s", strerror(errno));
    st = apl_npy_write_f32(p, big, &sbig, &err);
    setrlimit(RLIMIT_FSIZE, &old);
    CHECK_ERR(st, &err, APL_ERR_IO, "File too large");
    CHECK(!exists(p), "%s left by a failed write", p);
    CHECK(tmp_leftovers(work_dir) == 0, "temporary file left after a failed write");
    free(big);
}

static void test_read_args(void)
{
    apl_error err = {0};
    float *l = NULL;
    int8_t *t = NULL;
    CHECK_ERR(apl_npy_read_logits(NULL, &l, NULL, &err), &err, APL_ERR_ARG, "null path");
    CHECK_ERR(apl_npy_read_targets("x.npy", NULL, NULL, &err), &err, APL_ERR_ARG,
              "null data pointer");
    /* The shape is optional. */
    CHECK(apl_npy_read_targets(APL_CASES_DIR "/hand/targets.npy", &t, NULL, &err) == APL_OK &&
              t && t[5] == -1,
          "read without a shape: %s", err.msg);
    free(t);
    apl_shape bad = {9, {0}};
    CHECK(apl_shape_count(&bad) == SIZE_MAX, "count of 9 dims");
    apl_shape over = {2, {SIZE_MAX, 2}};
    CHECK(apl_shape_count(&over) == SIZE_MAX, "count of an overflowing shape");
    apl_shape zero_over = {3, {SIZE_MAX, SIZE_MAX, 0}};
    CHECK(apl_shape_count(&zero_over) == 0, "count with a zero dimension");
}

int main(void)
{
    reset_work_dir();
    test_fixtures();
    test_f64();
    test_round_trips();
    test_target_dtypes();
    test_rejections();
    test_values();
    test_fifo();
    test_write_failures();
    test_read_args();
    return check_report("test_npy");
}
