/* passes.h: the two one-pass baselines the benchmark measures every variant against, at the same
 * element count and thread count (bench/passes.c):
 *  - the memory floor: read logits and targets once, write the gradient once;
 *  - sigmoid focal loss (Lin et al., RetinaNet), forward and gradient in one fused pass: what
 *    most detectors train with instead of a ranking loss.
 * Both split [0, n) into `threads` equal contiguous chunks (OpenMP, schedule(static)). */
#ifndef APLOSS_BENCH_PASSES_H
#define APLOSS_BENCH_PASSES_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* g[j] = t[j] == 1 ? -s[j] : 0.5f * s[j]: the cheapest pass any exact variant makes. */
void apl_bench_floor(const float *s, const int8_t *t, float *g, size_t n, int threads);

/* Sigmoid focal loss with gamma = 2 (RetinaNet's; a square, not powf) and weight alpha for
 * positives (1 - alpha for negatives); targets -1 are ignored (loss 0, gradient 0). With
 * p = sigmoid(s_j): positive: -alpha (1-p)^2 log p; negative: -(1-alpha) p^2 log(1-p).
 * Returns norm * (sum of the element losses) and writes g[j] = norm * d(loss_j)/d(s_j). norm is
 * the caller's normaliser (RetinaNet: 1 / max(1, positive anchors), known from the assignment
 * step that made the targets, so no extra pass counts them). */
double apl_bench_focal(const float *s, const int8_t *t, float *g, size_t n, float alpha,
                       float norm, int threads);

/* 1 when built with OpenMP (threads > 1 are honoured), else 0. */
int apl_bench_passes_openmp(void);

#ifdef __cplusplus
}
#endif
#endif
