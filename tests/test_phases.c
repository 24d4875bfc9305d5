/* test_phases.c: the phased API of the sorted algorithm (include/aploss/phases.h) reproduces the
 * variant `sorted` bit for bit when the elements are split the way a distributed driver splits
 * them: three parts of unequal size, each histogrammed on its own (with and without a memo,
 * different thread counts, portable and AVX2 kernels), the integer histograms summed in two
 * different orders (identical arrays), one finish, and apply per part. Also: the argument and
 * input errors of the phases. */
#include "aploss/harness.h"
#include "aploss/phases.h"
#include "check.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int by_value(const void *x, const void *y)
{
    float a = *(const float *)x, b = *(const float *)y;
    return (a > b) - (a < b);
}

/* Three parts of s/t: [0, c1), [c1, c2), [c2, n). */
static void run_case(const char *name, const float *s, const int8_t *t, size_t n, double delta)
{
    apl_error err = {0};
    const apl_variant *v = apl_variant_find("sorted");
    float *want = malloc((n ? n : 1) * sizeof *want), *got = malloc((n ? n : 1) * sizeof *got);
    uint32_t *memo = malloc((n ? n : 1) * sizeof *memo);
    apl_problem p = apl_ap_problem(s, t, n, delta);
    p.threads = 1;
    apl_result r;
    const apl_output out = {want, NULL};
    CHECK(apl_run(v, &p, &out, &r, &err) == APL_OK, "%s: sorted: %s", name, err.msg);

    size_t np = 0;
    for (size_t j = 0; j < n; j++)
        np += t[j] == 1;
    float *pos = malloc((np ? np : 1) * sizeof *pos);
    for (size_t j = 0, k = 0; j < n; j++)
        if (t[j] == 1)
            pos[k++] = s[j];
    qsort(pos, np, sizeof *pos, by_value);
    CHECK(np > 0, "%s: the case needs positives", name);

    for (int simd = 2; simd >= 0 && np > 0; simd--) { /* AVX-512, AVX2, portable */
        apl_sorted_plan *plan = NULL;
        apl_status st = apl_sorted_plan_create(pos, np, delta, &plan, &err);
        CHECK(st == APL_OK, "%s: plan: %s", name, err.msg);
        if (st != APL_OK)
            break;
        plan->simd = simd;
        const size_t H = apl_sorted_hist_len(plan), cut[4] = {0, n / 7, n / 7 + (n * 5) / 11, n};
        int64_t *h[3], *sum1 = calloc(H, sizeof *sum1), *sum2 = calloc(H, sizeof *sum2);
        size_t nv = 0;
        for (int part = 0; part < 3; part++) {
            h[part] = calloc(H, sizeof *h[part]);
            size_t valid = 0;
            /* Part 1 with no memo, the others with one; 1, 2 and 3 threads. */
            st = apl_sorted_histogram(plan, s + cut[part], t + cut[part], cut[part + 1] - cut[part],
                                      h[part], part == 1 ? NULL : memo + cut[part], part + 1,
                                      &valid, &err);
            CHECK(st == APL_OK, "%s: histogram of part %d: %s", name, part, err.msg);
            nv += valid;
        }
        /* An all-reduce in two orders: integer sums, so the same arrays. */
        for (size_t w = 0; w < H; w++) {
            sum1[w] = (h[0][w] + h[1][w]) + h[2][w];
            sum2[w] = h[2][w] + (h[1][w] + h[0][w]);
        }
        CHECK(memcmp(sum1, sum2, H * sizeof *sum1) == 0, "%s: histogram sums differ", name);
        CHECK(nv == r.valid_negatives, "%s: %zu valid negatives in the parts, sorted says %zu",
              name, nv, r.valid_negatives);
        double loss = -1.0;
        st = apl_sorted_finish_ap(plan, sum2, &loss, &err);
        CHECK(st == APL_OK, "%s: finish: %s", name, err.msg);
        CHECK(memcmp(&loss, &r.loss, sizeof loss) == 0, "%s (simd %d): loss %.17g, sorted %.17g",
              name, simd, loss, r.loss);
        memset(got, 0xff, (n ? n : 1) * sizeof *got);
        for (int part = 0; part < 3; part++) {
            st = apl_sorted_apply(plan, s + cut[part], t + cut[part], cut[part + 1] - cut[part],
                                  part == 1 ? NULL : memo + cut[part], got + cut[part], 3 - part,
                                  &err);
            CHECK(st == APL_OK, "%s: apply to part %d: %s", name, part, err.msg);
        }
        size_t first = n;
        for (size_t j = 0; j < n && first == n; j++)
            if (memcmp(&got[j], &want[j], sizeof *got) != 0)
                first = j;
        CHECK(first == n, "%s (simd %d): grad[%zu] = %.9g from the phases, %.9g from sorted",
              name, simd, first, first < n ? (double)got[first] : 0.0,
              first < n ? (double)want[first] : 0.0);
        for (int part = 0; part < 3; part++)
            free(h[part]);
        free(sum1), free(sum2);
        apl_sorted_plan_free(plan);
    }
    printf("%-28s n %8zu P %5zu V %8zu: %s\n", name, n, np, r.valid_negatives,
           check_failures ? "FAILED so far" : "identical");
    free(pos), free(want), free(got), free(memo);
}

