/* alrp_sorted.c: aLRP Loss's finish step for the sorted phases (include/aploss/phases.h,
 * docs/SPEC_ALRP.md "Cost"). The histogram and apply phases are AP-Loss's, unchanged; only the
 * middle differs: b_i from the negatives' histogram (apl_sorted_window_sums), a_i = 1/2 +
 * plan->pos_sums, c_i from the positives' e over aligned power-of-two blocks (apl_alrp_c),
 * w_i = L_i / b_i (apl_alrp_weights), then the same fixed-point coefficients.
 *
 * The positives need their flat indices here, which the plan does not keep: e arrives in flat
 * order, grad_e leaves in flat order, and tied positives with different e have different L_i,
 * so apply's one shared value per logit is overwritten by index afterwards
 * (apl_alrp_sorted_positives). Everything is per element or sequential over |P|, so the bits do
 * not depend on the thread count. */
#include "alrp.h"
#include "kernels.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static int by_logit_then_index(const void *x, const void *y)
{
    const apl_pos *a = x, *b = y;
    if (a->s != b->s)
        return a->s < b->s ? -1 : 1;
    return a->index < b->index ? -1 : (a->index > b->index);
}

/* Positives in [j0, j1): counted, or written with their indices into out when out is set; one
 * read of the targets (apl_next_positive): this pass is aLRP's only extra O(M) work over
 * AP-Loss's. */
static size_t positives_in(const float *s, const int8_t *t, size_t j0, size_t j1, apl_pos *out)
{
    size_t m = 0;
    for (size_t j = apl_next_positive(t, j0, j1); j < j1; j = apl_next_positive(t, j + 1, j1)) {
        if (out)
            out[m] = (apl_pos){s[j], j};
        m++;
    }
    return m;
}

/* The np positives of (s, t) with their flat indices, sorted ascending by (logit, index): the
 * order of the plan and of apl_gather_positives. Threads take contiguous ranges, count, then
 * write at their offsets in flat order. */
static apl_status gather_indexed(const float *s, const int8_t *t, size_t n, int threads,
                                 size_t np, apl_pos *pos, apl_error *err)
{
    enum { MAX_T = 256 };
    int T = apl_threads(threads);
    if ((size_t)T > n / 65536 + 1)
        T = (int)(n / 65536 + 1);
    if (T > MAX_T)
        T = MAX_T;
    size_t count[MAX_T + 1] = {0};
    int used = 1;
#pragma omp parallel num_threads(T)
    {
#ifdef _OPENMP
        const int i = omp_get_thread_num(), team = omp_get_num_threads();
#else
        const int i = 0, team = 1;
#endif
        const size_t j0 = n / (size_t)team * (size_t)i,
                     j1 = i + 1 == team ? n : n / (size_t)team * (size_t)(i + 1);
        count[i + 1] = positives_in(s, t, j0, j1, NULL);
#pragma omp barrier
#pragma omp single
        {
            used = team;
            for (int k = 0; k < team; k++)
                count[k + 1] += count[k];
        }
        if (count[used] == np) /* else reported below, nothing written */
            positives_in(s, t, j0, j1, pos + count[i]);
    }
    if (count[used] != np)
        return apl_fail(err, APL_ERR_INPUT, "sorted (alrp): %zu positives in the targets, %zu in "
                        "the plan", count[used], np);
    if (np > 1)
        qsort(pos, np, sizeof *pos, by_logit_then_index);
    return APL_OK;
}

apl_status apl_alrp_sorted_finish(apl_sorted_plan *plan, const int64_t *hist,
                                  const apl_problem *p, float *grad_aux, size_t **pos_index,
                                  apl_result *res, apl_error *err)
{
    const size_t np = plan->np;
    *pos_index = NULL;
    apl_pos *pos = malloc(np * sizeof *pos);
    size_t *idx = malloc(np * sizeof *idx), *rank = NULL;
    double *a = malloc(7 * np * sizeof *a);
    if (!pos || !idx || !a) {
        free(pos), free(idx), free(a);
        return apl_fail(err, APL_ERR_NOMEM, "sorted (alrp): cannot allocate work for %zu "
                        "positives", np);
    }
    double *b = a + np, *c = b + np, *e = c + np, *w = e + np, *L = w + np, *ge = L + np;
    apl_status st = gather_indexed(p->logits, p->targets, p->n, p->threads, np, pos, err);
    for (size_t i = 0; st == APL_OK && i < np; i++)
        if (pos[i].s != plan->pos[i])
            st = apl_fail(err, APL_ERR_INPUT, "sorted (alrp): positive %zu of the plan is %.9g, "
                          "logits[%zu] = %.9g", i, (double)plan->pos[i], pos[i].index,
                          (double)pos[i].s);
    if (st == APL_OK)
        st = apl_alrp_sorted_e(pos, np, p->aux, e, &rank, err);
    if (st == APL_OK)
        st = apl_sorted_window_sums(plan, hist, b, err);
    if (st == APL_OK)
        st = apl_alrp_c(plan->pos, e, np, plan->delta, c, err);
    if (st == APL_OK) {
        for (size_t i = 0; i < np; i++)
            a[i] = 0.5 + plan->pos_sums[i];
        apl_alrp_losses l = apl_alrp_weights(np, a, b, c, e, w, L, grad_aux ? ge : NULL);
        res->loss = l.loss_cls;
        res->loss_loc = l.loss_loc;
        for (size_t i = 0; i < np; i++) {
            plan->pos_grad[i] = -L[i] / (double)np;
            idx[i] = pos[i].index;
        }
        st = apl_sorted_coefficients(plan, w, err);
    }
    if (st == APL_OK && grad_aux)
        apl_alrp_scatter_grad_e(np, ge, rank, grad_aux);
    free(pos), free(a), free(rank);
    if (st != APL_OK) {
        free(idx);
        return st;
    }
    *pos_index = idx;
    return APL_OK;
}

void apl_alrp_sorted_positives(const apl_sorted_plan *plan, const size_t *pos_index, float *grad)
{
    for (size_t i = 0; i < plan->np; i++)
        grad[pos_index[i]] = (float)plan->pos_grad[i];
}
