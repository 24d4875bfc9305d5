/* test_gpu.c: every GPU row of the variant table against the double-precision reference, on
 * generated inputs (sizes, distributions, deltas, a dense-positive case whose 2|P| segments do
 * not fit in shared memory) and hand-made edge cases (no elements, no positives, one positive,
 * ties, a negative exactly at the pruning threshold), plus determinism: two runs of the same
 * input give the same bits, and the device-resident entry point (device_fn, run through
 * apl_gpu_bench_run as the benchmarks time it) gives bitwise the host entry point's answer.
 * The same for aLRP Loss on the GPU rows that implement it (alrp_cases: grad_e and both losses
 * too, device_fn through apl_gpu_bench_run_loss; test_alrp checks their host entry on the
 * fixtures, edge cases, tie grids and the foot case).
 *
 * Exit code 77 (CTest: skipped), with "test_gpu: skipped: no CUDA device (reason)", where a GPU
 * variant cannot run: no CUDA device, or a binary built without CUDA. With APL_REQUIRE_GPU=1
 * that is a failure (exit 1, "test_gpu: FAILED: APL_REQUIRE_GPU=1 but ..."), and a driver that
 * fails where a device node exists is always one. "test_gpu --probe" answers only that. */
#include "aploss/harness.h"
#include "check.h"
#include "kernels.h" /* apl_cuda_sorted_shared_segments */

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* One variant on one input: apl_accept against the reference (counts, tolerance, zero pattern,
 * loss), bitwise determinism, and device_fn giving fn's bits. */
static void check_variant(const apl_variant *v, const char *label, const float *s,
                          const int8_t *t, size_t n, double delta, const double *g64,
                          const apl_result *ref, const float *g_cpu)
{
    size_t m = n ? n : 1;
    float *g1 = malloc(m * sizeof *g1), *g2 = malloc(m * sizeof *g2);
    CHECK(g1 && g2, "cannot allocate %zu gradients", n);
    if (!g1 || !g2)
        goto out;
    /* Poison the outputs: a variant must write every element. */
    memset(g1, 0xff, m * sizeof *g1);
    memset(g2, 0x7f, m * sizeof *g2);
    apl_error err = {0};
    apl_result r1, r2;
    apl_status st = apl_run_ap(v, s, t, n, delta, g1, &r1, &err);
    CHECK(st == APL_OK, "%s on %s: %s", v->name, label, err.msg);
    if (st != APL_OK)
        goto out;
    /* The one acceptance rule: counts, tolerance, the zero pattern (ignored, pruned, below
     * every ramp, P empty), loss. */
    apl_verdict ag;
    apl_accept_ap(s, t, n, delta, g1, &r1, g64, ref, &ag);
    char why[APL_MSG_LEN];
    apl_verdict_format(&ag, why, sizeof why);
    printf("  %-20s %-28s %s\n", v->name, label, why);
    CHECK(ag.pass, "%s on %s: %s", v->name, label, why);

    /* Information, not a check: the sorted GPU variants share thrust_sorted.inl's integer sums
     * and double steps with thrust_sorted_cpu (no FMA on either side), so their gradients are
     * expected to be bitwise the CPU's. */
    if (g_cpu && strstr(v->name, "sorted")) {
        size_t differ = 0;
        for (size_t j = 0; j < n; j++)
            differ += memcmp(&g1[j], &g_cpu[j], sizeof *g1) != 0;
        printf("  %-20s %-28s %zu of %zu gradients differ in bits from thrust_sorted_cpu\n",
               v->name, label, differ, n);
    }

    st = apl_run_ap(v, s, t, n, delta, g2, &r2, &err);
    CHECK(st == APL_OK, "%s on %s (second run): %s", v->name, label, err.msg);
    if (st == APL_OK) {
        CHECK(memcmp(g1, g2, n * sizeof *g1) == 0 && memcmp(&r1.loss, &r2.loss, sizeof r1.loss) == 0,
              "%s on %s: two runs differ (not deterministic)", v->name, label);
    }

    /* The device-resident entry point, as the benchmarks time it: the same bits as the host one. */
    CHECK(v->device_fn != NULL, "%s: GPU row without a device_fn", v->name);
    if (v->device_fn) {
        apl_gpu_bench *b = NULL;
        apl_result r3 = {0};
        double sec = -1.0;
        memset(g2, 0x7f, m * sizeof *g2);
        st = apl_gpu_bench_create(s, t, n, &b, &err);
        CHECK(st == APL_OK, "%s on %s: apl_gpu_bench_create: %s", v->name, label, err.msg);
        if (st == APL_OK)
            st = apl_gpu_bench_run(b, v, delta, &r3, &sec, &err);
        if (b)
            CHECK(st == APL_OK, "%s on %s: apl_gpu_bench_run: %s", v->name, label, err.msg);
        if (st == APL_OK) {
            CHECK(sec >= 0.0, "%s on %s: event time %g s", v->name, label, sec);
            st = apl_gpu_bench_grad(b, g2, &err);
            CHECK(st == APL_OK, "%s on %s: apl_gpu_bench_grad: %s", v->name, label, err.msg);
        }
        if (st == APL_OK) {
            size_t differ = 0;
            for (size_t j = 0; j < n; j++)
                differ += memcmp(&g1[j], &g2[j], sizeof *g1) != 0;
            CHECK(differ == 0 && memcmp(&r1.loss, &r3.loss, sizeof r1.loss) == 0 &&
                      r1.positives == r3.positives && r1.valid_negatives == r3.valid_negatives,
                  "%s on %s: device_fn differs from fn: %zu of %zu gradients, loss %.17g vs "
                  "%.17g, counts %zu/%zu vs %zu/%zu",
                  v->name, label, differ, n, r3.loss, r1.loss, r3.positives, r3.valid_negatives,
                  r1.positives, r1.valid_negatives);
        }
        apl_gpu_bench_destroy(b);
    }
out:
    free(g1), free(g2);
}

