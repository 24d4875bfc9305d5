/* aploss/phases.h: the sorted algorithm (docs/SPEC.md "Cost and the O(M log |P|) formulation")
 * as separate phases, so that its steps can run in different threads, processes or machines:
 *
 *   plan       sorted positive logits + delta -> breakpoints O (2|P|), windows, segment index,
 *              and the positives' own window sums
 *   histogram  elements -> per-segment (count, offset sum) in integer fixed point: the sum of
 *              histograms is exact, so any split of the elements and any reduction order (threads,
 *              an all-reduce across processes) gives the same bits
 *   finish     summed histogram -> b_i (window sums) -> the loss's weights w_i -> per-segment
 *              coefficients alpha_k, beta_k (G(x) = alpha_k + beta_k (x - O_k))
 *   apply      elements -> gradient: G at valid negatives, the positive's value at positives,
 *              exactly 0 elsewhere
 *
 * The variant `sorted` is exactly these phases run in one process (kernels/sorted.c). A
 * distributed driver all-gathers the positives' logits, sorts them (ascending float order) and
 * runs apl_sorted_plan_create everywhere, apl_sorted_histogram on its local elements, sums the
 * histogram arrays with an all-reduce (int64, SUM), runs apl_sorted_finish_ap and
 * apl_sorted_apply on its local elements: the loss and every gradient bit equal the one-process
 * result on the concatenated batch.
 *
 * Finish is split into pieces so another loss can reuse the skeleton (aLRP, docs/SPEC_ALRP.md):
 * apl_sorted_window_sums (b_i from the negatives' histogram; plan->pos_sums are the positives'
 * sums, from which a_i = 1/2 + pos_sums_i), the loss's own weights (AP: apl_sorted_ap_weights;
 * aLRP: w_i = L_i / b_i), then apl_sorted_coefficients (alpha_k, beta_k from any w_i >= 0) and
 * plan->pos_grad (each sorted positive's gradient, written by the middle).
 *
 * Histogram layout: APL_HIST_WORDS int64 per segment, segment k at [3k, 3k+3):
 *   [3k]   the number of elements in segment k
 *   [3k+1] sum of the low APL_HIST_LIMB_BITS bits of the elements' offsets
 *   [3k+2] sum of the offsets shifted right by APL_HIST_LIMB_BITS
 * An element's offset is q = round((x - O_k) / (2 delta) * 2^52), clamped to [0, 2^52 - 1]
 * (only segments inside a ramp window use it, and those are at most 2 delta wide). Both limbs are
 * below 2^26 per element, so every word stays exact in int64 for fewer than APL_HIST_MAX_ELEMENTS
 * elements in all (over every process), and an all-reduce needs no carries. The window sums then
 * use 128-bit integers: b_i is exact up to one 2^-52 ramp width per element.
 *
 * Thread safety: a plan is read-only in histogram and apply, which may run at once from any
 * number of threads; finish and coefficients write into the plan (alpha, beta, pos_grad) and must
 * not overlap any other call on the same plan. Every function is reentrant (no global state).
 */
#ifndef APLOSS_PHASES_H
#define APLOSS_PHASES_H

#include "aploss/aploss.h"

