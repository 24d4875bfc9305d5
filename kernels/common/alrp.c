/* alrp.c: aLRP Loss's O(|P|) middle for the CPU variants (see alrp.h, docs/SPEC_ALRP.md). */
#include "alrp.h"

#include <stdlib.h>

typedef struct {
    size_t index, i; /* flat position, position in the sorted order */
} by_index;

static int index_order(const void *x, const void *y)
{
    const by_index *a = x, *b = y;
    return a->index < b->index ? -1 : (a->index > b->index);
}

apl_status apl_alrp_sorted_e(const apl_pos *pos, size_t np, const float *aux, double *e_sorted,
                             size_t **rank, apl_error *err)
{
    *rank = NULL;
    if (np == 0)
        return APL_OK;
    by_index *t = malloc(np * sizeof *t);
    size_t *rk = malloc(np * sizeof *rk);
    if (!t || !rk) {
        free(t), free(rk);
        return apl_fail(err, APL_ERR_NOMEM, "alrp: cannot allocate the order of %zu positives", np);
    }
    for (size_t i = 0; i < np; i++)
        t[i] = (by_index){pos[i].index, i};
    qsort(t, np, sizeof *t, index_order); /* indices are distinct: the order is total */
    for (size_t k = 0; k < np; k++) {
        e_sorted[t[k].i] = (double)aux[k];
        rk[t[k].i] = k;
    }
    free(t);
    *rank = rk;
    return APL_OK;
}

/* Aligned power-of-two blocks of the ascending positives: level L holds the np >> L full blocks
 * of 2^L positives starting at b 2^L, each with its weight sum E and its moment M = sum e_k (s_k -
 * s_first) about its own first logit. Both only ever add terms >= 0. */
typedef struct {
    const float *s;
    size_t np, levels;
    double **E, **M;
} blocks;

/* sum_{k in [l, r)} e_k (s_k - x0), for x0 <= s_l: O(log |P|) blocks, every term >= 0. */
static double moment(const blocks *B, size_t l, size_t r, double x0)
{
    double sum = 0.0;
    while (l < r) {
        size_t L = 0;
        while (L + 1 < B->levels && (l & (((size_t)2 << L) - 1)) == 0 && l + ((size_t)2 << L) <= r)
            L++;
        size_t b = l >> L;
        sum += B->M[L][b] + B->E[L][b] * ((double)B->s[l] - x0);
        l += (size_t)1 << L;
    }
    return sum;
}

apl_status apl_alrp_c(const float *s, const double *e, size_t np, double delta, double *c,
                      apl_error *err)
{
    if (np == 0)
        return APL_OK;
    size_t levels = 1;
    while (((size_t)1 << levels) <= np)
        levels++;
    /* Level sizes sum to below 2 np; one block of memory: suffix sums, then E and M levels. */
    double **ptr = malloc(2 * levels * sizeof *ptr);
    double *mem = malloc((np + 1 + 4 * np + 2 * levels) * sizeof *mem);
    if (!ptr || !mem) {
        free(ptr), free(mem);
        return apl_fail(err, APL_ERR_NOMEM, "alrp: cannot allocate window sums for %zu positives",
                        np);
    }
    double *suffix = mem, *next = mem + np + 1;
    blocks B = {s, np, levels, ptr, ptr + levels};
    for (size_t L = 0; L < levels; L++) {
        size_t nb = np >> L;
        B.E[L] = next;
        B.M[L] = next + nb;
        next += 2 * nb + 1;
        for (size_t b = 0; b < nb; b++) {
            if (L == 0) {
                B.E[0][b] = e[b];
                B.M[0][b] = 0.0;
            } else {
                size_t left = 2 * b, right = 2 * b + 1;
                double gap = (double)s[right << (L - 1)] - (double)s[b << L]; /* >= 0, exact */
                B.E[L][b] = B.E[L - 1][left] + B.E[L - 1][right];
                B.M[L][b] = B.M[L - 1][left] + B.M[L - 1][right] + B.E[L - 1][right] * gap;
            }
        }
    }
    suffix[np] = 0.0;
    for (size_t k = np; k-- > 0;)
        suffix[k] = suffix[k + 1] + e[k];

    /* The window of i: (s_i - delta, s_i + delta) is [l, u) (both ascend with i); k >= u counts
     * e_k in full, k in the window (s_k - (s_i - delta)) / (2 delta); i itself is left out. */
    const double inv2d = 1.0 / (2.0 * delta);
    size_t l = 0, u = 0;
    for (size_t i = 0; i < np; i++) {
        const double lo = (double)s[i] - delta, hi = (double)s[i] + delta;
        while (l < np && !((double)s[l] > lo))
            l++;
        while (u < np && (double)s[u] < hi)
            u++;
        size_t below = i < u ? i : u, above = i + 1 > l ? i + 1 : l;
        double part = (l < below ? moment(&B, l, below, lo) : 0.0) +
                      (above < u ? moment(&B, above, u, lo) : 0.0);
        c[i] = suffix[u > i ? u : i + 1] + part * inv2d;
    }
    free(ptr), free(mem);
    return APL_OK;
}

