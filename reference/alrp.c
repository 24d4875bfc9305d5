/* alrp.c: the aLRP Loss reference, docs/SPEC_ALRP.md transcribed as literally as possible in
 * double precision: every a_i, b_i, c_i by a loop over the elements, then the definitions one to
 * one. Readable first; every aLRP variant is checked against it. O(|P| * M). */
#include "reference_internal.h"

#include <stdlib.h>

/* The head's fixed eps (SPEC_ALRP.md, "Inputs"). */
#define ALRP_EPS 1e-5

#define H apl_ref_H

/* The localisation order pi: descending logit, ties by descending flat index (a stable ascending
 * sort, reversed). Sorted here as (logit, index) ascending; the loops walk it backwards. */
typedef struct {
    double s;
    size_t k; /* rank among the positives in flat order (the index into e) */
} keyed;

static int ascending(const void *a, const void *b)
{
    const keyed *x = a, *y = b;
    if (x->s != y->s)
        return x->s < y->s ? -1 : 1;
    return x->k < y->k ? -1 : (x->k > y->k);
}

apl_status apl_reference_alrp(const apl_problem *p, double *grad, double *grad_e, apl_result *res,
                              apl_error *err)
{
    const float *s = p->logits;
    const int8_t *t = p->targets;
    const float *e = p->aux;
    const size_t n = p->n;
    const double delta = p->delta;
    for (size_t j = 0; j < n; j++)
        grad[j] = 0.0;

    /* pos[k]: the k-th positive in flat order, so e[k] is its error. */
    size_t *pos, *V, np, nv;
    apl_status st = apl_ref_sets(s, t, n, delta, &pos, &np, &V, &nv, err);
    res->positives = np;
    res->valid_negatives = nv;
    res->loss = res->loss_loc = 0.0;
    if (st != APL_OK || np == 0) /* no positives: both losses 0, every gradient 0 */
        return st;
    double *r = malloc(np * sizeof *r), *w = malloc(np * sizeof *w);
    keyed *order = malloc(np * sizeof *order);
    if (!r || !w || !order) {
        free(pos), free(V), free(r), free(w), free(order);
        return apl_fail(err, APL_ERR_NOMEM, "reference: cannot allocate %zu positives", np);
    }

    /* Each positive alone: a_i, b_i, c_i, r_i, L_i, w_i; grad_i = -L_i/|P|. */
    double sum_b_over_r = 0.0;
    for (size_t k = 0; k < np; k++) {
        const double si = s[pos[k]];
        double a = 0.5, b = 0.0, c = 0.0;
        for (size_t m = 0; m < np; m++) {
            double h = H((double)s[pos[m]] - si, delta);
            a += h;
            if (m != k)
                c += (double)e[m] * h;
        }
        for (size_t v = 0; v < nv; v++)
            b += H((double)s[V[v]] - si, delta);
        r[k] = a + b;
        double L = b > ALRP_EPS ? (b + c) / r[k] : 0.0;
        w[k] = b > ALRP_EPS ? L / b : 0.0;
        grad[pos[k]] = -L / (double)np;
        /* loss_cls = 1 - mean(a_i / r_i) = mean(b_i / r_i): the same number, without the
         * subtraction. */
        sum_b_over_r += b / r[k];
    }
    res->loss = sum_b_over_r / (double)np;

    /* grad_j = (1/|P|) sum_i w_i H(s_j - s_i) for j in V */
    for (size_t v = 0; v < nv; v++) {
        const size_t j = V[v];
        double g = 0.0;
        for (size_t k = 0; k < np; k++)
            g += w[k] * H((double)s[j] - (double)s[pos[k]], delta);
        grad[j] = g / (double)np;
    }

    /* Localisation, in the order pi (order[] walked from its end):
     *   loss_loc      = (1/|P|) sum_q (sum_{p <= q} e_pi(p)) / r_pi(q)
     *   grad_e_pi(p)  = (1/|P|) sum_{q >= p} 1 / r_pi(q)                                      */
    for (size_t k = 0; k < np; k++)
        order[k] = (keyed){(double)s[pos[k]], k};
    qsort(order, np, sizeof *order, ascending);
    double loss_loc = 0.0;
    for (size_t q = 0; q < np; q++) {
        double cum = 0.0;
        for (size_t pp = 0; pp <= q; pp++)
            cum += (double)e[order[np - 1 - pp].k];
        loss_loc += cum / r[order[np - 1 - q].k];
    }
    res->loss_loc = loss_loc / (double)np;
    if (grad_e)
        for (size_t pp = 0; pp < np; pp++) {
            double g = 0.0;
            for (size_t q = pp; q < np; q++)
                g += 1.0 / r[order[np - 1 - q].k];
            grad_e[order[np - 1 - pp].k] = g / (double)np;
        }
    free(pos), free(r), free(w), free(order), free(V);
    return APL_OK;
}
