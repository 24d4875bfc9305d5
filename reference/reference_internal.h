/* reference_internal.h: the per-loss references behind apl_reference (reference/reference.c),
 * each called after apl_check_problem with a gradient array of n entries. */
#ifndef APL_REFERENCE_INTERNAL_H
#define APL_REFERENCE_INTERNAL_H

#include "aploss/aploss.h"

/* docs/SPEC_ALRP.md in double: grad (n entries), grad_e (n_aux entries, or NULL), res->loss =
 * loss_cls, res->loss_loc. */
apl_status apl_reference_alrp(const apl_problem *p, double *grad, double *grad_e, apl_result *res,
                              apl_error *err);

/* docs/SPEC_PAP.md in double (reference/pap.c): grad (n entries), grad_iou (n_aux entries, or
 * NULL), res->loss, res->valid_negatives = negatives among the ranked rows. */
apl_status apl_reference_pap(const apl_problem *p, double *grad, double *grad_iou, apl_result *res,
                             apl_error *err);

#endif
