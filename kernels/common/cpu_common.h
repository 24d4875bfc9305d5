/* cpu_common.h: the steps every CPU variant shares, so each variant file holds only what makes
 * it different: gathering and sorting the positives, the exact pruning threshold, and the
 * ascending max_prec recurrence in the SPEC's numerically stable form. */
#ifndef APL_CPU_COMMON_H
#define APL_CPU_COMMON_H

#include "aploss/aploss.h"

#include <string.h>

/* 1 when one of the eight targets at t is 1: the has-zero-byte test on t ^ 0x0101.., so a scan for
 * the positives (0.01% of elements or fewer) skips eight others without a branch each. */
static inline int apl_any_positive8(const int8_t *t)
{
    const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
    uint64_t w;
    memcpy(&w, t, 8);
    w ^= ones;
    return ((w - ones) & ~w & highs) != 0;
}

/* apl_any_positive8 over 64 targets, without a branch (the compiler vectorises it): the scans
 * for the positives skip 64 elements per test. */
static inline int apl_any_positive64(const int8_t *t)
{
    const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
    uint64_t any = 0;
    for (int i = 0; i < 8; i++) {
        uint64_t w;
        memcpy(&w, t + 8 * i, 8);
        w ^= ones;
        any |= (w - ones) & ~w & highs;
    }
    return any != 0;
}

/* The first index in [j, j1) whose target is 1, or j1: 64 targets per test, then 8, then one
 * (the positives are 0.1% of the elements or fewer). The scans for the positives call it from
 * each positive found. */
static inline size_t apl_next_positive(const int8_t *t, size_t j, size_t j1)
{
    while (j + 64 <= j1 && !apl_any_positive64(t + j))
        j += 64;
    while (j + 8 <= j1 && !apl_any_positive8(t + j))
        j += 8;
    while (j < j1 && t[j] != 1)
        j++;
    return j;
}

typedef struct {
    float s;      /* logit */
    size_t index; /* position in the input */
} apl_pos;

/* Positives sorted by ascending logit (ties by index). *pos is malloc'ed (NULL when np == 0).
 * Starts *res (positives counted, loss 0); with no positives the SPEC's answer is complete
 * (loss 0, every gradient 0): grad is zeroed and the caller returns. */
apl_status apl_gather_positives(const float *logits, const int8_t *targets, size_t n,
                                apl_pos **pos, size_t *np, float *grad, apl_result *res,
                                apl_error *err);

/* The smallest float f with (double)f >= (double)min_pos - delta: s_j >= f in float is then
 * exactly the SPEC's s_j >= thr, with no double compare per element. */
float apl_prune_threshold(float min_pos, double delta);

/* Given a_i and b_i for the sorted positives, runs the SPEC's recurrence and fills
 * w[i] (the weight of positive i in G) and one_minus_prec[i]; returns the loss, the mean of
 * 1 - prec_i. Uses 1 - cur = b/(a+b) and w = (1 - max_prec)/b on the rescaled path. */
double apl_precision_recurrence(size_t np, const double *a, const double *b, double *w,
                                double *one_minus_prec);

/* Zeroes grad and writes -(1 - prec_i)/|P| at every positive's position. */
void apl_write_positive_grads(float *grad, size_t n, const apl_pos *pos, size_t np,
                              const double *one_minus_prec);

#endif

struct apl_alrp_job; /* alrp.h */
struct apl_alrp_io;

/* The O(|P| * |X|) core of naive and pruned: the SPEC's loops over the negatives' logits x[]
 * (all negatives for naive, only the valid ones for pruned). Computes a_i, b_i for every sorted
 * positive, runs the recurrence, writes the positives' gradients and gx[j] = G(x[j]) as float.
 * Float H per term (x - s_i rounds by at most half an ulp of a number below delta inside the
 * window, far inside the tolerance), double accumulation. `threads` OpenMP threads (1: none);
 * the result is bitwise the same for any count. alrp: NULL for AP-Loss; otherwise
 * aLRP Loss's middle (alrp.h) replaces the precision recurrence and one_minus_prec receives
 * L_i (the positives' gradients are -L_i/|P| either way). */
apl_status apl_quadratic_core(const float *x, size_t nx, const apl_pos *pos, size_t np,
                              double delta, int threads, float *gx, double *loss,
                              double *one_minus_prec, struct apl_alrp_job *alrp, apl_error *err);

/* naive and pruned in one body: gathers the negatives with s >= thr (thr = -inf: every
 * negative, no pruning), runs apl_quadratic_core over them and scatters the gradient. */
apl_status apl_quadratic_variant(const float *logits, const int8_t *targets, size_t n,
                                 double delta, int prune, int threads, float *grad,
                                 const struct apl_alrp_io *alrp, apl_result *res, apl_error *err);