/* The reference once, then every GPU variant. */
static void run_all(const apl_variant *v, size_t count, const char *label, const float *s,
                    const int8_t *t, size_t n, double delta)
{
    double *g64 = malloc((n ? n : 1) * sizeof *g64);
    CHECK(g64 != NULL, "cannot allocate %zu gradients", n);
    if (!g64)
        return;
    apl_error err = {0};
    apl_result ref;
    apl_status st = apl_reference_ap(s, t, n, delta, g64, &ref, &err);
    CHECK(st == APL_OK, "reference on %s: %s", label, err.msg);
    if (st == APL_OK) {
        printf("case %s: %zu elements, delta %g: %zu positives, %zu valid negatives, loss %.9f\n",
               label, n, delta, ref.positives, ref.valid_negatives, ref.loss);
        /* The CPU build of the Thrust source, where this binary has it. */
        const apl_variant *cpu = apl_variant_find("thrust_sorted_cpu");
        float *g_cpu = NULL;
        apl_result r_cpu;
        if (cpu && apl_variant_runnable(cpu, &err) && (g_cpu = malloc((n ? n : 1) * sizeof *g_cpu)) &&
            apl_run_ap(cpu, s, t, n, delta, g_cpu, &r_cpu, &err) != APL_OK) {
            free(g_cpu);
            g_cpu = NULL;
        }
        for (size_t i = 0; i < count; i++)
            if (v[i].device == APL_GPU)
                check_variant(&v[i], label, s, t, n, delta, g64, &ref, g_cpu);
        free(g_cpu);
    }
    free(g64);
}

static void generated(const apl_variant *v, size_t count, const apl_gen_params *g, double delta)
{
    size_t n;
    apl_error err = {0};
    if (apl_gen_count(g, &n, &err) != APL_OK) {
        CHECK(0, "generator: %s", err.msg);
        return;
    }
    float *s = malloc(n * sizeof *s);
    int8_t *t = malloc(n);
    CHECK(s && t, "cannot allocate %zu elements", n);
    if (s && t) {
        CHECK(apl_generate(g, s, t, &err) == APL_OK, "generate: %s", err.msg);
        char label[96];
        snprintf(label, sizeof label, "%zux%zux%zu/%s/pos%g", g->batch, g->anchors, g->classes,
                 apl_dist_name(g->dist), g->pos_rate);
        run_all(v, count, label, s, t, n, delta);
    }
    free(s), free(t);
}

