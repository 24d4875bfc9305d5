/* sorted.c: the O(M log |P|) algorithm of the SPEC's "Cost" section on the CPU: the phases of
 * include/aploss/phases.h (kernels/common/sorted_phases.c) run in one process.
 *
 * Only the positives are sorted. Their 2|P| ramp ends s_i -+ delta, merged, cut the logit axis
 * into segments (plan). Pass 1 streams over the elements once: each valid negative finds its
 * segment and adds its count and fixed-point offset to that segment's integer histogram
 * (histogram); a segment is one lookup in an exact per-float cell table, so pass 2 looks it up
 * again rather than storing it. Window sums give every b_i, the recurrence the weights, and G(x)
 * is linear inside each segment (finish); pass 2 evaluates it per element (apply). Both passes
 * run on apl_threads(p->threads) threads, and the result is bitwise the same for any thread count: the histogram is
 * an integer sum and everything else is per element or sequential over |P|.
 */
#include "aploss/phases.h"
#include "cpu_common.h"
#include "kernels.h"
#include "alrp.h"

#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* A growing list of logits (one per thread). */
typedef struct {
    float *v;
    size_t m, cap;
    int failed;
} logit_list;

static void list_push(logit_list *l, float x)
{
    if (l->m == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 1024;
        float *v = realloc(l->v, cap * sizeof *v);
        if (!v) {
            l->failed = 1;
            return;
        }
        l->v = v, l->cap = cap;
    }
    l->v[l->m++] = x;
}

/* The positives' logits in [j0, j1), appended to l: one read of the targets
 * (apl_next_positive). */
static void positives_in(const float *s, const int8_t *t, size_t j0, size_t j1, logit_list *l)
{
    for (size_t j = apl_next_positive(t, j0, j1); j < j1; j = apl_next_positive(t, j + 1, j1))
        list_push(l, s[j]);
}

static int by_value(const void *x, const void *y)
{
    float a = *(const float *)x, b = *(const float *)y;
    return (a > b) - (a < b);
}

/* The positives' logits, ascending, in *out (malloc'ed; NULL when there are none). Threads take
 * contiguous ranges, collect their positives in one pass and copy them to their offsets; the
 * sort makes the order of the ranges irrelevant anyway. */
static apl_status gather_positive_logits(const float *s, const int8_t *t, size_t n, int threads,
                                         float **out, size_t *np, apl_error *err)
{
    enum { MAX_T = 256 };
    int T = apl_threads(threads);
    if ((size_t)T > n / 65536 + 1)
        T = (int)(n / 65536 + 1);
    if (T > MAX_T)
        T = MAX_T;
    size_t count[MAX_T + 1] = {0};
    logit_list part[MAX_T] = {{0}};
    float *v = NULL;
    int failed = 0, used = 1;
#pragma omp parallel num_threads(T)
    {
#ifdef _OPENMP
        const int i = omp_get_thread_num(), team = omp_get_num_threads();
#else
        const int i = 0, team = 1;
#endif
        const size_t j0 = n / (size_t)team * (size_t)i,
                     j1 = i + 1 == team ? n : n / (size_t)team * (size_t)(i + 1);
        positives_in(s, t, j0, j1, &part[i]);
        count[i + 1] = part[i].m;
#pragma omp barrier
#pragma omp single
        {
            used = team;
            for (int k = 0; k < team; k++) {
                count[k + 1] += count[k];
                failed |= part[k].failed;
            }
            if (count[team] && !failed) {
                v = malloc(count[team] * sizeof *v);
                failed = !v;
            }
        }
        if (v && !failed && part[i].m)
            memcpy(v + count[i], part[i].v, part[i].m * sizeof *v);
        free(part[i].v);
    }
    *np = count[used];
    if (failed) {
        free(v);
        return apl_fail(err, APL_ERR_NOMEM, "sorted: cannot allocate %zu positives", *np);
    }
    if (*np > 1) /* qsort(NULL, 0, ...) is undefined behaviour (UBSan) */
        qsort(v, *np, sizeof *v, by_value);
    *out = v;
    return APL_OK;
}

APL_VARIANT_FN(apl_sorted)
{
    if (p->loss == APL_LOSS_PAP)
        return apl_pap_sorted(p, out, res, err);
    float *s = NULL;
    size_t np = 0;
    apl_status st = gather_positive_logits(p->logits, p->targets, p->n, p->threads, &s, &np, err);
    *res = (apl_result){.positives = np};
    if (st != APL_OK)
        return st;
    if (np == 0) { /* the SPEC's answer: loss 0, every gradient 0 */
        memset(out->grad, 0, p->n * sizeof *out->grad);
        return APL_OK;
    }
    if (!apl_segments_in_range(s[0], s[np - 1], np, p->delta)) {
        free(s);
        return apl_pruned(p, out, res, err);
    }

    apl_sorted_plan *plan = NULL;
    int64_t *hist = NULL;
    st = apl_sorted_plan_create(s, np, p->delta, &plan, err);
    if (st == APL_OK) {
        hist = calloc(apl_sorted_hist_len(plan), sizeof *hist);
        if (!hist)
            st = apl_fail(err, APL_ERR_NOMEM, "sorted: cannot allocate the histogram of %zu "
                          "segments", plan->segments);
    }
    /* The memo lives in the gradient: pass 1 lists each sparse chunk's valid negatives there
     * (logit, segment, position) and codes each other chunk's elements (segment or invalid),
     * so apply reads short lists instead of logits and targets, no targets at all in a coded
     * chunk, and never looks a segment up twice (phases.h). */
    uint32_t *memo = (uint32_t *)(void *)out->grad;
    if (st == APL_OK)
        st = apl_sorted_histogram(plan, p->logits, p->targets, p->n, hist, memo, p->threads,
                                  &res->valid_negatives, err);
    /* The finish step is the loss's own middle (aLRP: alrp_sorted.c); the rest is shared. */
    size_t *alrp_index = NULL; /* aLRP: each sorted positive's flat index */
    if (st == APL_OK)
        st = p->loss == APL_LOSS_ALRP
                 ? apl_alrp_sorted_finish(plan, hist, p, out->grad_aux, &alrp_index, res, err)
                 : apl_sorted_finish_ap(plan, hist, &res->loss, err);
    if (st == APL_OK)
        st = apl_sorted_apply(plan, p->logits, p->targets, p->n, memo, out->grad, p->threads,
                              err);
    if (st == APL_OK && alrp_index) /* tied positives may differ in aLRP: by index */
        apl_alrp_sorted_positives(plan, alrp_index, out->grad);
    free(alrp_index);
    free(hist);
    apl_sorted_plan_free(plan);
    free(s);
    return st;
}
