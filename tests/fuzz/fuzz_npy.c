/* fuzz_npy.c: libFuzzer target for the .npy reader (src/npy.c). The input is the file's
 * bytes, so the seed corpus (corpus/fuzz_npy/) is plain .npy files.
 *
 * Each input is read by all three readers (logits, targets, float64), once from a regular file
 * and once streamed through a FIFO (the path where sizes are only known by reading). Besides
 * crashes and sanitizer reports, it asserts the readers' contract:
 *  - failure: data NULL, shape cleared, a status that says which kind, a message naming the file;
 *  - success: a shape whose element count fits in the bytes given, every value touched (so ASan
 *    sees a short buffer), logits finite, targets in {-1, 0, 1};
 *  - the readers agree with each other: float values all in {-1, 0, 1} read as logits or float64
 *    must also read as targets, with the same values;
 *  - a regular file and the same bytes streamed give the same outcome and the same data;
 *  - what was read writes back (apl_npy_write_f32 / _i8) and reads again bit for bit.
 *
 * Build: with clang -fsanitize=fuzzer (tests/hardening.sh), or with replay_main.c as a plain
 * program that replays files (the fuzz_npy_replay test). */
#include "fuzz_common.h"

#include <math.h>

typedef enum { R_LOGITS, R_TARGETS, R_F64, R_COUNT } reader;
static const char *const reader_name[R_COUNT] = {"logits", "targets", "f64"};
static const size_t item_size[R_COUNT] = {4, 1, 8};

typedef struct {
    reader r;
    apl_status st;
    apl_error err;
    void *data;
    apl_shape shape;
    size_t n;
} outcome;

static apl_status read_into(const char *path, void *ctx)
{
    outcome *o = ctx;
    memset(&o->err, 0, sizeof o->err);
    /* Poison the outputs: a reader must set both on every path. */
    o->data = (void *)&o->err;
    memset(&o->shape, 0x5a, sizeof o->shape);
    switch (o->r) {
    case R_LOGITS: o->st = apl_npy_read_logits(path, (float **)&o->data, &o->shape, &o->err); break;
    case R_TARGETS:
        o->st = apl_npy_read_targets(path, (int8_t **)&o->data, &o->shape, &o->err);
        break;
    default: o->st = apl_npy_read_f64(path, (double **)&o->data, &o->shape, &o->err); break;
    }
    return o->st;
}

static void check_outcome(outcome *o, const char *path, size_t size, const char *how)
{
    const char *what = reader_name[o->r];
    FUZZ_ASSERT(memchr(o->err.msg, '\0', sizeof o->err.msg) != NULL, "%s/%s: unterminated message",
                how, what);
    if (o->st != APL_OK) {
        static const apl_shape zero;
        FUZZ_ASSERT(o->st == APL_ERR_IO || o->st == APL_ERR_FORMAT || o->st == APL_ERR_INPUT ||
                        o->st == APL_ERR_NOMEM,
                    "%s/%s: unexpected status %d (%s)", how, what, (int)o->st, o->err.msg);
        FUZZ_ASSERT(o->err.code == o->st, "%s/%s: err.code %d but status %d", how, what,
                    (int)o->err.code, (int)o->st);
        FUZZ_ASSERT(o->data == NULL, "%s/%s: failed (%s) but data is not NULL", how, what,
                    o->err.msg);
        FUZZ_ASSERT(memcmp(&o->shape, &zero, sizeof zero) == 0,
                    "%s/%s: failed (%s) but the shape was not cleared", how, what, o->err.msg);
        FUZZ_ASSERT(strstr(o->err.msg, path) != NULL, "%s/%s: message does not name the file: %s",
                    how, what, o->err.msg);
        o->n = 0;
        return;
    }
    FUZZ_ASSERT(o->data != NULL && o->data != (void *)&o->err, "%s/%s: success without data", how,
                what);
    FUZZ_ASSERT(o->shape.ndim >= 0 && o->shape.ndim <= APL_NPY_MAX_DIMS,
                "%s/%s: ndim %d", how, what, o->shape.ndim);
    o->n = apl_shape_count(&o->shape);
    FUZZ_ASSERT(o->n != SIZE_MAX && o->n <= size / item_size[o->r],
                "%s/%s: %zu elements of %zu bytes from a %zu-byte input", how, what, o->n,
                item_size[o->r], size);
    /* Touch every element: a buffer shorter than the shape says is an ASan report here. */
    if (o->r == R_LOGITS) {
        const float *v = o->data;
        for (size_t i = 0; i < o->n; i++)
            FUZZ_ASSERT(isfinite(v[i]), "%s/logits[%zu] = %g accepted", how, i, (double)v[i]);
    } else if (o->r == R_TARGETS) {
        const int8_t *v = o->data;
        for (size_t i = 0; i < o->n; i++)
            FUZZ_ASSERT(v[i] >= -1 && v[i] <= 1, "%s/targets[%zu] = %d accepted", how, i, v[i]);
    } else {
        const double *v = o->data;
        volatile double sink = 0.0;
        for (size_t i = 0; i < o->n; i++)
            sink += v[i];
        (void)sink;
    }
}

