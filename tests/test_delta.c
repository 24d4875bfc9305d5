/* test_delta.c: the range of delta (docs/SPEC.md, "Delta range"), from 4.9e-324 to 1.7e308.
 * Every runnable variant (CPU and GPU) either agrees with the reference (apl_accept) or refuses
 * the call with APL_ERR_ARG and the one message of apl_check_inputs; inside the range
 * [APL_DELTA_MIN, APL_DELTA_MAX] it must agree, outside it must refuse (the reference too).
 *
 * Two inputs per delta: logits scaled by delta (the ramps overlap, so the segment variants take
 * their fixed-point path, not the exact fallback) and plain O(1) logits (at tiny delta every H is
 * 0 or 1, at huge delta every H is near 1/2; the span checks send the segment variants to their
 * exact fallback at the small end). */
#include "aploss/harness.h"
#include "check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define RANGE_MSG "expected a finite value in [2^-100, 2^100]"

static void one_case(const char *label, const float *s, const int8_t *t, size_t n, double delta)
{
    const int inside = delta >= APL_DELTA_MIN && delta <= APL_DELTA_MAX;
    double *g64 = malloc(n * sizeof *g64);
    float *g = malloc(n * sizeof *g);
    CHECK(g64 && g, "cannot allocate %zu gradients", n);
    if (!g64 || !g)
        goto out;
    apl_error err = {0};
    apl_result ref = {0}, r;
    apl_status st = apl_reference_ap(s, t, n, delta, g64, &ref, &err);
    if (!inside) {
        CHECK_ERR(st, &err, APL_ERR_ARG, RANGE_MSG);
    } else {
        CHECK(st == APL_OK, "reference, %s, delta %g: %s", label, delta, err.msg);
        if (st != APL_OK)
            goto out;
    }
    printf("delta %-12.4g %-8s %s\n", delta, label, inside ? "in range" : "outside the range");
    size_t count;
    const apl_variant *v = apl_variants(&count);
    for (size_t i = 0; i < count; i++) {
        if (!check_runnable(&v[i]))
            continue;
        memset(g, 0xff, n * sizeof *g); /* poison: a variant must write every element */
        st = apl_run_ap(&v[i], s, t, n, delta, g, &r, &err);
        if (!inside) {
            CHECK_ERR(st, &err, APL_ERR_ARG, RANGE_MSG);
            continue;
        }
        CHECK(st == APL_OK, "%s, %s, delta %g: %s", v[i].name, label, delta, err.msg);
        if (st != APL_OK)
            continue;
        apl_verdict ag;
        apl_accept_ap(s, t, n, delta, g, &r, g64, &ref, &ag);
        char line[256];
        apl_verdict_format(&ag, line, sizeof line);
        printf("  %-18s %s\n", v[i].name, line);
        CHECK(ag.pass, "%s, %s, delta %g: %s", v[i].name, label, delta, line);
    }
out:
    free(g64), free(g);
}

int main(void)
{
    /* The ends of double, the float-overflow region of 0.5/delta (1e-39, 1e-45), just outside
     * and just inside both ends of the range, and the ordinary middle. */
    static const double deltas[] = {4.9e-324, 1e-300, 1e-45, 1e-39, 0x1.fffffffffffffp-101,
                                    0x1p-100, 7.9e-31, 1e-20, 1.0, 1e20, 1.2e30, 0x1p100,
                                    0x1.0000000000001p100, 1e38, 1e300, 1.7e308};
    apl_gen_params gp;
    apl_gen_defaults(&gp);
    gp.anchors = 400, gp.classes = 5, gp.pos_rate = 0.05, gp.seed = 4242;
    size_t n;
    apl_error err = {0};
    CHECK(apl_gen_count(&gp, &n, &err) == APL_OK, "generator: %s", err.msg);
    float *base = malloc(n * sizeof *base), *scaled = malloc(n * sizeof *scaled);
    int8_t *t = malloc(n);
    CHECK(base && scaled && t, "cannot allocate %zu elements", n);
    if (!base || !scaled || !t)
        return check_report("test_delta");
    CHECK(apl_generate(&gp, base, t, &err) == APL_OK, "generate: %s", err.msg);
    for (size_t k = 0; k < sizeof deltas / sizeof deltas[0]; k++) {
        const double d = deltas[k];
        /* logits * delta, where that is a finite float with the ramps' proportions (in the
         * range it always is: 2^-100 * 2^-24 and 2^100 * 8 are normal floats). */
        int scalable = 1;
        for (size_t j = 0; j < n && scalable; j++) {
            double x = (double)base[j] * d;
            scaled[j] = (float)x;
            scalable = isfinite(scaled[j]) && (x == 0.0 || fabs(x) >= 0x1p-126);
        }
        if (scalable)
            one_case("scaled", scaled, t, n, d);
        one_case("plain", base, t, n, d);
    }
    free(base), free(scaled), free(t);
    return check_report("test_delta");
}