static void generated(apl_dist dist, size_t anchors, double pos_rate, double delta)
{
    apl_gen_params g;
    apl_gen_defaults(&g);
    g.dist = dist;
    g.anchors = anchors;
    g.pos_rate = pos_rate;
    size_t n;
    apl_error err = {0};
    if (apl_gen_count(&g, &n, &err) != APL_OK)
        return;
    float *s = malloc(n * sizeof *s);
    int8_t *t = malloc(n);
    if (s && t && apl_generate(&g, s, t, &err) == APL_OK) {
        char name[64];
        snprintf(name, sizeof name, "%s anchors %zu delta %g", apl_dist_name(dist), anchors,
                 delta);
        run_case(name, s, t, n, delta);
    }
    free(s), free(t);
}

/* Logits on a coarse grid: ties among positives, negatives exactly on breakpoints and on the
 * threshold. */
static void ties(void)
{
    enum { N = 5000 };
    static float s[N];
    static int8_t t[N];
    uint64_t x = 88172645463325252u;
    for (size_t j = 0; j < N; j++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        s[j] = (float)((int)(x % 41) - 20) * 0.25f;
        t[j] = (int8_t)((x >> 20) % 23 == 0 ? 1 : ((x >> 30) % 9 == 0 ? -1 : 0));
    }
    run_case("ties on a 0.25 grid", s, t, N, 0.5);
}

static void errors(void)
{
    apl_error err = {0};
    apl_sorted_plan *plan = NULL;
    const float up[3] = {0.0f, 1.0f, 2.0f}, down[3] = {0.0f, 2.0f, 1.0f};
    apl_status st = apl_sorted_plan_create(down, 3, 1.0, &plan, &err);
    CHECK_ERR(st, &err, APL_ERR_INPUT, "expected ascending order");
    CHECK(plan == NULL, "a failed plan is NULL");
    st = apl_sorted_plan_create(up, 0, 1.0, &plan, &err);
    CHECK_ERR(st, &err, APL_ERR_ARG, "no positives");
    st = apl_sorted_plan_create(up, 3, 0.0, &plan, &err);
    CHECK_ERR(st, &err, APL_ERR_ARG, "delta");
    const float far[2] = {0.0f, 1e6f};
    st = apl_sorted_plan_create(far, 2, 1.0, &plan, &err);
    CHECK_ERR(st, &err, APL_ERR_ARG, "outside the segment algorithm's range");

    st = apl_sorted_plan_create(up, 3, 1.0, &plan, &err);
    CHECK(st == APL_OK, "plan: %s", err.msg);
    if (st != APL_OK)
        return;
    CHECK(apl_sorted_hist_len(plan) == APL_HIST_WORDS * 6, "3 positives: 6 segments");
    int64_t hist[APL_HIST_WORDS * 6] = {0};
    const float s[4] = {0.5f, 1.0f, 3.0f, 1.5f};
    const int8_t t[4] = {0, 1, 1, 0}; /* 3.0 is a positive the plan does not have */
    double loss;
    CHECK(apl_sorted_histogram(plan, s, t, 4, hist, NULL, 1, NULL, &err) == APL_OK, "%s",
          err.msg);
    CHECK(apl_sorted_finish_ap(plan, hist, &loss, &err) == APL_OK, "%s", err.msg);
    float g[4];
    st = apl_sorted_apply(plan, s, t, 4, NULL, g, 1, &err);
    CHECK_ERR(st, &err, APL_ERR_INPUT, "logits[2] = 3 is a positive that is not in the plan");
    apl_sorted_plan_free(plan);
}

int main(void)
{
    generated(APL_DIST_MID, APL_RETINANET_ANCHORS, 0.0013, 1.0);
    generated(APL_DIST_EARLY, 9000, 0.01, 0.5);
    generated(APL_DIST_LATE, APL_RETINANET_ANCHORS, 0.002, 2.0);
    generated(APL_DIST_MID, 40, 0.3, 1.0);
    /* Many segments: above COPIES_MAX_SEGMENTS (no hot segment, dense early input) and above
     * PRIVATE_MAX_SEGMENTS (atomic adds with 2 and 3 threads) in sorted_phases.c. */
    generated(APL_DIST_EARLY, 32736, 0.3, 1.0);
    generated(APL_DIST_MID, 100000, 0.4, 1.0);
    ties();
    errors();
    return check_report("test_phases");
}
