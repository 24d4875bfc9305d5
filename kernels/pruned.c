/* pruned.c: the published algorithm. Negatives below min positive - delta have H = 0 against
 * every positive, so compact the valid ones first, then the O(|P| * |V|) loops over them, on
 * apl_threads(p->threads) threads (bitwise the same result for any count). */
#include "cpu_common.h"
#include "kernels.h"
#include "alrp.h"

APL_VARIANT_FN(apl_pruned)
{
    const struct apl_alrp_io alrp = {p->aux, out->grad_aux};
    return apl_quadratic_variant(p->logits, p->targets, p->n, p->delta, 1,
                                 apl_threads(p->threads), out->grad,
                                 p->loss == APL_LOSS_ALRP ? &alrp : NULL, res, err);
}
