/* passes.c: the memory floor and the fused sigmoid focal loss (passes.h).
 *
 * Built with -ffast-math (bench/CMakeLists.txt, this file only) because glibc declares its
 * vector expf/log1pf (libmvec) only under __FAST_MATH__: without it the focal loop stays scalar
 * and the baseline would be slower than a real fused kernel. That is safe here: inputs are finite
 * and the formulation never forms inf or NaN (expf of -|s| <= 0, log1pf of a value in (0, 1]).
 * The file is compiled, not linked, with the flag, so no flush-to-zero start-up code is pulled
 * into the benchmark. tests: bench/test_focal.c checks the focal pass against float64. */
#include "passes.h"

#include <math.h>

#ifdef _OPENMP
#include <omp.h>
#endif

int apl_bench_passes_openmp(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

void apl_bench_floor(const float *s, const int8_t *t, float *g, size_t n, int threads)
{
    (void)threads;
#pragma omp parallel for simd schedule(static) num_threads(threads)
    for (size_t j = 0; j < n; j++)
        g[j] = t[j] == 1 ? -s[j] : 0.5f * s[j];
}

double apl_bench_focal(const float *s, const int8_t *t, float *g, size_t n, float alpha,
                       float norm, int threads)
{
    (void)threads;
    const float wp = alpha * norm, wn = (1.0f - alpha) * norm;
    double sum = 0.0;
#pragma omp parallel for simd schedule(static) num_threads(threads) reduction(+ : sum)
    for (size_t j = 0; j < n; j++) {
        const float x = s[j];
        const float e = expf(-fabsf(x)); /* in (0, 1]: no overflow for any finite x */
        const float l1 = log1pf(e);
        const float r = 1.0f / (1.0f + e);
        const float p = x >= 0.0f ? r : e * r;     /* sigmoid(x) */
        const float q = x >= 0.0f ? e * r : r;     /* 1 - sigmoid(x), without cancellation */
        const float logp = fminf(x, 0.0f) - l1;    /* log p     = -softplus(-x) */
        const float logq = -fmaxf(x, 0.0f) - l1;   /* log (1-p) = -softplus(x) */
        /* d/dx [-(1-p)^2 log p] = (1-p)^2 (2 p log p - (1-p));
         * d/dx [-p^2 log(1-p)]  = p^2 (p - 2 (1-p) log(1-p)). */
        const float lpos = -wp * q * q * logp, gpos = wp * q * q * (2.0f * p * logp - q);
        const float lneg = -wn * p * p * logq, gneg = wn * p * p * (p - 2.0f * q * logq);
        const int8_t tj = t[j];
        g[j] = tj == 1 ? gpos : tj == 0 ? gneg : 0.0f;
        sum += tj == 1 ? lpos : tj == 0 ? lneg : 0.0f;
    }
    return sum;
}
