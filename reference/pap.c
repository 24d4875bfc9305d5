/* pap.c: the Parameterized AP Loss reference, docs/SPEC_PAP.md transcribed as literally as
 * possible in double precision: the contract's piece rule, the top-K by a full sort with the
 * fixtures' tie rule, then the dense sums over every (row, column) pair. Readable first; the
 * PAP variants are checked against it. O(|S| * |P|) time, O(M) memory. It shares no code with
 * the variants (kernels/common/pap_common.c), so a mistake there cannot hide here. */
#include "reference_internal.h"

#include <stdlib.h>
#include <string.h>

/* Function r of the parameter rows: points (X_k, Y_k) = (params[12r+2k], params[12r+2k+1]). */
typedef struct {
    double X[6], Y[6];
} fn;

/* m = #{k : x > X_k} + [x = 0] * #{k : X_k = 0} - 1 */
static int piece(const fn *f, double x)
{
    int m = -1;
    for (int k = 0; k < 6; k++)
        m += (x > f->X[k]) + (x == 0.0 && f->X[k] == 0.0);
    return m;
}

static double slope(const fn *f, int m)
{
    return (f->Y[m + 1] - f->Y[m]) / (f->X[m + 1] - f->X[m]);
}

static double value(const fn *f, double x)
{
    int m = piece(f, x);
    return f->Y[m] + slope(f, m) * (x - f->X[m]);
}

static double derivative(const fn *f, double x)
{
    return slope(f, piece(f, x));
}

typedef struct {
    float s;
    size_t index;
} entry;

/* Descending logit, then ascending flat index: the first K entries are the rows. */
static int by_rank(const void *a, const void *b)
{
    const entry *x = a, *y = b;
    if (x->s != y->s)
        return x->s > y->s ? -1 : 1;
    return x->index < y->index ? -1 : (x->index > y->index);
}

apl_status apl_reference_pap(const apl_problem *p, double *grad64, double *grad_aux64,
                             apl_result *res, apl_error *err)
{
    const float *s = p->logits;
    const int8_t *t = p->targets;
    const size_t n = p->n;
    fn H2, I2, I3, I1, H1;
    fn *all[5] = {&H2, &I2, &I3, &I1, &H1};
    for (int r = 0; r < p->param_rows; r++)
        for (int k = 0; k < 6; k++) {
            all[r]->X[k] = p->params[12 * r + 2 * k];
            all[r]->Y[k] = p->params[12 * r + 2 * k + 1];
        }
    const int h1_step = p->param_rows == 4;

    for (size_t j = 0; j < n; j++)
        grad64[j] = 0.0;
    size_t np = 0, nvalid = 0;
    for (size_t j = 0; j < n; j++) {
        np += t[j] == 1;
        nvalid += t[j] != -1;
    }
    *res = (apl_result){.positives = np};

    /* S: every valid entry, or the K with the largest logits (ties: lower flat index first). */
    unsigned char *row = calloc(n ? n : 1, 1);
    entry *e = malloc((nvalid ? nvalid : 1) * sizeof *e);
    size_t *P = malloc((np ? np : 1) * sizeof *P);
    double *N = malloc((np ? np : 1) * sizeof *N), *D = malloc((np ? np : 1) * sizeof *D);
    double *c = malloc((np ? np : 1) * sizeof *c);
    double *u = calloc(n ? n : 1, sizeof *u); /* IoU of element j when a positive */
    if (!row || !e || !P || !N || !D || !c || !u) {
        free(row), free(e), free(P), free(N), free(D), free(c), free(u);
        return apl_fail(err, APL_ERR_NOMEM, "reference (pap): cannot allocate %zu elements", n);
    }
    for (size_t j = 0, k = 0; j < n; j++)
        if (t[j] != -1)
            e[k++] = (entry){s[j], j};
    size_t K = p->topk == 0 || p->topk > nvalid ? nvalid : p->topk;
    if (K < nvalid)
        qsort(e, nvalid, sizeof *e, by_rank);
    for (size_t k = 0; k < K; k++)
        row[e[k].index] = 1;
    for (size_t j = 0, k = 0; j < n; j++)
        if (t[j] == 1) {
            P[k] = j;
            u[j] = p->aux[k];
            k++;
        }
    for (size_t j = 0; j < n; j++)
        res->valid_negatives += row[j] && t[j] == 0;

    /* w_j = 1 - I2(u_j), u_j = 0 for a negative */
    /* N_i = sum_j w_j H2(h_ji),  D_i = sum_j H1(h_ji),  h_ji = clamp((s_j - s_i)/2 + 1/2, 0, 1) */
    for (size_t i = 0; i < np; i++) {
        double si = s[P[i]];
        N[i] = D[i] = 0.0;
        for (size_t j = 0; j < n; j++) {
            if (!row[j])
                continue;
            double d = (double)s[j] - si;
            double h = d / 2.0 + 0.5;
            h = h < 0.0 ? 0.0 : (h > 1.0 ? 1.0 : h);
            N[i] += (1.0 - value(&I2, u[j])) * value(&H2, h);
            D[i] += h1_step ? (d > 0.0 ? 1.0 : (d < 0.0 ? 0.0 : 0.5)) : value(&H1, h);
        }
    }

    /* L = 1/(P + 1e-8) sum_i [1 - I1(v_i) + I3(v_i) N_i / D_i] */
    const double Pe = (double)np + 1e-8;
    double L = 0.0;
    for (size_t i = 0; i < np; i++) {
        double v = p->aux[i];
        L += 1.0 - value(&I1, v) + value(&I3, v) * N[i] / D[i];
        c[i] = value(&I3, v) / (Pe * D[i]);
    }
    res->loss = np ? L / Pe : 0.0;

    /* Each pair whose clamp passes the gradient, -1 <= s_j - s_i <= 1:
     * g_j += w_j (c_i/2) H2'(h_ji),  g_i -= w_j (c_i/2) H2'(h_ji) */
    for (size_t i = 0; i < np; i++) {
        double si = s[P[i]];
        for (size_t j = 0; j < n; j++) {
            if (!row[j])
                continue;
            double h = ((double)s[j] - si) / 2.0 + 0.5;
            if (!(h >= 0.0 && h <= 1.0))
                continue;
            double g = (1.0 - value(&I2, u[j])) * c[i] / 2.0 * derivative(&H2, h);
            grad64[j] += g;
            grad64[P[i]] -= g;
        }
    }

    /* dL/dv_i = (-I1'(v_i) + I3'(v_i) N_i/D_i)/(P + 1e-8) - [i in S] I2'(v_i) sum_k c_k H2(h_ik) */
    if (grad_aux64)
        for (size_t i = 0; i < np; i++) {
            double v = p->aux[i];
            double g = (-derivative(&I1, v) + derivative(&I3, v) * N[i] / D[i]) / Pe;
            if (row[P[i]]) {
                double F = 0.0;
                for (size_t k = 0; k < np; k++) {
                    double h = ((double)s[P[i]] - (double)s[P[k]]) / 2.0 + 0.5;
                    h = h < 0.0 ? 0.0 : (h > 1.0 ? 1.0 : h);
                    F += c[k] * value(&H2, h);
                }
                g -= derivative(&I2, v) * F;
            }
            grad_aux64[i] = g;
        }
    free(row), free(e), free(P), free(N), free(D), free(c), free(u);
    return APL_OK;
}