/* Float data whose values are all -1, 0 or 1 is valid targets too (the targets reader takes <f4
 * and <f8): it must read as such, with the same values. */
static void check_float_as_targets(const outcome *f, const outcome *t, const char *how)
{
    if (f->st != APL_OK)
        return;
    int ternary = 1;
    for (size_t i = 0; ternary && i < f->n; i++) {
        double v = f->r == R_LOGITS ? (double)((const float *)f->data)[i]
                                    : ((const double *)f->data)[i];
        ternary = v == -1.0 || v == 0.0 || v == 1.0;
    }
    if (!ternary) {
        FUZZ_ASSERT(t->st != APL_OK, "%s: targets accepted values that %s reads as non-ternary",
                    how, reader_name[f->r]);
        return;
    }
    FUZZ_ASSERT(t->st == APL_OK, "%s: %s reads values in {-1,0,1} but targets fails: %s", how,
                reader_name[f->r], t->err.msg);
    FUZZ_ASSERT(apl_shape_equal(&f->shape, &t->shape), "%s: %s and targets disagree on the shape", how,
                reader_name[f->r]);
    for (size_t i = 0; i < f->n; i++) {
        double v = f->r == R_LOGITS ? (double)((const float *)f->data)[i]
                                    : ((const double *)f->data)[i];
        FUZZ_ASSERT((double)((const int8_t *)t->data)[i] == v, "%s: element %zu: %s %g, targets %d",
                    how, i, reader_name[f->r], v, ((const int8_t *)t->data)[i]);
    }
}

/* What was read writes back and reads again bit for bit. */
static void round_trip(const outcome *o)
{
    if (o->st != APL_OK || o->r == R_F64 || o->n > (1u << 16))
        return;
    const char *p = fuzz_path(2, "round_trip.npy");
    apl_error err = {0};
    apl_status st = o->r == R_LOGITS ? apl_npy_write_f32(p, o->data, &o->shape, &err)
                                     : apl_npy_write_i8(p, o->data, &o->shape, &err);
    FUZZ_ASSERT(st == APL_OK, "round trip: writing %s failed: %s", reader_name[o->r], err.msg);
    outcome back = {.r = o->r};
    read_into(p, &back);
    FUZZ_ASSERT(back.st == APL_OK, "round trip: reading back %s failed: %s", reader_name[o->r],
                back.err.msg);
    FUZZ_ASSERT(apl_shape_equal(&back.shape, &o->shape), "round trip: %s shape changed",
                reader_name[o->r]);
    FUZZ_ASSERT(memcmp(back.data, o->data, o->n * item_size[o->r]) == 0,
                "round trip: %s data changed", reader_name[o->r]);
    free(back.data);
    unlink(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write_file(0, "input.npy", data, size);
    outcome reg[R_COUNT];
    for (int r = 0; r < R_COUNT; r++) {
        reg[r].r = (reader)r;
        read_into(path, &reg[r]);
        check_outcome(&reg[r], path, size, "file");
    }
    FUZZ_ASSERT(!(reg[R_LOGITS].st == APL_OK && reg[R_F64].st == APL_OK),
                "one file read as both float32 logits and float64");
    check_float_as_targets(&reg[R_LOGITS], &reg[R_TARGETS], "file");
    check_float_as_targets(&reg[R_F64], &reg[R_TARGETS], "file");
    for (int r = 0; r < R_COUNT; r++)
        round_trip(&reg[r]);

    /* The same bytes streamed: the same outcome (allocation failures aside: a stream's size is
     * not known before the reader allocates what the header promises). */
    for (int r = 0; r < R_COUNT; r++) {
        outcome s = {.r = (reader)r};
        fuzz_via_fifo(data, size, read_into, &s);
        const char *fifo = fuzz_path(3, "stream.fifo");
        check_outcome(&s, fifo, size, "fifo");
        /* A stream's trailing bytes are found only at its end, after the targets reader has
         * converted (and may have rejected) the values: INPUT where the file gives FORMAT. */
        int late_trailing = r == R_TARGETS && reg[r].st == APL_ERR_FORMAT &&
                            s.st == APL_ERR_INPUT && strstr(reg[r].err.msg, "trailing bytes");
        /* libFuzzer's timer signal can interrupt a blocking open or read of the FIFO (the
         * harness's doing: the CLI installs no handlers). */
        int interrupted = s.st == APL_ERR_IO && strstr(s.err.msg, "Interrupted system call");
        if (s.st != APL_ERR_NOMEM && reg[r].st != APL_ERR_NOMEM && !late_trailing &&
            !interrupted) {
            FUZZ_ASSERT(s.st == reg[r].st, "%s: file gives %d (%s), stream gives %d (%s)",
                        reader_name[r], (int)reg[r].st, reg[r].err.msg, (int)s.st, s.err.msg);
            if (s.st == APL_OK)
                FUZZ_ASSERT(apl_shape_equal(&s.shape, &reg[r].shape) &&
                                memcmp(s.data, reg[r].data, s.n * item_size[r]) == 0,
                            "%s: file and stream read different data", reader_name[r]);
        }
        free(s.data);
    }
    for (int r = 0; r < R_COUNT; r++)
        free(reg[r].data);
    return 0;
}
