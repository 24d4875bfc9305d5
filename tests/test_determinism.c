/* test_determinism.c: every CPU variant in the table returns bitwise the same gradient and loss
 * every time it runs on the same input: the gradients compared with memcmp, the loss too.
 *
 * Between the runs everything a variant should not depend on is changed: the input is copied to
 * a fresh buffer at a different alignment (offsets of 0 to 3 floats from a 64-byte boundary), the
 * gradient buffer is prefilled with a different pattern (NaN, zeros, 0xff bytes: a variant must
 * write all n entries), and the heap is perturbed so its own work arrays land at other addresses
 * (a vectorised reduction that peels for alignment would change its summation order with them).
 *
 * Inputs come from the one generator (src/generate.c) in each distribution, plus inputs the
 * generator does not make: heavy ties, logits on a coarse grid, huge magnitudes, no positives. */
#define _POSIX_C_SOURCE 200809L

#include "aploss/harness.h"
#include "check.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RUNS 4

typedef struct {
    char name[96];
    float *s;
    int8_t *t;
    size_t n;
    double delta;
} det_case;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int from_generator(det_case *c, size_t anchors, size_t classes, double pos_rate,
                          apl_dist dist, uint64_t seed, double delta)
{
    apl_gen_params g;
    apl_gen_defaults(&g);
    g.anchors = anchors;
    g.classes = classes;
    g.pos_rate = pos_rate;
    g.dist = dist;
    g.seed = seed;
    apl_error err = {0};
    if (apl_gen_count(&g, &c->n, &err) != APL_OK)
        return 0;
    c->s = malloc(c->n * sizeof *c->s);
    c->t = malloc(c->n);
    if (!c->s || !c->t || apl_generate(&g, c->s, c->t, &err) != APL_OK)
        return 0;
    c->delta = delta;
    snprintf(c->name, sizeof c->name, "%s %zux%zu pos %g delta %g", apl_dist_name(dist), anchors,
             classes, pos_rate, delta);
    return 1;
}

/* xorshift64*: inputs the generator does not make, reproducibly. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static double urand(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 0x2545f4914f6cdd1dULL) >> 11) * 0x1p-53;
}

enum { HAND_TIES, HAND_GRID, HAND_HUGE, HAND_NO_POS };

static int hand_made(det_case *c, int kind, size_t n)
{
    c->n = n;
    c->s = malloc(n * sizeof *c->s);
    c->t = malloc(n);
    if (!c->s || !c->t)
        return 0;
    c->delta = 1.0;
    for (size_t j = 0; j < n; j++) {
        double u = urand();
        c->t[j] = (int8_t)(u < 0.05 ? 1 : (u < 0.1 ? -1 : 0));
        switch (kind) {
        case HAND_TIES: c->s[j] = (float)(urand() < 0.5 ? 0.0 : 1.0); break;
        case HAND_GRID: c->s[j] = (float)floor(urand() * 16.0) * 0.125f - 1.0f; break;
        case HAND_HUGE: c->s[j] = (float)((urand() - 0.5) * 2e6) + (c->t[j] == 1 ? 1e5f : 0.0f); break;
        default:
            c->s[j] = (float)urand();
            c->t[j] = c->t[j] == 1 ? 0 : c->t[j];
        }
    }
    static const char *const names[] = {"ties (two values)", "grid of 1/8", "huge magnitudes",
                                        "no positives"};
    snprintf(c->name, sizeof c->name, "%s n %zu", names[kind], n);
    return 1;
}

/* 64-byte aligned copy of the input, shifted by `offset` elements. */
typedef struct {
    void *sbase, *tbase;
    float *s;
    int8_t *t;
} placed;

static int place(placed *p, const det_case *c, size_t offset)
{
    size_t n1 = c->n + 16;
    p->sbase = NULL;
    p->tbase = NULL;
    if (posix_memalign(&p->sbase, 64, n1 * sizeof(float)) != 0 ||
        posix_memalign(&p->tbase, 64, n1) != 0)
        return 0;
    p->s = (float *)p->sbase + offset;
    p->t = (int8_t *)p->tbase + offset;
    memcpy(p->s, c->s, c->n * sizeof *c->s);
    memcpy(p->t, c->t, c->n);
    return 1;
}

