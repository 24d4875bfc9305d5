/* pap_common.h: what the Parameterized AP Loss variants (pap_naive.c, pap_sorted.c) share
 * (docs/SPEC_PAP.md): the piecewise-linear functions, the top-K selection of the ranked rows
 * with its tie rule, the positives with their IoUs, and the per-positive finish (c_i, the loss,
 * the IoU gradient, the column gradient). One place each, so the two cores differ only in how
 * they compute the sums over rows.
 *
 * Throughout: rows S are the ranked entries (top-K of the valid ones), columns are all positives
 * P; h_ji = clamp((s_j - s_i)/2 + 1/2, 0, 1); w_j = 1 - I2(IoU_j) for a positive row, 1 for a
 * negative one; N_i = sum_j w_j H2(h_ji), D_i = sum_j H1(h_ji), Q_i = sum_j w_j H2'(h_ji) [clamp
 * passes]; c_i = I3(v_i) / ((P + 1e-8) D_i). */
#ifndef APL_PAP_COMMON_H
#define APL_PAP_COMMON_H

#include "aploss/aploss.h"

/* The five functions in the order of the parameter rows. */
enum { APL_PAP_H2 = 0, APL_PAP_I2, APL_PAP_I3, APL_PAP_I1, APL_PAP_H1, APL_PAP_FNS };
enum { APL_PAP_POINTS = 6, APL_PAP_PIECES = 5 };

/* One piecewise-linear function through (X_0,Y_0)..(X_5,Y_5), X_0 = 0 < X_1 < .. < X_5 = 1
 * (apl_check_pap_params). Doubles holding the float32 control points exactly. */
typedef struct {
    double X[APL_PAP_POINTS], Y[APL_PAP_POINTS];
    double sigma[APL_PAP_PIECES]; /* slope of piece m, (Y_m+1 - Y_m) / (X_m+1 - X_m) */
    double T[APL_PAP_POINTS];     /* breakpoints in logit offsets, 2 X_m - 1 (exact in double) */
} apl_pwl;

typedef struct {
    apl_pwl f[APL_PAP_FNS];
    int h1_step; /* 4 parameter rows: H1 is the step sign(s_j - s_i)/2 + 1/2 */
} apl_pap_fns;

void apl_pap_fns_init(const float *params, int rows, apl_pap_fns *fns);

/* The piece holding x in [0, 1]: the contract's m = #{k : x > X_k} + [x = 0] #{k : X_k = 0} - 1,
 * which for X_0 = 0 < X_1 < .. < X_5 = 1 is #{k in 1..4 : x > X_k}: pieces are (X_m, X_m+1],
 * x = 0 in piece 0, a breakpoint takes the left piece. */
static inline int apl_pwl_piece(const apl_pwl *f, double x)
{
    return (x > f->X[1]) + (x > f->X[2]) + (x > f->X[3]) + (x > f->X[4]);
}
static inline double apl_pwl_value(const apl_pwl *f, double x)
{
    int m = apl_pwl_piece(f, x);
    return f->Y[m] + f->sigma[m] * (x - f->X[m]);
}
static inline double apl_pwl_slope(const apl_pwl *f, double x)
{
    return f->sigma[apl_pwl_piece(f, x)];
}

/* ---- the rows: top-K of the valid entries ----
 * Tie rule at the cut (the fixtures' rule): among entries whose logit equals the K-th largest
 * valid logit, those with the lower flat index are ranked first. -0 and +0 are one value. */
typedef struct {
    int all;     /* 1: every valid entry is a row (topk 0 or topk >= valid entries) */
    float tau;   /* otherwise the K-th largest valid logit: rows are the valid entries with */
    size_t cut;  /* s > tau, and those with s == tau and flat index <= cut */
    size_t rows; /* |S| */
} apl_pap_rows;

apl_status apl_pap_select(const float *logits, const int8_t *targets, size_t n, size_t topk,
                          int threads, apl_pap_rows *sel, apl_error *err);

static inline int apl_pap_is_row(const apl_pap_rows *sel, float s, int8_t t, size_t j)
{
    return t != -1 && (sel->all || s > sel->tau || (s == sel->tau && j <= sel->cut));
}

