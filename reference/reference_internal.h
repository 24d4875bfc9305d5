/* reference_internal.h: the per-loss references behind apl_reference (reference/reference.c),
 * each called after apl_check_problem with a gradient array of n entries. */
#ifndef APL_REFERENCE_INTERNAL_H
#define APL_REFERENCE_INTERNAL_H

#include "aploss/aploss.h"

/* H(x) = clamp(x / (2 delta) + 1/2, 0, 1), docs/SPEC.md. */
static inline double apl_ref_H(double x, double delta)
{
    double h = x / (2.0 * delta) + 0.5;
    return h < 0.0 ? 0.0 : (h > 1.0 ? 1.0 : h);
}

/* P and V of docs/SPEC.md, literally: *pos lists the np positives in flat order; *V the nv
 * negatives with s_j >= min positive - delta. Both malloc'ed (free them); with np == 0 both are
 * NULL and nv is 0. */
apl_status apl_ref_sets(const float *s, const int8_t *t, size_t n, double delta, size_t **pos,
                        size_t *np, size_t **V, size_t *nv, apl_error *err);

/* docs/SPEC_ALRP.md in double: grad (n entries), grad_e (n_aux entries, or NULL), res->loss =
 * loss_cls, res->loss_loc. */
apl_status apl_reference_alrp(const apl_problem *p, double *grad, double *grad_e, apl_result *res,
                              apl_error *err);

/* docs/SPEC_PAP.md in double (reference/pap.c): grad (n entries), grad_iou (n_aux entries, or
 * NULL), res->loss, res->valid_negatives = negatives among the ranked rows. */
apl_status apl_reference_pap(const apl_problem *p, double *grad, double *grad_iou, apl_result *res,
                             apl_error *err);

#endif