static void hand_made(const apl_variant *v, size_t count)
{
    /* No elements at all. */
    run_all(v, count, "empty", NULL, NULL, 0, 1.0);
    { /* No positives: loss 0, every gradient 0. */
        float s[] = {0.5f, -1.0f, 2.0f, 3.0f};
        int8_t t[] = {0, -1, 0, 0};
        run_all(v, count, "no positives", s, t, 4, 1.0);
    }
    { /* Everything ignored but one positive. */
        float s[] = {0.5f, -1.0f, 2.0f};
        int8_t t[] = {-1, 1, -1};
        run_all(v, count, "one positive, rest ignored", s, t, 3, 1.0);
    }
    { /* One positive among negatives on both sides of its ramp and below the threshold. */
        float s[] = {-3.0f, 0.0f, 0.25f, 0.75f, 1.0f, 1.5f, 2.0f, 4.0f};
        int8_t t[] = {0, 0, 0, 1, 0, 0, -1, 0};
        run_all(v, count, "one positive", s, t, 8, 0.5);
    }
    { /* Ties: equal positives, negatives equal to positives, equal negatives. */
        float s[] = {1.0f, 1.0f, 1.0f, 1.0f, 0.5f, 0.5f, 2.0f, 2.0f, 1.0f, 0.0f};
        int8_t t[] = {1, 1, 0, 0, 1, 0, 0, 1, -1, 0};
        run_all(v, count, "ties", s, t, 10, 1.0);
    }
    { /* The threshold min positive - delta = 0.5 exactly: at it valid (H = 0), below pruned. */
        float s[] = {1.0f, 0.5f, nextafterf(0.5f, 0.0f), 1.25f, 3.0f};
        int8_t t[] = {1, 0, 0, 0, 1};
        run_all(v, count, "negative at the threshold", s, t, 5, 0.5);
    }
}

/* Whether the GPU rows can run. 0: yes. 77: skipped (no CUDA device, or built without CUDA).
 * 1: a failure: the driver failed (APL_ERR_CUDA, e.g. older than the CUDA runtime needs) where a
 * device node exists, or APL_REQUIRE_GPU=1 and the rows cannot run. */
static int gpu_rows_usable(const apl_variant *v, size_t count)
{
    const int required = check_require_gpu();
    size_t gpu_rows = 0;
    for (size_t i = 0; i < count; i++) {
        if (v[i].device != APL_GPU)
            continue;
        gpu_rows++;
        apl_error why = {0};
        if (apl_variant_runnable(&v[i], &why))
            continue;
        if (why.code == APL_ERR_CUDA) {
            fprintf(stderr, "test_gpu: FAILED: %s: the CUDA driver failed where a GPU device "
                            "node exists (not a machine without a GPU): %s\n", v[i].name, why.msg);
            return 1;
        }
        /* apl_cuda_device_count's message already starts "no CUDA device: ". */
        const char *reason = why.msg, *prefix = "no CUDA device: ";
        if (strncmp(reason, prefix, strlen(prefix)) == 0)
            reason += strlen(prefix);
        if (required) {
            fprintf(stderr, "test_gpu: FAILED: APL_REQUIRE_GPU=1 but %s cannot run: no CUDA "
                            "device (%s)\n", v[i].name, reason);
            return 1;
        }
        printf("test_gpu: skipped: no CUDA device (%s)\n", reason);
        return 77;
    }
    if (gpu_rows == 0) {
        if (required) {
            fprintf(stderr, "test_gpu: FAILED: APL_REQUIRE_GPU=1 but the table has no GPU rows\n");
            return 1;
        }
        printf("test_gpu: skipped: no CUDA device (no GPU variants in the table)\n");
        return 77;
    }
    return 0;
}

/* n elements with exactly np positives (every (n / np)-th index), uniform logits in [-4, 4), about
 * 5% ignored, the rest negatives: a fixed segment count S = 2 np for cuda_sorted. */
