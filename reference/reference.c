/* reference.c: the plain C reference, the SPEC transcribed as literally as possible in double
 * precision. Readable first; every variant is checked against it. O(|P| * M). */
#include "reference_internal.h"

#include <stdlib.h>

/* ---- CPU reference: the SPEC's definitions, one to one ---- */

#define H apl_ref_H

/* qsort has no context argument in C11: sort (logit, index) pairs, no global state. */
typedef struct {
    float s;
    size_t index;
} keyed;

static int by_logit_then_index(const void *a, const void *b)
{
    const keyed *x = a, *y = b;
    if (x->s != y->s)
        return x->s < y->s ? -1 : 1;
    return x->index < y->index ? -1 : (x->index > y->index);
}

/* Positions of the positives, sorted by ascending logit, ties by index. */
static void sort_positions(const float *s, size_t *pos, size_t np, keyed *tmp)
{
    for (size_t k = 0; k < np; k++)
        tmp[k] = (keyed){s[pos[k]], pos[k]};
    qsort(tmp, np, sizeof *tmp, by_logit_then_index);
    for (size_t k = 0; k < np; k++)
        pos[k] = tmp[k].index;
}

apl_status apl_ref_sets(const float *s, const int8_t *t, size_t n, double delta, size_t **pos,
                        size_t *np, size_t **V, size_t *nv, apl_error *err)
{
    *pos = *V = NULL;
    *np = *nv = 0;
    size_t p = 0;
    for (size_t j = 0; j < n; j++)
        p += t[j] == 1;
    if (p == 0)
        return APL_OK;
    size_t *P = malloc(p * sizeof *P);
    if (!P)
        return apl_fail(err, APL_ERR_NOMEM, "reference: cannot allocate %zu positives", p);
    for (size_t j = 0, k = 0; j < n; j++)
        if (t[j] == 1)
            P[k++] = j;
    /* thr = min_{i in P} s_i - delta;  V = { j : t_j = 0 and s_j >= thr } */
    double thr = s[P[0]];
    for (size_t k = 1; k < p; k++)
        if (s[P[k]] < thr)
            thr = s[P[k]];
    thr -= delta;
    size_t v = 0;
    for (size_t j = 0; j < n; j++)
        v += t[j] == 0 && (double)s[j] >= thr;
    size_t *Vs = malloc((v ? v : 1) * sizeof *Vs);
    if (!Vs) {
        free(P);
        return apl_fail(err, APL_ERR_NOMEM, "reference: cannot allocate %zu valid negatives", v);
    }
    for (size_t j = 0, k = 0; j < n; j++)
        if (t[j] == 0 && (double)s[j] >= thr)
            Vs[k++] = j;
    *pos = P, *np = p, *V = Vs, *nv = v;
    return APL_OK;
}

static apl_status reference_ap(const float *s, const int8_t *t, size_t n, double delta,
                               double *grad, apl_result *res, apl_error *err)
{
    for (size_t j = 0; j < n; j++)
        grad[j] = 0.0;

    size_t *pos, *V, np, nv;
    apl_status st = apl_ref_sets(s, t, n, delta, &pos, &np, &V, &nv, err);
    res->positives = np;
    res->valid_negatives = nv;
    res->loss = 0.0;
    if (st != APL_OK || np == 0) /* no positives: the seed would return 1 - 0; the SPEC says 0 */
        return st;
    double *w = malloc(np * sizeof *w);
    if (!w) {
        free(pos), free(V);
        return apl_fail(err, APL_ERR_NOMEM, "reference: cannot allocate %zu positives", np);
    }

    /* Visit the positives in ascending order of s_i, carrying max_prec. */
    keyed *tmp = malloc(np * sizeof *tmp);
    if (!tmp) {
        free(pos), free(w), free(V);
        return apl_fail(err, APL_ERR_NOMEM, "reference: cannot allocate %zu positives", np);
    }
    sort_positions(s, pos, np, tmp);
    free(tmp);
    double max_prec = 0.0, sum_prec = 0.0;
    for (size_t k = 0; k < np; k++) {
        double si = s[pos[k]];
        double a = 0.5, b = 0.0;
        for (size_t m = 0; m < np; m++)
            a += H((double)s[pos[m]] - si, delta);
        for (size_t v = 0; v < nv; v++)
            b += H((double)s[V[v]] - si, delta);
        double cur = a / (a + b);
        double factor;
        if (max_prec <= cur) {
            max_prec = cur;
            factor = 1.0;
        } else {
            factor = (1.0 - max_prec) / (1.0 - cur);
        }
        double prec = max_prec;
        w[k] = factor / (a + b);
        grad[pos[k]] = -(1.0 - prec) / (double)np;
        sum_prec += prec;
    }

    /* grad_j = (1/|P|) * sum_{i in P} w_i * H(s_j - s_i)  for j in V */
    for (size_t v = 0; v < nv; v++) {
        size_t j = V[v];
        double g = 0.0;
        for (size_t k = 0; k < np; k++)
            g += w[k] * H((double)s[j] - (double)s[pos[k]], delta);
        grad[j] = g / (double)np;
    }
    res->loss = 1.0 - sum_prec / (double)np;
    free(pos);
    free(w);
    free(V);
    return APL_OK;
}

apl_status apl_reference(const apl_problem *p, double *grad64, double *grad_aux64,
                         apl_result *res, apl_error *err)
{
    apl_status st = apl_check_problem(p, err);
    if (st != APL_OK)
        return st;
    if (p->n > 0 && !grad64)
        return apl_fail(err, APL_ERR_ARG, "reference: null gradient for %zu elements", p->n);
    *res = (apl_result){0};
    switch (p->loss) {
    case APL_LOSS_AP:
        (void)grad_aux64;
        return reference_ap(p->logits, p->targets, p->n, p->delta, grad64, res, err);
    case APL_LOSS_ALRP:
        return apl_reference_alrp(p, grad64, grad_aux64, res, err);
    case APL_LOSS_PAP:
        return apl_reference_pap(p, grad64, grad_aux64, res, err);
    default:
        return apl_fail(err, APL_ERR_UNAVAILABLE, "reference: loss %s not implemented",
                        apl_loss_name(p->loss));
    }
}
