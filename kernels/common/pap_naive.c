/* pap_naive.c: Parameterized AP Loss by the O(|S| * |P|) loops (docs/SPEC_PAP.md), the official
 * code's computation without its dense |S| x |P| tensors. One pass over (column, row) pairs for
 * N_i, D_i and Q_i, one over (row, column) pairs for the row gradients. Each output is summed by
 * one thread in a fixed order, so the result is the same for any thread count.
 *
 * Classification is exact: h = (s_j - s_i)/2 + 1/2 in double from float32 logits, compared with
 * the float32 control points held in double, which is the contract's float64 rule (the
 * gradient jumps at a breakpoint, so a rounded h could move a row to the wrong piece). */
#include "kernels.h"
#include "pap_common.h"

#include <stdlib.h>
#include <string.h>

/* One (row, column) pair: adds w H2(h), H1(h) and w H2'(h) [clamp passes] for d = s_j - s_i. */
static inline void column_pair(const apl_pap_fns *fns, double d, double w, double *n2, double *d1,
                               double *q)
{
    double h = d * 0.5 + 0.5;
    int pass = h >= 0.0 && h <= 1.0;
    double hc = h < 0.0 ? 0.0 : (h > 1.0 ? 1.0 : h);
    const apl_pwl *H2 = &fns->f[APL_PAP_H2];
    int m = apl_pwl_piece(H2, hc);
    *n2 += w * (H2->Y[m] + H2->sigma[m] * (hc - H2->X[m]));
    if (pass)
        *q += w * H2->sigma[m];
    if (fns->h1_step)
        *d1 += d > 0.0 ? 1.0 : (d == 0.0 ? 0.5 : 0.0);
    else
        *d1 += apl_pwl_value(&fns->f[APL_PAP_H1], hc);
}

APL_VARIANT_FN(apl_pap_naive)
{
    const int threads = apl_threads(p->threads);
    const float *s = p->logits;
    const int8_t *t = p->targets;
    const size_t n = p->n;
    float *grad = out->grad;
    apl_pap_fns fns;
    apl_pap_rows sel;
    apl_pap_pos *pos;
    size_t np;
    apl_status st = apl_pap_begin(p, threads, &fns, &sel, &pos, &np, res, grad, err);
    if (st != APL_OK || np == 0)
        return st;
    const apl_pwl *H2 = &fns.f[APL_PAP_H2];

    /* The negative rows' logits, compacted; the positive rows are pos[] with row set. */
    const size_t nneg = res->valid_negatives;
    float *x = malloc((nneg ? nneg : 1) * sizeof *x);
    double *mem = malloc(6 * np * sizeof *mem);
    if (!x || !mem) {
        free(x), free(mem), free(pos);
        return apl_fail(err, APL_ERR_NOMEM, "naive (pap): cannot allocate %zu rows", nneg);
    }
    for (size_t j = 0, r = 0; j < n; j++)
        if (t[j] == 0 && apl_pap_is_row(&sel, s[j], 0, j))
            x[r++] = s[j];
    double *N = mem, *D = mem + np, *Q = D + np, *c = Q + np, *F = c + np, *si = F + np;
    for (size_t i = 0; i < np; i++)
        si[i] = pos[i].s;

    /* Columns: N_i, D_i, Q_i. */
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
    for (size_t i = 0; i < np; i++) {
        double n2 = 0.0, d1 = 0.0, q = 0.0;
        for (size_t r = 0; r < nneg; r++)
            column_pair(&fns, (double)x[r] - si[i], 1.0, &n2, &d1, &q);
        double self = 0.0; /* the self pair: in N and D, but its gradient cancels (below) */
        for (size_t k = 0; k < np; k++)
            if (pos[k].row)
                column_pair(&fns, pos[k].s - si[i], pos[k].w, &n2, &d1, k == i ? &self : &q);
        N[i] = n2, D[i] = d1, Q[i] = q;
    }
    res->loss = apl_pap_loss(&fns, pos, np, N, D, c);

    /* Rows: g_j = w_j sum_i (c_i/2) H2'(h_ji) [clamp passes]; negatives here, positives below. */
#pragma omp parallel for num_threads(threads) schedule(static)
    for (size_t j = 0; j < n; j++) {
        double g = 0.0;
        if (t[j] == 0 && apl_pap_is_row(&sel, s[j], 0, j)) {
            const double xj = (double)s[j];
            for (size_t i = 0; i < np; i++) {
                double h = (xj - si[i]) * 0.5 + 0.5;
                if (h >= 0.0 && h <= 1.0)
                    g += c[i] * H2->sigma[apl_pwl_piece(H2, h)];
            }
            g *= 0.5;
        }
        grad[j] = (float)g;
    }
    /* Positives: the row part (when a row) minus the column part (c_i/2) Q_i, in double where
     * the two cancel; F_i = sum_k c_k H2(h_ik) for the IoU gradient. The self pair adds
     * w_i c_i H2'(1/2)/2 to both parts: it is left out of both, so a positive alone in its
     * window gets exactly 0, as the contract's autograd does. */
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
    for (size_t i = 0; i < np; i++) {
        double g = 0.0, f = 0.0;
        if (pos[i].row) {
            for (size_t k = 0; k < np; k++) {
                double h = (si[i] - si[k]) * 0.5 + 0.5;
                double hc = h < 0.0 ? 0.0 : (h > 1.0 ? 1.0 : h);
                int m = apl_pwl_piece(H2, hc);
                f += c[k] * (H2->Y[m] + H2->sigma[m] * (hc - H2->X[m]));
                if (h >= 0.0 && h <= 1.0 && k != i)
                    g += c[k] * H2->sigma[m];
            }
            g *= 0.5 * pos[i].w;
        }
        F[i] = f;
        grad[pos[i].index] = (float)(g - 0.5 * c[i] * Q[i]);
    }
    if (out->grad_aux)
        apl_pap_grad_aux(&fns, pos, np, N, D, F, out->grad_aux);
    free(x), free(mem), free(pos);
    return APL_OK;
}
