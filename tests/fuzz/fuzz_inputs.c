/* fuzz_inputs.c: libFuzzer target for the path `aploss run` and `aploss verify` take with user
 * files: read the logits and the targets .npy, check the shapes match, run every CPU variant
 * (apl_run) and the reference, compare (apl_accept).
 *
 * Input layout (corpus/fuzz_inputs/, made by make_corpus.py):
 *   byte 0      delta: delta_table[byte & 15]
 *   bytes 1-2   L, little-endian: the logits file is the next L bytes (fewer if the input ends)
 *   the rest    the targets file
 *
 * Inputs over MAX_ELEMENTS elements stop after the shape check, so one run stays fast (the
 * reference and two variants are O(|P| * M)). On every valid input each variant must succeed,
 * pass apl_accept against the reference (counts, tolerance, exact zeros, loss), and give bitwise
 * the same result when run again: a disagreement is a
 * finding just as a crash is. An input the reference rejects must be rejected by every variant
 * with the same status. Every variant is checked before the abort, so one report names them all. */
#include "fuzz_common.h"

#include <math.h>

#define MAX_ELEMENTS 4096

/* Every value is a valid delta (> 0, finite); the spread covers ramps far narrower and far wider
 * than the logits' spacing. */
static const double delta_table[16] = {1.0,  0.5,  0.25, 2.0,   0.1,  4.0,  0.01, 100.0,
                                       1e-3, 10.0, 0.3,  1e-4, 0.05, 20.0, 1.5,  1e3};

/* Like FUZZ_ASSERT, but goes on to the other variants before aborting: one report shows every
 * variant that disagrees on the input. */
static int findings;
#define FUZZ_EXPECT(cond, ...)                                                                   \
    do {                                                                                         \
        if (!(cond)) {                                                                           \
            fprintf(stderr, "%s:%d: FUZZ_EXPECT(%s) failed: ", __FILE__, __LINE__, #cond);      \
            fprintf(stderr, __VA_ARGS__);                                                        \
            fputc('\n', stderr);                                                                 \
            findings++;                                                                          \
        }                                                                                        \
    } while (0)

static void check_variant(const apl_variant *v, const float *s, const int8_t *t, size_t n,
                          double delta, const double *g64, const apl_result *ref, float *grad,
                          float *again)
{
    const char *name = v->name;
    apl_error err = {0};
    /* NaN everywhere first: a variant must write all n entries. */
    for (size_t j = 0; j < n; j++)
        grad[j] = NAN;
    apl_result r;
    apl_status st = apl_run_ap(v, s, t, n, delta, grad, &r, &err);
    FUZZ_EXPECT(st == APL_OK, "%s failed on valid input (n %zu, delta %g): %s", name, n, delta,
                err.msg);
    if (st != APL_OK)
        return;
    /* The one acceptance rule (apl_accept): counts, tolerance, the exact zero pattern (with its
     * one exception, a negative within rounding distance of a window start), loss. */
    apl_verdict ag;
    apl_accept_ap(s, t, n, delta, grad, &r, g64, ref, &ag);
    char why[APL_MSG_LEN];
    apl_verdict_format(&ag, why, sizeof why);
    FUZZ_EXPECT(ag.pass, "%s disagrees with the reference (n %zu, delta %g, %zu positives): %s",
                name, n, delta, ref->positives, why);
    /* Deterministic: the same bits again. */
    for (size_t j = 0; j < n; j++)
        again[j] = NAN;
    apl_result r2;
    st = apl_run_ap(v, s, t, n, delta, again, &r2, &err);
    FUZZ_EXPECT(st == APL_OK && memcmp(grad, again, n * sizeof *grad) == 0 &&
                    memcmp(&r.loss, &r2.loss, sizeof r.loss) == 0,
                "%s: a second run gives different bits", name);
}

static void run_variants(const float *s, const int8_t *t, size_t n, double delta)
{
    const size_t n1 = n ? n : 1;
    double *g64 = malloc(n1 * sizeof *g64);
    float *grad = malloc(n1 * sizeof *grad), *again = malloc(n1 * sizeof *again);
    FUZZ_ASSERT(g64 && grad && again, "out of memory for %zu elements", n);
    apl_error err = {0};
    apl_result ref;
    apl_status st = apl_reference_ap(s, t, n, delta, g64, &ref, &err);
    findings = 0;
    size_t count;
    const apl_variant *v = apl_variants(&count);
    if (st != APL_OK) {
        /* The readers accept what apl_check_inputs rejects only if the checks part ways; then
         * every variant must refuse it the same way (apl_run checks first). */
        FUZZ_ASSERT(st == APL_ERR_INPUT, "reference failed: %s", err.msg);
        for (size_t i = 0; i < count; i++)
            if (v[i].device == APL_CPU && apl_variant_runnable(&v[i], NULL)) {
                apl_result r;
                apl_status sv = apl_run_ap(&v[i], s, t, n, delta, grad, &r, &err);
                FUZZ_EXPECT(sv == st, "%s: status %d on input the reference rejects", v[i].name,
                            (int)sv);
            }
    } else {
        FUZZ_ASSERT(ref.loss >= 0.0 && ref.loss <= 1.0, "reference loss %.17g outside [0, 1]",
                    ref.loss);
        for (size_t i = 0; i < count; i++)
            if (v[i].device == APL_CPU && apl_variant_runnable(&v[i], NULL))
                check_variant(&v[i], s, t, n, delta, g64, &ref, grad, again);
    }
    FUZZ_ASSERT(findings == 0, "%d findings on this input (n %zu, delta %g)", findings, n, delta);
    free(g64);
    free(grad);
    free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    const double delta = delta_table[data[0] & 15];
    size_t llen = (size_t)data[1] | (size_t)data[2] << 8;
    data += 3;
    size -= 3;
    if (llen > size)
        llen = size;
    const char *lpath = fuzz_write_file(0, "logits.npy", data, llen);
    const char *tpath = fuzz_write_file(1, "targets.npy", data + llen, size - llen);

    /* cli/aploss.c load_files(): logits, then targets, then the shapes must be equal. */
    float *s = NULL;
    int8_t *t = NULL;
    apl_shape ls, ts;
    apl_error err = {0};
    if (apl_npy_read_logits(lpath, &s, &ls, &err) != APL_OK) {
        FUZZ_ASSERT(s == NULL, "logits: failed but returned data");
        return 0;
    }
    if (apl_npy_read_targets(tpath, &t, &ts, &err) != APL_OK) {
        FUZZ_ASSERT(t == NULL, "targets: failed but returned data");
        free(s);
        return 0;
    }
    size_t n = apl_shape_count(&ls);
    if (apl_shape_equal(&ls, &ts) && n <= MAX_ELEMENTS)
        run_variants(s, t, n, delta);
    free(s);
    free(t);
    return 0;
}