static void exact_positives(const apl_variant *v, size_t count, const char *label, size_t np,
                            size_t n)
{
    float *s = malloc(n * sizeof *s);
    int8_t *t = malloc(n);
    CHECK(s && t && np > 0 && np <= n, "cannot build %zu elements with %zu positives", n, np);
    if (s && t && np > 0 && np <= n) {
        uint64_t x = 0x9e3779b97f4a7c15ULL;
        const size_t step = n / np;
        for (size_t j = 0; j < n; j++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            s[j] = (float)((double)(x >> 40) * 0x1p-24 * 8.0 - 4.0);
            t[j] = (x >> 20) % 20 == 0 ? -1 : 0;
        }
        for (size_t i = 0; i < np; i++)
            t[i * step] = 1;
        run_all(v, count, label, s, t, n, 1.0);
    }
    free(s), free(t);
}

/* The code paths a generated input does not reach (issue 13): the exact fallback of the segment
 * variants (positives spanning more than APL_SEGMENT_MAX_SPAN deltas; |s| above
 * APL_SEGMENT_MAX_MAGNITUDE deltas), and both sides of cuda_sorted's shared|global histogram
 * boundary on this device. */
static void paths(const apl_variant *v, size_t count)
{
    apl_gen_params g;
    apl_gen_defaults(&g);
    g.anchors = 2000, g.classes = 20, g.pos_rate = 0.05, g.seed = APL_DEFAULT_SEED + 99;
    size_t n;
    apl_error err = {0};
    if (apl_gen_count(&g, &n, &err) != APL_OK) {
        CHECK(0, "generator: %s", err.msg);
        return;
    }
    float *s = malloc(n * sizeof *s);
    int8_t *t = malloc(n);
    CHECK(s && t, "cannot allocate %zu elements", n);
    if (s && t && apl_generate(&g, s, t, &err) == APL_OK) {
        /* One positive 10000 deltas below the rest: span > 4096 delta. */
        s[7] = -10000.0f, t[7] = 1;
        run_all(v, count, "exact fallback (span)", s, t, n, 1.0);
        /* Every logit shifted to 3e7 (> 2^24 delta): s -+ delta loses the ramp in the segments. */
        for (size_t j = 0; j < n; j++)
            s[j] = 3e7f + s[j] * 64.0f;
        s[7] = 3e7f;
        run_all(v, count, "exact fallback (magnitude)", s, t, n, 1.0);
    }
    free(s), free(t);

    const size_t segs = apl_cuda_sorted_shared_segments();
    CHECK(segs >= 4, "cuda_sorted's shared-memory limit: %zu segments", segs);
    if (segs >= 4) {
        const size_t np = segs / 2; /* S = 2 np: the largest shared-path case, then one more */
        printf("cuda_sorted: shared-memory histogram up to %zu segments (%zu positives)\n", segs,
               np);
        exact_positives(v, count, "boundary: shared path", np, 20 * np);
        exact_positives(v, count, "boundary: global path", np + 1, 20 * (np + 1));
    }
}

/* ---- aLRP Loss (docs/SPEC_ALRP.md) ---- */

/* One aLRP row on problem p: apl_accept against the reference (gradient, grad_e, both losses,
 * counts, zero pattern), two runs bitwise, and device_fn (apl_gpu_bench_run_loss, as the
 * benchmarks time it) bitwise fn, grad_e and loss_loc included. */
