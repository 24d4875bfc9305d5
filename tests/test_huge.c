/* test_huge.c: the O(M log |P|) variants on more than 2^31 elements (opt-in: APL_HUGE_TESTS=1;
 * otherwise skipped with exit 77). 2^31 + 1e6 elements take about 19.3 GB (logits, targets,
 * gradient); the test skips, saying so, where MemAvailable is smaller.
 *
 * The reference cannot run at that size, so the answer is made known in advance: a small
 * generated case (6000 elements) is scattered over three places of the huge array, at the start,
 * straddling index 2^31 and at the very end, and every other element is either ignored (-1, some
 * with logits that would matter if they were not) or a negative far below the pruning threshold.
 * The huge run must then give exactly the small run's loss, counts and gradients at the small
 * case's positions (bitwise: the variants accumulate in index order, which scattering keeps),
 * agree with the reference on the small case, and write exact zeros everywhere else.
 *
 * APL_HUGE_VARIANTS=a,b overrides the variants (default sorted,pruned: both need memory only for
 * the inputs, the gradient and O(|P| + |V|) work). */
#define _POSIX_C_SOURCE 200809L

#include "aploss/harness.h"
#include "check.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double mem_available_gb(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    unsigned long long kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return (double)kb * 1024.0 / 1e9;
}

#define GROUPS 3

