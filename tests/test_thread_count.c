/* test_thread_count.c: the threaded CPU variants (sorted, pruned) give bitwise the same loss and
 * gradient with 1, 2, 3 and 7 threads (issue 10), on ten inputs from a few hundred elements to
 * RetinaNet batch 8 (2.1e7 elements). pruned is O(|P| |V|): it runs where that product is
 * modest (the late distribution at batch 8, fewer positives elsewhere); sorted runs everywhere.
 * Up to batch 1 each result is also checked against the reference once (one thread), so a
 * variant that is consistently wrong cannot pass. */
#include "aploss/harness.h"
#include "check.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const int thread_counts[] = {1, 2, 3, 7};
#define NT (sizeof thread_counts / sizeof thread_counts[0])

typedef struct {
    size_t batch, anchors;
    double pos_rate;
    apl_dist dist;
    double delta;
    int pruned; /* 1: run pruned too */
} tc_case;

static const tc_case cases[] = {
    {.batch = 1, .anchors = 5, .pos_rate = 0.2, .dist = APL_DIST_MID, .delta = 1.0, .pruned = 1},
    {.batch = 1, .anchors = 900, .pos_rate = 0.05, .dist = APL_DIST_EARLY, .delta = 0.5,
     .pruned = 1},
    {.batch = 1, .anchors = 4000, .pos_rate = 0.01, .dist = APL_DIST_LATE, .delta = 4.0,
     .pruned = 1},
    {.batch = 1, .anchors = APL_RETINANET_ANCHORS, .pos_rate = 0.0013, .dist = APL_DIST_MID,
     .delta = 1.0, .pruned = 1},
    {.batch = 1, .anchors = APL_RETINANET_ANCHORS, .pos_rate = 0.0003, .dist = APL_DIST_EARLY,
     .delta = 0.1, .pruned = 1},
    {.batch = 2, .anchors = APL_RETINANET_ANCHORS, .pos_rate = 0.0013, .dist = APL_DIST_LATE,
     .delta = 1.0, .pruned = 1},
    {.batch = 8, .anchors = APL_RETINANET_ANCHORS, .pos_rate = 0.0010, .dist = APL_DIST_LATE,
     .delta = 1.0, .pruned = 1},
    {.batch = 8, .anchors = APL_RETINANET_ANCHORS, .pos_rate = 0.0010, .dist = APL_DIST_MID,
     .delta = 1.0, .pruned = 0},
    {.batch = 8, .anchors = APL_RETINANET_ANCHORS, .pos_rate = 0.0010, .dist = APL_DIST_EARLY,
     .delta = 1.0, .pruned = 0},
    {.batch = 8, .anchors = APL_RETINANET_ANCHORS, .pos_rate = 0.00005, .dist = APL_DIST_MID,
     .delta = 2.0, .pruned = 1},
};

static void run_case(const tc_case *c, const char *vname)
{
    apl_gen_params g;
    apl_gen_defaults(&g);
    g.batch = c->batch;
    g.anchors = c->anchors;
    g.pos_rate = c->pos_rate;
    g.dist = c->dist;
    apl_error err = {0};
    size_t n = 0;
    CHECK(apl_gen_count(&g, &n, &err) == APL_OK, "%s", err.msg);
    float *s = malloc(n * sizeof *s), *g1 = malloc(n * sizeof *g1), *gt = malloc(n * sizeof *gt);
    int8_t *t = malloc(n);
    CHECK(s && g1 && gt && t, "out of memory for %zu elements", n);
    if (!s || !g1 || !gt || !t || apl_generate(&g, s, t, &err) != APL_OK) {
        free(s), free(g1), free(gt), free(t);
        return;
    }
    const apl_variant *v = apl_variant_find(vname);
    CHECK(v && v->threaded, "%s: expected a threaded CPU variant", vname);
    apl_problem p = apl_ap_problem(s, t, n, c->delta);
    apl_result r1 = {0}, rt;
    for (size_t k = 0; k < NT; k++) {
        p.threads = thread_counts[k];
        float *out_g = k == 0 ? g1 : gt;
        memset(out_g, 0x7f, n * sizeof *out_g); /* every entry must be written */
        const apl_output out = {out_g, NULL};
        apl_status st = apl_run(v, &p, &out, k == 0 ? &r1 : &rt, &err);
        CHECK(st == APL_OK, "%s %s batch %zu: %s", vname, apl_dist_name(c->dist), c->batch,
              err.msg);
        if (st != APL_OK)
            break;
        if (k == 0 && n <= 3000000) {
            /* One thread agrees with the reference (so the comparison below means something);
             * the batch-8 inputs are the agreement tests' (label large). */
            double *g64 = malloc(n * sizeof *g64);
            apl_result ref;
            if (g64 && apl_reference(&p, g64, NULL, &ref, &err) == APL_OK) {
                apl_verdict ver;
                apl_accept(&p, g1, NULL, &r1, g64, NULL, &ref, &ver);
                char why[APL_MSG_LEN];
                apl_verdict_format(&ver, why, sizeof why);
                CHECK(ver.pass, "%s %s n %zu: %s", vname, apl_dist_name(c->dist), n, why);
            }
            free(g64);
        }
        if (k == 0)
            continue;
        CHECK(memcmp(&rt.loss, &r1.loss, sizeof r1.loss) == 0,
              "%s %s n %zu: loss %.17g with %d threads, %.17g with 1", vname,
              apl_dist_name(c->dist), n, rt.loss, thread_counts[k], r1.loss);
        CHECK(rt.positives == r1.positives && rt.valid_negatives == r1.valid_negatives,
              "%s: counts differ with %d threads", vname, thread_counts[k]);
        size_t first = n;
        for (size_t j = 0; j < n && first == n; j++)
            if (memcmp(&gt[j], &g1[j], sizeof *gt) != 0)
                first = j;
        CHECK(first == n, "%s %s n %zu: grad[%zu] = %.9g with %d threads, %.9g with 1", vname,
              apl_dist_name(c->dist), n, first, first < n ? (double)gt[first] : 0.0,
              thread_counts[k], first < n ? (double)g1[first] : 0.0);
    }
    printf("%-7s %-5s batch %zu anchors %5zu pos %.5f delta %-4g n %9zu P %6zu V %9zu: %s\n",
           vname, apl_dist_name(c->dist), c->batch, c->anchors, c->pos_rate, c->delta, n,
           r1.positives, r1.valid_negatives, check_failures ? "FAILED so far" : "identical");
    free(s), free(g1), free(gt), free(t);
}

int main(void)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        run_case(&cases[i], "sorted");
        if (cases[i].pruned)
            run_case(&cases[i], "pruned");
    }
    return check_report("test_thread_count");
}