static void check_alrp_variant(const apl_variant *v, const char *label, const apl_problem *p,
                               const double *g64, const double *e64, const apl_result *ref)
{
    const size_t m = p->n ? p->n : 1, ma = p->n_aux ? p->n_aux : 1;
    float *g[3] = {malloc(m * sizeof(float)), malloc(m * sizeof(float)),
                   malloc(m * sizeof(float))};
    float *ge[3] = {malloc(ma * sizeof(float)), malloc(ma * sizeof(float)),
                    malloc(ma * sizeof(float))};
    apl_result r[3] = {{0}};
    CHECK(g[0] && g[1] && g[2] && ge[0] && ge[1] && ge[2], "cannot allocate %zu gradients",
          p->n);
    if (!g[0] || !g[1] || !g[2] || !ge[0] || !ge[1] || !ge[2])
        goto out;
    for (int k = 0; k < 3; k++) { /* poison: every entry of both outputs must be written */
        memset(g[k], 0xff, m * sizeof(float));
        memset(ge[k], 0xff, ma * sizeof(float));
    }
    apl_error err = {0};
    for (int k = 0; k < 2; k++) {
        const apl_output out = {g[k], ge[k]};
        apl_status st = apl_run(v, p, &out, &r[k], &err);
        CHECK(st == APL_OK, "%s on alrp %s (run %d): %s", v->name, label, k + 1, err.msg);
        if (st != APL_OK)
            goto out;
    }
    apl_verdict ag;
    apl_accept(p, g[0], ge[0], &r[0], g64, e64, ref, &ag);
    char why[APL_MSG_LEN];
    apl_verdict_format(&ag, why, sizeof why);
    printf("  %-20s alrp %-23s %s\n", v->name, label, why);
    CHECK(ag.pass, "%s on alrp %s: %s", v->name, label, why);
    CHECK(!memcmp(g[0], g[1], p->n * sizeof(float)) &&
              !memcmp(ge[0], ge[1], p->n_aux * sizeof(float)) &&
              !memcmp(&r[0].loss, &r[1].loss, sizeof r[0].loss) &&
              !memcmp(&r[0].loss_loc, &r[1].loss_loc, sizeof r[0].loss_loc),
          "%s on alrp %s: two runs differ (not deterministic)", v->name, label);

    CHECK(v->device_fn != NULL, "%s: GPU row without a device_fn", v->name);
    if (v->device_fn) {
        apl_gpu_bench *b = NULL;
        double sec = -1.0;
        apl_status st = apl_gpu_bench_create_problem(p, &b, &err);
        CHECK(st == APL_OK, "%s on alrp %s: apl_gpu_bench_create_problem: %s", v->name, label,
              err.msg);
        if (st == APL_OK) {
            st = apl_gpu_bench_run_loss(b, v, APL_LOSS_ALRP, p->delta, &r[2], &sec, &err);
            CHECK(st == APL_OK, "%s on alrp %s: apl_gpu_bench_run_loss: %s", v->name, label,
                  err.msg);
        }
        if (st == APL_OK) {
            CHECK(sec >= 0.0, "%s on alrp %s: event time %g s", v->name, label, sec);
            st = apl_gpu_bench_grad(b, g[2], &err);
            if (st == APL_OK)
                st = apl_gpu_bench_grad_aux(b, ge[2], &err);
            CHECK(st == APL_OK, "%s on alrp %s: copying the device outputs: %s", v->name, label,
                  err.msg);
        }
        if (st == APL_OK) {
            size_t dg = 0, de = 0;
            for (size_t j = 0; j < p->n; j++)
                dg += memcmp(&g[0][j], &g[2][j], sizeof(float)) != 0;
            for (size_t k = 0; k < p->n_aux; k++)
                de += memcmp(&ge[0][k], &ge[2][k], sizeof(float)) != 0;
            CHECK(dg == 0 && de == 0 && !memcmp(&r[0].loss, &r[2].loss, sizeof r[0].loss) &&
                      !memcmp(&r[0].loss_loc, &r[2].loss_loc, sizeof r[0].loss_loc) &&
                      r[0].positives == r[2].positives &&
                      r[0].valid_negatives == r[2].valid_negatives,
                  "%s on alrp %s: device_fn differs from fn: %zu of %zu gradients, %zu of %zu "
                  "grad_e, loss_cls %.17g vs %.17g, loss_loc %.17g vs %.17g", v->name, label, dg,
                  p->n, de, p->n_aux, r[2].loss, r[0].loss, r[2].loss_loc, r[0].loss_loc);
        }
        apl_gpu_bench_destroy(b);
    }
out:
    for (int k = 0; k < 3; k++)
        free(g[k]), free(ge[k]);
}