/* ---- the positives ---- */
typedef struct {
    double s;     /* logit */
    size_t index; /* flat index of the element */
    size_t k;     /* its place in the flat order of the positives: aux[k] is its IoU */
    double v;     /* IoU */
    double w;     /* 1 - I2(v) when a row, else 0 */
    int row;      /* 1 when it is one of the rows S */
} apl_pap_pos;

/* The positives sorted by ascending logit (ties by flat index); *pos malloc'ed, NULL when none. */
apl_status apl_pap_gather(const apl_problem *p, const apl_pap_fns *fns, const apl_pap_rows *sel,
                          apl_pap_pos **pos, size_t *np, apl_error *err);

/* Sorts positives by ascending logit, ties by flat index (the order apl_pap_gather returns). */
void apl_pap_pos_sort(apl_pap_pos *pos, size_t np);

/* c_i = I3(v_i)/((P + 1e-8) D_i) for every sorted positive; returns the loss
 * sum_i [1 - I1(v_i) + I3(v_i) N_i/D_i] / (P + 1e-8), summed in the sorted order. */
double apl_pap_loss(const apl_pap_fns *fns, const apl_pap_pos *pos, size_t np, const double *N,
                    const double *D, double *c);

/* Writes grad_aux[pos[i].k] = dL/dv_i = (-I1'(v_i) + I3'(v_i) N_i/D_i)/(P + 1e-8)
 * - [i in S] I2'(v_i) F_i, with F_i = sum_k c_k H2(h_ik) (positives that are not rows: unused). */
void apl_pap_grad_aux(const apl_pap_fns *fns, const apl_pap_pos *pos, size_t np, const double *N,
                      const double *D, const double *F, float *grad_aux);

/* The number of negatives among the rows (apl_result.valid_negatives for PAP). */
size_t apl_pap_negative_rows(const apl_pap_rows *sel, const apl_pap_pos *pos, size_t np);

/* The start both PAP variants share: the functions, the rows, the sorted positives and *res.
 * With no positives the answer is complete (loss 0, grad zeroed) and *np is 0. */
apl_status apl_pap_begin(const apl_problem *p, int threads, apl_pap_fns *fns, apl_pap_rows *sel,
                         apl_pap_pos **pos, size_t *np, apl_result *res, float *grad,
                         apl_error *err);

/* ---- segment phases (pap_sorted.c), shared by sorted and cuda_pap ----
 * The exact segment formulation in three steps around the O(M) passes, which are the caller's:
 *   build:  the merged breakpoints O (S of them, ascending, distinct) of the sorted positives;
 *           *plan is NULL (with APL_OK) when a breakpoint is not exact in double: the caller
 *           then hands the call to naive;
 *   pass 1: (caller) every negative row x adds to the histogram at k = first index with
 *           O_k >= x (S + 1 segments): count[k] += 1, offset[k] += x - O_k-1 (k > 0),
 *           tie[k] += [k < S and x == O_k]; hist is count, offset, tie, S + 1 each, and every
 *           negative row's logit must pass apl_pap_logit_exact (else naive);
 *   middle: adds the positive rows, computes the loss, G_k and Gfoot_k (S + 1 each), the
 *           positives' gradients (grad_pos[i] for pos[i], sorted order) and grad_aux (when set);
 *   pass 2: (caller) a negative row at segment k gets G_k + [k < S and x == O_k] Gfoot_k, any
 *           other non-positive 0, and positive pos[i] gets grad_pos[i].
 * The plan keeps pointers to fns and pos: they must outlive it. */
typedef struct apl_pap_seg apl_pap_seg;
apl_status apl_pap_seg_build(const apl_pap_fns *fns, const apl_pap_pos *pos, size_t np,
                             apl_pap_seg **plan, apl_error *err);
const double *apl_pap_seg_breakpoints(const apl_pap_seg *plan, size_t *S);
size_t apl_pap_seg_find(const apl_pap_seg *plan, double x);
apl_status apl_pap_seg_middle(const apl_pap_seg *plan, const double *hist, double *loss,
                              double *Gk, double *Gf, double *grad_pos, float *grad_aux,
                              apl_error *err);
void apl_pap_seg_free(apl_pap_seg *plan);
/* 1 when comparisons of this logit with the breakpoints in double are the float64 rule: 0, or
 * a magnitude in [2^-29, 2^26]. */
int apl_pap_logit_exact(float s);

#endif
