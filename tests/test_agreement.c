/* test_agreement.c: every runnable variant in the table against the double-precision reference,
 * on generated inputs over a grid of sizes, positive rates, deltas and distributions.
 *
 *   test_agreement small     2e4 elements, every pos rate x delta x distribution
 *   test_agreement medium    8e5 elements, a slice of pos rates x deltas x distributions
 *   test_agreement large D Δ RetinaNet batch 8 (2.1e7 elements), distribution D, delta Δ
 *
 * A variant passes a case when apl_accept passes (counts, SPEC tolerance, zero pattern, loss).
 * GPU rows skip visibly when no device is present. */
#include "aploss/harness.h"
#include "check.h"

#include <stdlib.h>
#include <string.h>

static void run_case(const apl_gen_params *g, double delta)
{
    size_t n;
    apl_error err = {0};
    if (apl_gen_count(g, &n, &err) != APL_OK) {
        CHECK(0, "generator: %s", err.msg);
        return;
    }
    float *s = malloc(n * sizeof *s), *grad = malloc(n * sizeof *grad);
    int8_t *t = malloc(n);
    double *g64 = malloc(n * sizeof *g64);
    CHECK(s && grad && t && g64, "cannot allocate %zu elements", n);
    if (!s || !grad || !t || !g64)
        goto out;
    CHECK(apl_generate(g, s, t, &err) == APL_OK, "generate: %s", err.msg);
    apl_result ref;
    apl_status st = apl_reference_ap(s, t, n, delta, g64, &ref, &err);
    CHECK(st == APL_OK, "reference: %s", err.msg);
    if (st != APL_OK)
        goto out;
    printf("case: %zu elements (%zu x %zu x %zu), %s, pos-rate %g, delta %g: %zu positives, "
           "%zu valid negatives, loss %.9f\n",
           n, g->batch, g->anchors, g->classes, apl_dist_name(g->dist), g->pos_rate, delta,
           ref.positives, ref.valid_negatives, ref.loss);
    size_t count;
    const apl_variant *v = apl_variants(&count);
    for (size_t i = 0; i < count; i++) {
        if (!check_runnable(&v[i])) /* skipped visibly, or a failure (see check.h) */
            continue;
        /* Poison the output: a variant must write every element. */
        memset(grad, 0xff, n * sizeof *grad);
        apl_result r;
        st = apl_run_ap(&v[i], s, t, n, delta, grad, &r, &err);
        CHECK(st == APL_OK, "%s: %s", v[i].name, err.msg);
        if (st != APL_OK)
            continue;
        apl_verdict ag;
        apl_accept_ap(s, t, n, delta, grad, &r, g64, &ref, &ag);
        char why[APL_MSG_LEN];
        apl_verdict_format(&ag, why, sizeof why);
        printf("  %-18s %s\n", v[i].name, why);
        CHECK(ag.pass, "%s: %s", v[i].name, why);
    }
out:
    free(s), free(grad), free(t), free(g64);
}

int main(int argc, char **argv)
{
    static const double deltas[] = {0.1, 0.25, 0.5, 1.0, 2.0, 4.0};
    static const double rates[] = {0.001, 0.01, 0.1, 0.5};
    const char *mode = argc > 1 ? argv[1] : "small";
    apl_gen_params g;
    apl_gen_defaults(&g);
    if (!strcmp(mode, "small")) {
        g.anchors = 1000, g.classes = 20;
        for (int d = 0; d < 3; d++)
            for (int r = 0; r < 4; r++)
                for (int k = 0; k < 6; k++) {
                    g.dist = (apl_dist)d, g.pos_rate = rates[r];
                    g.seed = APL_DEFAULT_SEED + (uint64_t)(d * 100 + r * 10 + k);
                    run_case(&g, deltas[k]);
                }
    } else if (!strcmp(mode, "medium")) {
        g.anchors = 10000, g.classes = 80;
        for (int d = 0; d < 3; d++)
            for (int r = 0; r < 2; r++)
                for (int k = 0; k < 6; k += 2) {
                    g.dist = (apl_dist)d, g.pos_rate = rates[r];
                    run_case(&g, deltas[k + (d == 1)]); /* mid takes the other half of deltas */
                }
    } else if (!strcmp(mode, "large") && argc == 4) {
        g.batch = 8; /* RetinaNet 512x512, COCO: 8 x 32736 x 80 */
        apl_error err = {0};
        if (apl_dist_parse(argv[2], &g.dist, &err) != APL_OK) {
            fprintf(stderr, "%s\n", err.msg);
            return 2;
        }
        run_case(&g, atof(argv[3]));
    } else {
        fprintf(stderr, "usage: test_agreement small | medium | large DIST DELTA\n");
        return 2;
    }
    return check_report("test_agreement");
}
