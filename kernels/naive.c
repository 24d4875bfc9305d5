/* naive.c: the published algorithm without its pruning line. For every positive, a loop over
 * every negative: O(|P| * M). Vectorised and double-accumulated like the others (see
 * apl_quadratic_core), so its slowness is the algorithm's, not neglect's. */
#include "cpu_common.h"
#include "kernels.h"
#include "alrp.h"

APL_VARIANT_FN(apl_naive)
{
    if (p->loss == APL_LOSS_PAP)
        return apl_pap_naive(p, out, res, err);
    const struct apl_alrp_io alrp = {p->aux, out->grad_aux};
    return apl_quadratic_variant(p->logits, p->targets, p->n, p->delta, 0, 1, out->grad,
                                 p->loss == APL_LOSS_ALRP ? &alrp : NULL, res, err);
}