/* The reference once, then every GPU row that implements aLRP. e: one error per positive. */
static void run_all_alrp(const apl_variant *v, size_t count, const char *label, const float *s,
                         const int8_t *t, size_t n, double delta, const float *e, size_t np)
{
    const apl_problem p = {.loss = APL_LOSS_ALRP, .logits = s, .targets = t, .n = n,
                           .delta = delta, .aux = e, .n_aux = np};
    double *g64 = malloc((n ? n : 1) * sizeof *g64), *e64 = malloc((np ? np : 1) * sizeof *e64);
    CHECK(g64 && e64, "cannot allocate %zu gradients", n);
    apl_error err = {0};
    apl_result ref;
    apl_status st = g64 && e64 ? apl_reference(&p, g64, e64, &ref, &err) : APL_ERR_NOMEM;
    CHECK(st == APL_OK, "alrp reference on %s: %s", label, err.msg);
    if (st == APL_OK) {
        printf("case alrp %s: %zu elements, delta %g: %zu positives, %zu valid negatives, "
               "loss_cls %.9f, loss_loc %.9f\n", label, n, delta, ref.positives,
               ref.valid_negatives, ref.loss, ref.loss_loc);
        for (size_t i = 0; i < count; i++)
            if (v[i].device == APL_GPU && apl_variant_has_loss(&v[i], APL_LOSS_ALRP))
                check_alrp_variant(&v[i], label, &p, g64, e64, &ref);
    }
    free(g64), free(e64);
}

/* A generated input with its e (apl_generate_aux); edit (may be NULL) changes the logits and
 * targets first (e is generated for the edited targets). */
static void generated_alrp(const apl_variant *v, size_t count, const char *label,
                           const apl_gen_params *g, double delta,
                           void (*edit)(float *, int8_t *, size_t))
{
    size_t n = 0, np = 0;
    apl_error err = {0};
    if (apl_gen_count(g, &n, &err) != APL_OK) {
        CHECK(0, "generator: %s", err.msg);
        return;
    }
    float *s = malloc(n * sizeof *s), *e = NULL;
    int8_t *t = malloc(n);
    CHECK(s && t, "cannot allocate %zu elements", n);
    if (s && t && apl_generate(g, s, t, &err) == APL_OK) {
        if (edit)
            edit(s, t, n);
        for (size_t j = 0; j < n; j++)
            np += t[j] == 1;
        e = malloc((np ? np : 1) * sizeof *e);
        CHECK(e && apl_generate_aux(g, APL_LOSS_ALRP, t, n, e, np, &err) == APL_OK,
              "generate e for %s: %s", label, err.msg);
        if (e)
            run_all_alrp(v, count, label, s, t, n, delta, e, np);
    }
    free(s), free(t), free(e);
}

static void ties_grid(float *s, int8_t *t, size_t n) /* logits on a 1/4 grid: ties, -0 and +0 */
{
    (void)t;
    for (size_t j = 0; j < n; j++)
        s[j] = roundf(s[j] * 4.0f) / 4.0f;
}
static void span_edit(float *s, int8_t *t, size_t n) /* one positive 10000 deltas below */
{
    (void)n;
    s[7] = -10000.0f, t[7] = 1;
}
static void magnitude_edit(float *s, int8_t *t, size_t n) /* |s| > 2^24 delta */
{
    for (size_t j = 0; j < n; j++)
        s[j] = 3e7f + s[j] * 64.0f;
    s[7] = 3e7f, t[7] = 1;
}