int main(void)
{
    const char *opt = getenv("APL_HUGE_TESTS");
    if (!opt || strcmp(opt, "1") != 0) {
        printf("test_huge: skipped: set APL_HUGE_TESTS=1 to run the 2^31 + 1e6 element test "
               "(about 19.3 GB of memory)\n");
        return 77;
    }
    const size_t n = ((size_t)1 << 31) + 1000000;
    const double need_gb = (double)n * 9.0 / 1e9 + 0.5;
    const double avail_gb = mem_available_gb();
    if (avail_gb < need_gb) {
        printf("test_huge: skipped: needs %.1f GB but only %.1f GB is available\n", need_gb,
               avail_gb);
        return 77;
    }

    /* The small case, its reference, and where its elements go. */
    apl_gen_params g;
    apl_gen_defaults(&g);
    g.anchors = 600;
    g.classes = 10;
    g.pos_rate = 0.05;
    g.dist = APL_DIST_EARLY; /* everything overlaps: thousands of valid negatives */
    g.seed = 7;
    const double delta = 1.0;
    apl_error err = {0};
    size_t m;
    if (apl_gen_count(&g, &m, &err) != APL_OK)
        return 2;
    float *ss = malloc(m * sizeof *ss), *gs = malloc(m * sizeof *gs);
    int8_t *ts = malloc(m);
    double *g64 = malloc(m * sizeof *g64);
    if (!ss || !ts || !gs || !g64 || apl_generate(&g, ss, ts, &err) != APL_OK)
        return 2;
    apl_result ref;
    CHECK(apl_reference_ap(ss, ts, m, delta, g64, &ref, &err) == APL_OK, "reference: %s", err.msg);
    const size_t part = m / GROUPS;
    const size_t base[GROUPS] = {1000, ((size_t)1 << 31) - part / 2, n - part};

    printf("test_huge: %zu elements (2^31 + %zu), small case of %zu elements (%zu positives) at "
           "[%zu..), [%zu..) and [%zu..)\n",
           n, n - ((size_t)1 << 31), m, ref.positives, base[0], base[1], base[2]);
    fflush(stdout);
    double t0 = now();
    float *s = malloc(n * sizeof *s), *grad = malloc(n * sizeof *grad);
    int8_t *t = malloc(n);
    if (!s || !t || !grad) {
        printf("test_huge: skipped: cannot allocate %.1f GB\n", need_gb);
        return 77;
    }
    /* Filler, in a cycle of three: ignored with a logit that would be a hard negative, a negative
     * far below any threshold, ignored with a low logit. */
    for (size_t j = 0, k = 0; j < n; j++) {
        static const float fs[3] = {5.0f, -1e4f, -3.0f};
        static const int8_t ft[3] = {-1, 0, -1};
        s[j] = fs[k];
        t[j] = ft[k];
        k = k == 2 ? 0 : k + 1;
    }
    for (int q = 0; q < GROUPS; q++) {
        size_t len = q == GROUPS - 1 ? m - q * part : part;
        memcpy(s + base[q], ss + q * part, len * sizeof *s);
        memcpy(t + base[q], ts + q * part, len);
    }
    printf("  fill: %.1f s\n", now() - t0);
    fflush(stdout);

    const char *list = getenv("APL_HUGE_VARIANTS");
    char names[256];
    snprintf(names, sizeof names, "%s", list && *list ? list : "sorted,pruned");
    for (char *save = NULL, *name = strtok_r(names, ",", &save); name;
         name = strtok_r(NULL, ",", &save)) {
        const apl_variant *v = apl_variant_find(name);
        if (!v) {
            CHECK(0, "variant %s: unknown", name);
            continue;
        }
        /* A GPU row without a device skips visibly (a failure with APL_REQUIRE_GPU=1). */
        if (!check_runnable(v)) {
            CHECK(v->device == APL_GPU, "variant %s: cannot run", name);
            continue;
        }
        apl_result rs, rb;
        CHECK(apl_run_ap(v, ss, ts, m, delta, gs, &rs, &err) == APL_OK, "%s small: %s", name, err.msg);
        apl_verdict ag;
        apl_accept_ap(ss, ts, m, delta, gs, &rs, g64, &ref, &ag);
        char verdict[APL_MSG_LEN];
        apl_verdict_format(&ag, verdict, sizeof verdict);
        CHECK(ag.pass, "%s small: %s", name, verdict);
        /* The huge run is then held to the small run's own answer, bit for bit (below): a
         * property of its own (indexing past 2^31), not a second acceptance rule. */

        memset(grad, 0xff, n * sizeof *grad); /* NaN: every entry must be written */
        double t1 = now();
        apl_status st = apl_run_ap(v, s, t, n, delta, grad, &rb, &err);
        double secs = now() - t1;
        CHECK(st == APL_OK, "%s huge: %s", name, err.msg);
        if (st != APL_OK)
            continue;
        CHECK(rb.positives == rs.positives && rb.valid_negatives == rs.valid_negatives,
              "%s huge: counts %zu/%zu, small %zu/%zu", name, rb.positives, rb.valid_negatives,
              rs.positives, rs.valid_negatives);
        CHECK(memcmp(&rb.loss, &rs.loss, sizeof rb.loss) == 0, "%s huge: loss %.17g, small %.17g",
              name, rb.loss, rs.loss);
        /* The small case's positions: bitwise the small run's gradients. */
        size_t diffs = 0, first = 0;
        for (int q = 0; q < GROUPS; q++) {
            size_t len = q == GROUPS - 1 ? m - q * part : part;
            for (size_t k = 0; k < len; k++)
                if (memcmp(&grad[base[q] + k], &gs[q * part + k], sizeof *grad) != 0 && !diffs++)
                    first = base[q] + k;
        }
        CHECK(diffs == 0, "%s huge: %zu gradients differ from the small run, first at [%zu]",
              name, diffs, first);
        /* Everything else: exactly 0. */
        size_t nonzero = 0, where = 0;
        for (size_t j = 0, q = 0; j < n; j++) {
            if (q < GROUPS && j == base[q]) {
                j += (q == GROUPS - 1 ? m - q * part : part) - 1;
                q++;
                continue;
            }
            if (grad[j] != 0.0f && !nonzero++)
                where = j;
        }
        CHECK(nonzero == 0, "%s huge: %zu filler gradients are not 0, first [%zu] = %g", name,
              nonzero, where, (double)grad[where]);
        printf("  %-8s %.1f s on %zu elements: loss %.12f (reference %.12f), %zu positives, %zu "
               "valid negatives%s\n",
               name, secs, n, rb.loss, ref.loss, rb.positives, rb.valid_negatives,
               diffs == 0 && nonzero == 0 ? ", gradients as the small run" : "");
        fflush(stdout);
    }
    printf("  total: %.1f s\n", now() - t0);
    free(s), free(t), free(grad), free(ss), free(ts), free(gs), free(g64);
    return check_report("test_huge");
}