#ifdef __cplusplus
extern "C" {
#endif

#define APL_HIST_WORDS 3
#define APL_HIST_LIMB_BITS 26
#define APL_HIST_OFFSET_BITS 52
#define APL_HIST_MAX_ELEMENTS ((uint64_t)1 << 37)

struct apl_seg_index; /* kernels/common/segment_index.h */

/* A plan. The fields are for reading (the pieces of finish and other losses' middles need
 * them); only the phase functions write into it. */
typedef struct {
    size_t np;       /* |P| */
    size_t segments; /* S = 2 |P| */
    double delta;
    float thr;             /* valid negative: target 0 and logit >= thr (float compare, exact) */
    const float *pos;      /* np positive logits, ascending (a copy) */
    const double *O;       /* S breakpoints ascending, then O[S] = +inf */
    const uint32_t *lo;    /* np: O[lo_i] = s_i - delta (first such index) */
    const uint32_t *hi;    /* np: O[hi_i] = s_i + delta; window i covers segments [lo_i, hi_i) */
    const uint64_t *E;     /* S: round((O_k - O_0) / (2 delta) * 2^52), the fixed-point positions */
    const double *pos_sums; /* np: sum over positives k of H(s_k - s_i), its own 1/2 included */
    int simd;              /* 2 (default): the widest kernels the CPU has (AVX-512, AVX2);
                              1: at most AVX2; 0: the portable kernels. Bitwise the same
                              results whichever runs. */
    /* Written by the middle (finish): */
    double *alpha, *beta;  /* S: G(x) = alpha_k + beta_k (x - O_k) on segment k */
    double *pos_grad;      /* np: gradient of the i-th sorted positive */
    const struct apl_seg_index *index;
} apl_sorted_plan;

/* Builds the plan from the np >= 1 positive logits in ascending order (finite; repeats allowed)
 * and delta (> 0, finite). Fails with APL_ERR_ARG when np > 2^31 - 1 or the positives lie
 * outside the segment algorithm's range (span above 4096 delta or |s| above 2^24 delta; the
 * caller then needs an O(|P| N) variant, as `sorted` falls back to `pruned`). Allocates O(|P|)
 * memory (one block, freed by apl_sorted_plan_free). Reentrant. */
apl_status apl_sorted_plan_create(const float *pos_sorted, size_t np, double delta,
                                  apl_sorted_plan **plan, apl_error *err);
void apl_sorted_plan_free(apl_sorted_plan *plan); /* NULL is fine */

/* int64 entries of one histogram: APL_HIST_WORDS * segments. */
size_t apl_sorted_hist_len(const apl_sorted_plan *plan);

/* Adds the valid negatives among n elements (target 0, logit >= plan->thr) to hist (zero it
 * first, or pass the running histogram of earlier parts) and their count to *valid (if not
 * NULL, set, not added). memo: NULL, or n uint32 entries of scratch that histogram fills for
 * apl_sorted_apply on the same elements, per chunk of 1024 elements: for a chunk with few valid
 * negatives their list (logit, segment, position), for the others each element's segment or an
 * invalid mark (16 bits each when there are fewer than 65535 segments), so that apply does not
 * search again and reads neither a listed chunk's logits and targets nor a coded chunk's
 * targets. It may be the memory of that call's gradient (apply reads a chunk's entries before
 * it writes the chunk). The layout is this library's own; it does not depend on the thread
 * counts of either call, but it does on the memo's address (16-bit codes start at a cache
 * line), so apply must be given the same array, not a copy. Uses `threads`
 * threads (apl_threads convention: 0 = default); the result does not depend on it. Allocates a
 * private histogram per thread when the segments are few (S <= 2^16) and adds atomically
 * otherwise. Safe to call concurrently on one plan with different hist. */
apl_status apl_sorted_histogram(const apl_sorted_plan *plan, const float *logits,
                                const int8_t *targets, size_t n, int64_t *hist, uint32_t *memo,
                                int threads, size_t *valid, apl_error *err);

/* Adds m values (each >= O_0, e.g. the positives) to hist, every one counted. No allocation. */
void apl_sorted_hist_values(const apl_sorted_plan *plan, const float *x, size_t m,
                            int64_t *hist);

/* out[i] = sum over the histogram's elements of H(x - s_i), i < np: b_i for the negatives'
 * histogram. O(|P|) with 128-bit integer prefix sums; an empty window gives exactly 0. Fails
 * (APL_ERR_INPUT) when the histogram holds more than APL_HIST_MAX_ELEMENTS elements.
 * Allocates O(|P|) temporary memory. */
apl_status apl_sorted_window_sums(const apl_sorted_plan *plan, const int64_t *hist, double *out,
                                  apl_error *err);

/* AP-Loss's middle (docs/SPEC.md): the precision recurrence over the ascending positives with
 * a_i, b_i; writes w[i] and pos_grad[i] = -(1 - prec_i)/|P|; returns the loss. No allocation. */
double apl_sorted_ap_weights(size_t np, const double *a, const double *b, double *w,
                             double *pos_grad);

/* plan->alpha and plan->beta from the weights w_i >= 0 (finite) of the sorted positives:
 * G(x) = (1/|P|) sum_i w_i H(x - s_i). Integer fixed-point sums (the scale adapts to sum w_i),
 * so G is exactly 0 wherever every H is 0. No allocation. */
apl_status apl_sorted_coefficients(apl_sorted_plan *plan, const double *w, apl_error *err);

/* AP-Loss finish: b from hist, a = 1/2 + pos_sums, apl_sorted_ap_weights (into
 * plan->pos_grad), apl_sorted_coefficients. *loss = 1 - AP. Allocates O(|P|) temporaries. */
apl_status apl_sorted_finish_ap(apl_sorted_plan *plan, const int64_t *hist, double *loss,
                                apl_error *err);

/* Writes all n gradient entries: G at valid negatives, pos_grad of the matching sorted
 * positive (by logit; tied positives share a value) at targets == 1, exactly 0 elsewhere.
 * memo: NULL, or the array apl_sorted_histogram filled for these same elements, at the same
 * address (it may be grad itself). A positive logit that is not in the plan is APL_ERR_INPUT. `threads` as in histogram;
 * no allocation. */
apl_status apl_sorted_apply(const apl_sorted_plan *plan, const float *logits,
                            const int8_t *targets, size_t n, const uint32_t *memo, float *grad,
                            int threads, apl_error *err);

#ifdef __cplusplus
}
#endif
#endif