static void alrp_cases(const apl_variant *v, size_t count)
{
    /* Edge cases: nothing, no positives, no valid negatives, one positive whose b is below
     * eps (1e-6 into its ramp), tied positives with different e. */
    run_all_alrp(v, count, "empty", NULL, NULL, 0, 1.0, NULL, 0);
    {
        float s[] = {0.5f, -1.0f, 2.0f, 0.0f};
        int8_t t[] = {0, 0, -1, 0};
        run_all_alrp(v, count, "no positives", s, t, 4, 1.0, NULL, 0);
    }
    {
        float s[] = {1.0f, 1.5f, -3.0f, 4.0f}, e[] = {0.5f, 1.25f};
        int8_t t[] = {1, 1, 0, -1};
        run_all_alrp(v, count, "no valid negatives", s, t, 4, 1.0, e, 2);
    }
    {
        float s[] = {2.0f, 0.0f, 0.0f, 1.0000019073486328f, -0.5f}, e[] = {0.3f, 0.7f};
        int8_t t[] = {1, 1, 0, 0, 0};
        run_all_alrp(v, count, "b below eps", s, t, 5, 1.0, e, 2);
    }
    {
        float s[] = {1.0f, 1.0f, -0.0f, 0.0f, 0.5f, 1.0f, 0.25f, -0.0f, 2.0f},
              e[] = {0.1f, 1.9f, 0.4f, 1.2f, 0.0f, 0.7f};
        int8_t t[] = {1, 1, 1, 1, 0, 0, 0, 1, 1};
        run_all_alrp(v, count, "ties, -0 and +0", s, t, 9, 1.0, e, 6);
    }
    apl_gen_params g;
    apl_gen_defaults(&g);
    g.anchors = 2000, g.classes = 20, g.pos_rate = 0.05;
    static const double deltas[] = {0.1, 1.0, 4.0};
    for (int d = 0; d < 3; d++) {
        char label[64];
        g.dist = (apl_dist)d, g.seed = APL_DEFAULT_SEED + 50 + (uint64_t)d;
        snprintf(label, sizeof label, "2000x20/%s/delta %g", apl_dist_name(g.dist), deltas[d]);
        generated_alrp(v, count, label, &g, deltas[d], NULL);
    }
    g.dist = APL_DIST_MID, g.seed = APL_DEFAULT_SEED + 60;
    generated_alrp(v, count, "2000x20 ties (1/4 grid)", &g, 0.5, ties_grid);
    /* The exact fallback (cuda_sorted hands the problem to cuda_warp), both ways out of range. */
    g.seed = APL_DEFAULT_SEED + 99;
    generated_alrp(v, count, "exact fallback (span)", &g, 1.0, span_edit);
    generated_alrp(v, count, "exact fallback (magnitude)", &g, 1.0, magnitude_edit);
    /* 15000 positives: 2|P| = 30000 segments, cuda_sorted's global-atomics path. */
    g.anchors = 60000, g.classes = 1, g.pos_rate = 0.25, g.seed = APL_DEFAULT_SEED + 61;
    generated_alrp(v, count, "60000x1 pos 0.25 (global path)", &g, 1.0, NULL);
}

int main(int argc, char **argv)
{
    size_t count;
    const apl_variant *v = apl_variants(&count);
    int usable = gpu_rows_usable(v, count);
    /* --probe: only that answer (tests/test_require_gpu.sh asks it before running the suite). */
    if (usable != 0 || (argc > 1 && strcmp(argv[1], "--probe") == 0))
        return usable;

    hand_made(v, count);
    paths(v, count);
    alrp_cases(v, count);

    apl_gen_params g;
    apl_gen_defaults(&g);
    static const double deltas[] = {0.25, 1.0, 4.0};
    g.anchors = 2000, g.classes = 20; /* 4e4 elements, every distribution and delta */
    for (int d = 0; d < 3; d++)
        for (int k = 0; k < 3; k++) {
            g.dist = (apl_dist)d, g.pos_rate = 0.05;
            g.seed = APL_DEFAULT_SEED + (uint64_t)(d * 10 + k);
            generated(v, count, &g, deltas[k]);
        }
    /* Dense positives: 2|P| = 30000 segments, too many for one block's shared memory, so
     * cuda_sorted takes its global-atomics path. */
    g.anchors = 60000, g.classes = 1, g.pos_rate = 0.25, g.dist = APL_DIST_MID;
    g.seed = APL_DEFAULT_SEED;
    generated(v, count, &g, 1.0);
    /* RetinaNet, one image (2.6e6 elements), and a batch of 8 (2.1e7). */
    apl_gen_defaults(&g);
    for (int d = 0; d < 3; d++) {
        g.dist = (apl_dist)d;
        generated(v, count, &g, 1.0);
    }
    g.batch = 8, g.dist = APL_DIST_MID;
    generated(v, count, &g, 0.5);
    return check_report("test_gpu");
}
