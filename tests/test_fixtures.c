/* test_fixtures.c: the cases computed by the original PyTorch code (tests/cases/ap/<name>/:
 * logits.npy, targets.npy, grad_f64.npy from the seed run in float64, expected.json; see
 * tests/cases/README.md). The
 * reference must reproduce grad_f64 and loss_f64 to near double precision; every runnable
 * variant must meet the SPEC's tolerance against them. Every case directory found is tested. */
#define _DEFAULT_SOURCE
#include "aploss/harness.h"
#include "check.h"

#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static double json_number(const char *path, const char *key)
{
    FILE *f = fopen(path, "rb");
    char buf[4096] = {0}, pat[64];
    if (!f)
        return NAN;
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[len] = '\0';
    snprintf(pat, sizeof pat, "\"%s\"", key);
    const char *p = strstr(buf, pat);
    if (!p || !(p = strchr(p, ':')))
        return NAN;
    return strtod(p + 1, NULL);
}

static void run_case(const char *dir, const char *name)
{
    char lp[1024], tp[1024], gp[1024], jp[1024];
    snprintf(lp, sizeof lp, "%.700s/%.250s/logits.npy", dir, name);
    snprintf(tp, sizeof tp, "%.700s/%.250s/targets.npy", dir, name);
    snprintf(gp, sizeof gp, "%.700s/%.250s/grad_f64.npy", dir, name);
    snprintf(jp, sizeof jp, "%.700s/%.250s/expected.json", dir, name);
    double delta = json_number(jp, "delta"), loss64 = json_number(jp, "loss_f64");
    double npos = json_number(jp, "positives");
    CHECK(isfinite(delta) && isfinite(loss64) && isfinite(npos), "%s: cannot read expected.json",
          name);
    float *s = NULL;
    int8_t *t = NULL;
    double *g64 = NULL, *ref = NULL;
    float *grad = NULL;
    apl_shape ls, ts, gs;
    apl_error err = {0};
    CHECK(apl_npy_read_logits(lp, &s, &ls, &err) == APL_OK, "%s", err.msg);
    CHECK(apl_npy_read_targets(tp, &t, &ts, &err) == APL_OK, "%s", err.msg);
    CHECK(apl_npy_read_f64(gp, &g64, &gs, &err) == APL_OK, "%s", err.msg);
    if (!s || !t || !g64)
        goto out;
    size_t n = apl_shape_count(&ls);
    CHECK(apl_shape_count(&ts) == n && apl_shape_count(&gs) == n, "%s: sizes differ", name);
    ref = malloc((n + 1) * sizeof *ref);
    grad = malloc((n + 1) * sizeof *grad);

    /* The reference against the seed's float64 run: agreement to ~1e-12, far inside the SPEC. */
    apl_result r0;
    CHECK(apl_reference_ap(s, t, n, delta, ref, &r0, &err) == APL_OK, "%s: %s", name, err.msg);
    double max64 = 0.0, maxerr = 0.0;
    for (size_t j = 0; j < n; j++) {
        max64 = fmax(max64, fabs(g64[j]));
        maxerr = fmax(maxerr, fabs(ref[j] - g64[j]));
    }
    printf("%-16s %5zu elements, %3zu positives, delta %g: reference max_rel_err %.2e, loss_err "
           "%.2e\n",
           name, n, r0.positives, delta, max64 > 0 ? maxerr / max64 : maxerr,
           fabs(r0.loss - loss64));
    CHECK(maxerr <= 1e-12 * max64, "%s: reference gradient off by %g (max |g64| %g)", name, maxerr,
          max64);
    CHECK(fabs(r0.loss - loss64) <= 1e-12, "%s: reference loss %.17g, seed %.17g", name, r0.loss,
          loss64);
    CHECK((double)r0.positives == npos, "%s: %zu positives, expected.json says %g", name,
          r0.positives, npos);

    size_t count;
    const apl_variant *v = apl_variants(&count);
    for (size_t i = 0; i < count; i++) {
        if (!apl_variant_runnable(&v[i], NULL))
            continue;
        apl_result r;
        apl_status st = apl_run_ap(&v[i], s, t, n, delta, grad, &r, &err);
        CHECK(st == APL_OK, "%s/%s: %s", name, v[i].name, err.msg);
        if (st != APL_OK)
            continue;
        /* Against the seed's float64 run: its gradient and loss, the reference's counts. */
        apl_result seed = r0;
        seed.loss = loss64;
        apl_verdict ag;
        apl_accept_ap(s, t, n, delta, grad, &r, g64, &seed, &ag);
        char why[APL_MSG_LEN];
        apl_verdict_format(&ag, why, sizeof why);
        printf("  %-18s %s\n", v[i].name, why);
        CHECK(ag.pass, "%s/%s (against the seed's float64 run): %s", name, v[i].name, why);
    }
out:
    free(s), free(t), free(g64), free(ref), free(grad);
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : APL_CASES_DIR;
    int cases = check_for_each_case(dir, run_case);
    if (cases < 0)
        return 1;
    CHECK(cases >= 5, "found %d fixture cases in %s, expected at least 5", cases, dir);
    return check_report("test_fixtures");
}