static void check_variant(const apl_variant *v, const det_case *c)
{
    float *first = malloc(c->n * sizeof *first);
    float *grad = malloc(c->n * sizeof *grad);
    if (!first || !grad) {
        CHECK(0, "%s / %s: out of memory", v->name, c->name);
        free(first), free(grad);
        return;
    }
    apl_result r0 = {0};
    double t0 = now();
    int runs_ok = 0;
    void *ballast[RUNS] = {0};
    for (int run = 0; run < RUNS; run++) {
        placed p;
        if (!place(&p, c, (size_t)run % 4)) {
            CHECK(0, "%s / %s: out of memory", v->name, c->name);
            free(p.sbase), free(p.tbase);
            break;
        }
        /* A differently sized block held across the run moves the variant's own allocations. */
        ballast[run] = malloc(48 + 1000 * (size_t)run);
        float *out = run == 0 ? first : grad;
        static const unsigned char fill[4] = {0xff, 0x00, 0x7f, 0xa5};
        memset(out, fill[run % 4], c->n * sizeof *out);
        apl_result r;
        apl_error err = {0};
        apl_status st = apl_run_ap(v, p.s, p.t, c->n, c->delta, out, &r, &err);
        CHECK(st == APL_OK, "%s / %s: run %d: %s", v->name, c->name, run, err.msg);
        free(p.sbase), free(p.tbase);
        if (st != APL_OK)
            break;
        if (run == 0) {
            r0 = r;
        } else {
            size_t first_diff = c->n;
            for (size_t j = 0; j < c->n && first_diff == c->n; j++)
                if (memcmp(&first[j], &grad[j], sizeof *grad) != 0)
                    first_diff = j;
            CHECK(first_diff == c->n, "%s / %s: run %d: grad[%zu] = %.9g, first run %.9g",
                  v->name, c->name, run, first_diff,
                  first_diff < c->n ? (double)grad[first_diff] : 0.0,
                  first_diff < c->n ? (double)first[first_diff] : 0.0);
            CHECK(memcmp(&r.loss, &r0.loss, sizeof r.loss) == 0,
                  "%s / %s: run %d: loss %.17g, first run %.17g", v->name, c->name, run, r.loss,
                  r0.loss);
            CHECK(r.positives == r0.positives && r.valid_negatives == r0.valid_negatives,
                  "%s / %s: run %d: counts changed", v->name, c->name, run);
        }
        runs_ok++;
    }
    for (int run = 0; run < RUNS; run++)
        free(ballast[run]);
    printf("  %-18s %-40s %d runs, %8.1f ms each, loss %.12f\n", v->name, c->name, runs_ok,
           runs_ok ? 1e3 * (now() - t0) / runs_ok : 0.0, r0.loss);
    free(first);
    free(grad);
}

int main(void)
{
    det_case cases[16];
    size_t nc = 0;
    int ok = 1;
    /* (anchors, classes): 200k elements, a RetinaNet image (2.6M), and many positives. */
    ok &= from_generator(&cases[nc++], 2500, 80, 0.01, APL_DIST_EARLY, 1, 0.1);
    ok &= from_generator(&cases[nc++], 2500, 80, 0.01, APL_DIST_MID, 2, 1.0);
    ok &= from_generator(&cases[nc++], 2500, 80, 0.01, APL_DIST_LATE, 3, 4.0);
    ok &= from_generator(&cases[nc++], APL_RETINANET_ANCHORS, APL_COCO_CLASSES, 1e-3, APL_DIST_MID,
                         APL_DEFAULT_SEED, 1.0);
    ok &= from_generator(&cases[nc++], 20000, 1, 0.3, APL_DIST_EARLY, 4, 0.5);
    ok &= from_generator(&cases[nc++], 20000, 1, 0.3, APL_DIST_MID, 5, 0.25);
    ok &= hand_made(&cases[nc++], HAND_TIES, 30000);
    ok &= hand_made(&cases[nc++], HAND_GRID, 30000);
    ok &= hand_made(&cases[nc++], HAND_HUGE, 30000);
    ok &= hand_made(&cases[nc++], HAND_NO_POS, 30000);
    if (!ok) {
        fprintf(stderr, "test_determinism: cannot build the inputs\n");
        return 2;
    }

    size_t count, tested = 0;
    const apl_variant *v = apl_variants(&count);
    for (size_t i = 0; i < count; i++) {
        apl_error why = {0};
        if (v[i].device != APL_CPU)
            continue;
        if (!apl_variant_runnable(&v[i], &why)) {
            printf("%s: skipped: %s\n", v[i].name, why.msg);
            continue;
        }
        printf("%s:\n", v[i].name);
        for (size_t k = 0; k < nc; k++)
            check_variant(&v[i], &cases[k]);
        tested++;
    }
    CHECK(tested >= 3, "only %zu CPU variants could run", tested);
    for (size_t k = 0; k < nc; k++)
        free(cases[k].s), free(cases[k].t);
    return check_report("test_determinism");
}