apl_alrp_losses apl_alrp_weights(size_t np, const double *a, const double *b, const double *c,
                                 const double *e, double *w, double *L, double *grad_e)
{
    apl_alrp_losses out = {0.0, 0.0};
    if (np == 0)
        return out;
    const double inv_np = 1.0 / (double)np;
    double sum_b_over_r = 0.0;
    for (size_t i = 0; i < np; i++) {
        const double r = a[i] + b[i];
        /* The eps test on b itself (accurate relative to its own size): w jumps from 0 to L/b
         * there, so it must not be decided on a difference. */
        const int active = b[i] > APL_ALRP_EPS;
        L[i] = active ? (b[i] + c[i]) / r : 0.0;
        w[i] = active ? L[i] / b[i] : 0.0;
        sum_b_over_r += b[i] / r; /* loss_cls as the mean of b/r, not 1 - mean(a/r) */
    }
    out.loss_cls = sum_b_over_r * inv_np;
    /* pi is the ascending order reversed: position q of pi is i = np-1-q, so the sum over
     * p <= q is a suffix here and the sum over q >= p a prefix. Every sum adds terms >= 0. */
    double cum = 0.0, loc = 0.0;
    for (size_t i = np; i-- > 0;) {
        cum += e[i];
        loc += cum / (a[i] + b[i]);
    }
    out.loss_loc = loc * inv_np;
    if (grad_e) {
        double g = 0.0;
        for (size_t i = 0; i < np; i++) {
            g += 1.0 / (a[i] + b[i]);
            grad_e[i] = g * inv_np;
        }
    }
    return out;
}

void apl_alrp_scatter_grad_e(size_t np, const double *grad_e_sorted, const size_t *rank,
                             float *out)
{
    for (size_t i = 0; i < np; i++)
        out[rank[i]] = (float)grad_e_sorted[i];
}

apl_status apl_alrp_quadratic_middle(struct apl_alrp_job *job, const float *s, size_t np,
                                     double delta, const double *a, const double *b, double *w,
                                     double *L, double *loss_cls, apl_error *err)
{
    double *c = malloc((np ? np : 1) * sizeof *c);
    if (!c)
        return apl_fail(err, APL_ERR_NOMEM, "alrp: cannot allocate c for %zu positives", np);
    apl_status st = apl_alrp_c(s, job->e, np, delta, c, err);
    if (st == APL_OK) {
        apl_alrp_losses l = apl_alrp_weights(np, a, b, c, job->e, w, L, job->grad_e);
        *loss_cls = l.loss_cls;
        job->loss_loc = l.loss_loc;
    }
    free(c);
    return st;
}
