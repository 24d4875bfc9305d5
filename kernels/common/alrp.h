/* alrp.h: aLRP Loss's own O(|P|) middle (docs/SPEC_ALRP.md), shared by every CPU variant that
 * implements it. The variants compute a_i and b_i as for AP-Loss; what differs is c_i (a window
 * sum over the positives weighted by e), the weights w_i = L_i / b_i in place of the precision
 * recurrence, the positives' gradients -L_i/|P| and the localisation outputs. Everything here is
 * in double over the positives sorted ascending by (logit, flat index), the order
 * apl_gather_positives produces; the negatives' side (G from w) is the AP machinery unchanged. */
#ifndef APL_ALRP_H
#define APL_ALRP_H

#include "cpu_common.h"
#include "aploss/phases.h"

#define APL_ALRP_EPS 1e-5 /* the head's fixed eps */

/* e of every sorted positive: e_sorted[i] = aux[k] where pos[i] is the k-th positive in flat
 * order (the k-th smallest pos[].index). *rank (np entries, malloc'ed; NULL when np == 0) keeps
 * k for writing grad_e back in flat order. */
apl_status apl_alrp_sorted_e(const apl_pos *pos, size_t np, const float *aux, double *e_sorted,
                             size_t **rank, apl_error *err);

/* c_i = sum_{k != i} e_k H(s_k - s_i) for the ascending logits s[0..np) in O(|P| log |P|): the
 * window (s_i - delta, s_i + delta) is a contiguous run of positives, summed over aligned
 * power-of-two blocks whose moments are taken about each block's own first logit, so every term
 * added is >= 0 and c_i is accurate relative to its own size (docs/SPEC_ALRP.md, "Numerical
 * hazards"). Allocates O(|P|) temporaries. */
apl_status apl_alrp_c(const float *s, const double *e, size_t np, double delta, double *c,
                      apl_error *err);

typedef struct {
    double loss_cls, loss_loc;
} apl_alrp_losses;

/* The middle: from a_i, b_i, c_i and e_i of the sorted positives, w[i] (the weight of positive
 * i in G(x) = (1/|P|) sum w_i H(x - s_i)), L[i] (its gradient is -L_i/|P|), grad_e[i] (NULL:
 * not wanted; in sorted order) and both losses. No allocation. */
apl_alrp_losses apl_alrp_weights(size_t np, const double *a, const double *b, const double *c,
                                 const double *e, double *w, double *L, double *grad_e);

/* What the O(|P| * N) core of naive and pruned (apl_quadratic_core) needs for aLRP, in the
 * sorted order: e in, grad_e (NULL: not wanted) and loss_loc out. */
struct apl_alrp_job {
    const double *e;
    double *grad_e;
    double loss_loc;
};

/* apl_quadratic_core's aLRP middle: c_i, then apl_alrp_weights with L into L; returns
 * loss_cls. Allocates O(|P|) temporaries. */
apl_status apl_alrp_quadratic_middle(struct apl_alrp_job *job, const float *s, size_t np,
                                     double delta, const double *a, const double *b, double *w,
                                     double *L, double *loss_cls, apl_error *err);

/* naive and pruned's entry for aLRP: the flat-order e and grad_e of the problem. */
struct apl_alrp_io {
    const float *e;  /* aux, flat order */
    float *grad_e;   /* grad_aux, flat order; NULL: not wanted */
};

/* Writes grad_e (sorted order, as from apl_alrp_weights) into out in flat order via rank. */
void apl_alrp_scatter_grad_e(size_t np, const double *grad_e_sorted, const size_t *rank,
                             float *out);

/* `sorted`'s finish for aLRP (alrp_sorted.c), in place of apl_sorted_finish_ap: b from hist,
 * a = 1/2 + plan->pos_sums, c and e of the plan's positives (gathered again from p with their
 * flat indices), apl_alrp_weights -> plan->pos_grad = -L/|P| and apl_sorted_coefficients;
 * res->loss = loss_cls, res->loss_loc; grad_aux (NULL: not wanted) gets grad_e in flat order.
 * *pos_index (malloc'ed, np entries) is the flat index of each sorted positive, for
 * apl_alrp_sorted_positives after apl_sorted_apply. Does not touch p's gradient array (it
 * holds the histogram's memo). */
apl_status apl_alrp_sorted_finish(apl_sorted_plan *plan, const int64_t *hist,
                                  const apl_problem *p, float *grad_aux, size_t **pos_index,
                                  apl_result *res, apl_error *err);

/* apl_sorted_apply gives tied positives one shared value by logit; aLRP's L_i differs between
 * tied positives with different e: writes each positive's own -L_i/|P| by index. */
void apl_alrp_sorted_positives(const apl_sorted_plan *plan, const size_t *pos_index,
                               float *grad);

#endif
