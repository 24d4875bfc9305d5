/* sorted_phases.c: the phases of the sorted algorithm (include/aploss/phases.h): plan,
 * histogram, finish (window sums, AP weights, coefficients), apply.
 *
 * Determinism: every per-element result (an element's segment, its fixed-point offset, its
 * gradient) is a function of that element alone, and every sum over elements is an integer sum.
 * So the split of the elements over threads, SIMD lanes or processes cannot change a bit. The
 * AVX2 kernels compute exactly what the portable ones do (the segment is the unique k with
 * O[k] <= x < O[k+1]; the offset and the gradient are the same IEEE operations in the same
 * order, no FMA), so the choice of kernel cannot either.
 */
#include "aploss/phases.h"
#include "cpu_common.h"
#include "kernels.h"
#include "segment_index.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define APL_HAVE_AVX2_KERNELS 1
#endif

__extension__ typedef unsigned __int128 u128;
/* The memo may live in the caller's float gradient array: accessed through a type that may
 * alias anything. */
typedef uint32_t __attribute__((may_alias)) memo_t;

#define LIMB_MASK ((UINT64_C(1) << APL_HIST_LIMB_BITS) - 1)
#define QMAX 0x1p52 - 1.0 /* largest offset: 2^52 - 1, so q + 2^52 stays in [2^52, 2^53) */
/* Below this many elements per thread, threads cost more than they save. */
#define MIN_PER_THREAD 65536
/* Private per-thread histograms up to this many segments; atomic adds above. */
#define PRIVATE_MAX_SEGMENTS 65536
/* A few segments take a quarter to a half of all valid negatives, and consecutive adds to one
 * counter wait on each other through memory: element j adds to copy j % COPIES of the thread's
 * histogram, so four chains run side by side (up to COPIES_MAX_SEGMENTS segments). */
#define COPIES 4
#define COPIES_MAX_SEGMENTS 8192

/* The plan and its arrays, in one allocation. */
typedef struct {
    apl_sorted_plan pub;
    apl_seg_index ix;
} plan_block;

static double i128_to_double(u128 v) /* two's complement; relative error < 2^-52 */
{
    int neg = (v >> 127) != 0;
    if (neg)
        v = (u128)0 - v;
    double d = (double)(uint64_t)(v >> 64) * 0x1p64 + (double)(uint64_t)v;
    return neg ? -d : d;
}

static size_t lower_bound_d(const double *O, size_t S, double x) /* first m with O[m] >= x */
{
    size_t l = 0, r = S;
    while (l < r) {
        size_t m = l + (r - l) / 2;
        if (O[m] < x)
            l = m + 1;
        else
            r = m;
    }
    return l;
}

/* ---- per-element steps, shared by the portable and the AVX2 kernels ---- */

static inline uint64_t offset_q(double x, double Ok, double qscale)
{
    double r = rint((x - Ok) * qscale);
    if (!(r > 0.0))
        return 0;
    return (uint64_t)(r < QMAX ? r : QMAX);
}

static inline void hist_add(int64_t *h, uint64_t k, uint64_t q, int atomic)
{
    int64_t *c = h + APL_HIST_WORDS * k;
    if (atomic) {
        __atomic_fetch_add(c, 1, __ATOMIC_RELAXED);
        __atomic_fetch_add(c + 1, (int64_t)(q & LIMB_MASK), __ATOMIC_RELAXED);
        __atomic_fetch_add(c + 2, (int64_t)(q >> APL_HIST_LIMB_BITS), __ATOMIC_RELAXED);
    } else {
        c[0] += 1;
        c[1] += (int64_t)(q & LIMB_MASK);
        c[2] += (int64_t)(q >> APL_HIST_LIMB_BITS);
    }
}

static inline float eval_g(const apl_sorted_plan *p, double x, uint64_t k)
{
    return (float)(p->alpha[k] + p->beta[k] * (x - p->O[k]));
}

/* The positive gradient of a positive with logit x: the sorted positives with that logit share
 * one value (equal logits give equal a_i, b_i and 1 - prec_i). -1: not a positive of the plan. */
static inline int64_t positive_of(const apl_sorted_plan *p, float x)
{
    size_t l = 0, r = p->np;
    while (l < r) {
        size_t m = l + (r - l) / 2;
        if (p->pos[m] < x)
            l = m + 1;
        else
            r = m;
    }
    return l < p->np && p->pos[l] == x ? (int64_t)l : -1;
}

/* ---- portable kernels over [j0, j1) ---- */

/* h: `copies` histograms of `words` entries each (copies a power of two; 1 when atomic). */
static size_t hist_range_scalar(const apl_sorted_plan *p, const float *s, const int8_t *t,
                                size_t j0, size_t j1, int64_t *h, size_t words, unsigned copies,
                                int atomic, memo_t *memo)
{
    const apl_seg_index *ix = p->index;
    const float thr = p->thr;
    const double qscale = ldexp(0.5 / p->delta, APL_HIST_OFFSET_BITS);
    size_t nv = 0;
    for (size_t j = j0; j < j1; j++) {
        if (t[j] != 0 || !(s[j] >= thr))
            continue;
        double x = (double)s[j];
        uint64_t k = apl_seg_find(ix, x);
        hist_add(h + (j & (copies - 1)) * words, k, offset_q(x, p->O[k], qscale), atomic);
        if (memo)
            memo[j] = (uint32_t)k;
        nv++;
    }
    return nv;
}

/* Returns the first index whose positive is missing from the plan, or (size_t)-1. */
static size_t apply_range_scalar(const apl_sorted_plan *p, const float *s, const int8_t *t,
                                 size_t j0, size_t j1, const memo_t *memo, float *g)
{
    const float thr = p->thr;
    size_t bad = (size_t)-1;
    for (size_t j = j0; j < j1; j++) {
        float v = 0.0f;
        if (t[j] == 0 && s[j] >= thr) {
            double x = (double)s[j];
            uint64_t k = memo ? memo[j] : apl_seg_find(p->index, x);
            v = eval_g(p, x, k);
        } else if (t[j] == 1) {
            int64_t i = positive_of(p, s[j]);
            if (i < 0 && bad == (size_t)-1)
                bad = j;
            v = i < 0 ? 0.0f : (float)p->pos_grad[i];
        }
        g[j] = v;
    }
    return bad;
}

/* ---- AVX2 kernels ---- */
#ifdef APL_HAVE_AVX2_KERNELS
#define AVX2 __attribute__((target("avx2")))

/* 64-bit lane masks of a __m256d to 32-bit lanes of a __m128i. */
AVX2 static inline __m128i mask64to32(__m256d m)
{
    const __m256i pick = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
    return _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(_mm256_castpd_si256(m), pick));
}

/* The segments of 4 values (lanes outside `want` may hold anything and get a valid index):
 * the grid cell's first segment, then steps until O[k] <= x < O[k+1] holds in every wanted
 * lane; a lane still off after a few steps (a crowded cell) takes apl_seg_find. *Ok gets O[k]. */
AVX2 static inline __m128i find4(const apl_sorted_plan *p, __m256d x, int want, __m256d *Ok)
{
    const apl_seg_index *ix = p->index;
    const double *O = p->O;
    __m256d c = _mm256_mul_pd(_mm256_sub_pd(x, _mm256_set1_pd(ix->base)),
                              _mm256_set1_pd(ix->inv_cell));
    c = _mm256_min_pd(_mm256_max_pd(c, _mm256_setzero_pd()),
                      _mm256_set1_pd((double)(ix->cells - 1)));
    __m128i cell = _mm256_cvttpd_epi32(c);
    __m128i k = _mm_i32gather_epi32((const int *)ix->lo, cell, 4);
    __m256d lo = _mm256_i32gather_pd(O, k, 8), up = _mm256_i32gather_pd(O + 1, k, 8);
    /* Only wanted lanes move: another lane's x may lie below O_0, where stepping down would
     * leave the array. */
    const __m256d wm = _mm256_castsi256_pd(_mm256_cmpgt_epi64(
        _mm256_and_si256(_mm256_set1_epi64x(want), _mm256_setr_epi64x(1, 2, 4, 8)),
        _mm256_setzero_si256()));
    for (int step = 0; step < 3; step++) {
        __m256d below = _mm256_and_pd(wm, _mm256_cmp_pd(up, x, _CMP_LE_OQ)); /* O[k+1] <= x */
        __m256d above = _mm256_and_pd(wm, _mm256_cmp_pd(lo, x, _CMP_GT_OQ)); /* O[k] > x */
        int off = _mm256_movemask_pd(_mm256_or_pd(below, above));
        if (!off) {
            *Ok = lo;
            return k;
        }
        k = _mm_add_epi32(_mm_sub_epi32(k, mask64to32(below)), mask64to32(above));
        lo = _mm256_i32gather_pd(O, k, 8);
        up = _mm256_i32gather_pd(O + 1, k, 8);
    }
    int off = _mm256_movemask_pd(_mm256_or_pd(_mm256_cmp_pd(up, x, _CMP_LE_OQ),
                                              _mm256_cmp_pd(lo, x, _CMP_GT_OQ))) &
              want;
    if (off) {
        uint32_t kk[4];
        double xx[4];
        _mm_storeu_si128((__m128i *)kk, k);
        _mm256_storeu_pd(xx, x);
        for (int l = 0; l < 4; l++)
            if (off >> l & 1)
                kk[l] = (uint32_t)apl_seg_find(ix, xx[l]);
        k = _mm_loadu_si128((const __m128i *)kk);
        lo = _mm256_i32gather_pd(O, k, 8);
    }
    *Ok = lo;
    return k;
}

/* Valid-negative and positive masks of 8 elements. */
AVX2 static inline int masks8(const float *s, const int8_t *t, __m256 thr, int *posm)
{
    __m256i tv = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)t));
    __m256 x = _mm256_loadu_ps(s);
    __m256 neg = _mm256_castsi256_ps(_mm256_cmpeq_epi32(tv, _mm256_setzero_si256()));
    *posm = _mm256_movemask_ps(
        _mm256_castsi256_ps(_mm256_cmpeq_epi32(tv, _mm256_set1_epi32(1))));
    return _mm256_movemask_ps(_mm256_and_ps(neg, _mm256_cmp_ps(x, thr, _CMP_GE_OQ)));
}

AVX2 static size_t hist_range_avx2(const apl_sorted_plan *p, const float *s, const int8_t *t,
                                   size_t j0, size_t j1, int64_t *h, size_t words,
                                   unsigned copies, int atomic, memo_t *memo)
{
    const __m256 thr = _mm256_set1_ps(p->thr);
    const __m256d qscale = _mm256_set1_pd(ldexp(0.5 / p->delta, APL_HIST_OFFSET_BITS));
    const __m256d qmax = _mm256_set1_pd(QMAX), magic = _mm256_set1_pd(0x1p52);
    const __m256i qmask = _mm256_set1_epi64x((int64_t)((UINT64_C(1) << 52) - 1));
    size_t nv = 0, j = j0;
    for (; j + 8 <= j1; j += 8) {
        int posm;
        int m = masks8(s + j, t + j, thr, &posm);
        if (!m)
            continue;
        __m256 xf = _mm256_loadu_ps(s + j);
        uint32_t kk[8];
        uint64_t qq[8];
        for (int half = 0; half < 2; half++) {
            __m256d x = _mm256_cvtps_pd(half ? _mm256_extractf128_ps(xf, 1)
                                             : _mm256_castps256_ps128(xf));
            __m256d Ok;
            __m128i k = find4(p, x, m >> (4 * half) & 15, &Ok);
            /* offset_q: rint((x - O_k) * qscale) clamped to [0, 2^52 - 1], then its bits */
            __m256d r = _mm256_round_pd(_mm256_mul_pd(_mm256_sub_pd(x, Ok), qscale),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            r = _mm256_min_pd(_mm256_max_pd(r, _mm256_setzero_pd()), qmax);
            __m256i q = _mm256_and_si256(_mm256_castpd_si256(_mm256_add_pd(r, magic)), qmask);
            _mm_storeu_si128((__m128i *)(kk + 4 * half), k);
            _mm256_storeu_si256((__m256i *)(qq + 4 * half), q);
        }
        if (memo)
            _mm256_maskstore_epi32((int *)(memo + j),
                                   _mm256_cmpgt_epi32(
                                       _mm256_and_si256(_mm256_set1_epi32(m),
                                                        _mm256_setr_epi32(1, 2, 4, 8, 16, 32,
                                                                          64, 128)),
                                       _mm256_setzero_si256()),
                                   _mm256_loadu_si256((const __m256i *)kk));
        for (int w = m; w; w &= w - 1) {
            int l = __builtin_ctz((unsigned)w);
            hist_add(h + ((unsigned)l & (copies - 1)) * words, kk[l], qq[l], atomic);
        }
        nv += (size_t)__builtin_popcount((unsigned)m);
    }
    return nv + hist_range_scalar(p, s, t, j, j1, h, words, copies, atomic, memo);
}

AVX2 static size_t apply_range_avx2(const apl_sorted_plan *p, const float *s, const int8_t *t,
                                    size_t j0, size_t j1, const memo_t *memo, float *g)
{
    const __m256 thr = _mm256_set1_ps(p->thr);
    const __m256i lane_bits = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    size_t bad = (size_t)-1, j = j0;
    for (; j + 8 <= j1; j += 8) {
        int posm;
        int m = masks8(s + j, t + j, thr, &posm);
        if (!m && !posm) {
            _mm256_storeu_ps(g + j, _mm256_setzero_ps());
            continue;
        }
        __m256 out = _mm256_setzero_ps();
        if (m) {
            __m256i vmask = _mm256_cmpgt_epi32(
                _mm256_and_si256(_mm256_set1_epi32(m), lane_bits), _mm256_setzero_si256());
            __m256 xf = _mm256_loadu_ps(s + j);
            __m256i k8 = memo ? _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(memo + j)),
                                                 vmask)
                              : _mm256_setzero_si256();
            __m128 gh[2];
            for (int half = 0; half < 2; half++) {
                __m256d x = _mm256_cvtps_pd(half ? _mm256_extractf128_ps(xf, 1)
                                                 : _mm256_castps256_ps128(xf));
                __m128i k;
                __m256d Ok;
                if (memo) {
                    k = half ? _mm256_extracti128_si256(k8, 1) : _mm256_castsi256_si128(k8);
                    Ok = _mm256_i32gather_pd(p->O, k, 8);
                } else {
                    k = find4(p, x, m >> (4 * half) & 15, &Ok);
                }
                __m256d a = _mm256_i32gather_pd(p->alpha, k, 8);
                __m256d b = _mm256_i32gather_pd(p->beta, k, 8);
                /* (float)(alpha_k + beta_k * (x - O_k)), as eval_g */
                gh[half] = _mm256_cvtpd_ps(_mm256_add_pd(a, _mm256_mul_pd(b, _mm256_sub_pd(x, Ok))));
            }
            out = _mm256_and_ps(_mm256_set_m128(gh[1], gh[0]), _mm256_castsi256_ps(vmask));
        }
        _mm256_storeu_ps(g + j, out);
        for (int w = posm; w; w &= w - 1) {
            size_t jj = j + (size_t)__builtin_ctz((unsigned)w);
            int64_t i = positive_of(p, s[jj]);
            if (i < 0 && bad == (size_t)-1)
                bad = jj;
            g[jj] = i < 0 ? 0.0f : (float)p->pos_grad[i];
        }
    }
    size_t b2 = apply_range_scalar(p, s, t, j, j1, memo, g);
    return bad != (size_t)-1 ? bad : b2;
}
#endif

static int use_avx2(const apl_sorted_plan *p)
{
#ifdef APL_HAVE_AVX2_KERNELS
    return p->simd && __builtin_cpu_supports("avx2");
#else
    (void)p;
    return 0;
#endif
}

static size_t hist_range(const apl_sorted_plan *p, int avx2, const float *s, const int8_t *t,
                         size_t j0, size_t j1, int64_t *h, size_t words, unsigned copies,
                         int atomic, memo_t *memo)
{
#ifdef APL_HAVE_AVX2_KERNELS
    if (avx2)
        return hist_range_avx2(p, s, t, j0, j1, h, words, copies, atomic, memo);
#endif
    (void)avx2;
    return hist_range_scalar(p, s, t, j0, j1, h, words, copies, atomic, memo);
}

static size_t apply_range(const apl_sorted_plan *p, int avx2, const float *s, const int8_t *t,
                          size_t j0, size_t j1, const memo_t *memo, float *g)
{
#ifdef APL_HAVE_AVX2_KERNELS
    if (avx2)
        return apply_range_avx2(p, s, t, j0, j1, memo, g);
#endif
    (void)avx2;
    return apply_range_scalar(p, s, t, j0, j1, memo, g);
}

/* Threads for n elements: the caller's request, no more than the work justifies. */
static int threads_for(int requested, size_t n)
{
    int T = apl_threads(requested);
    size_t most = n / MIN_PER_THREAD;
    if (most < 1)
        most = 1;
    if ((size_t)T > most)
        T = (int)most;
    return T < 1 ? 1 : T;
}

/* Thread `i` of T takes [first, last) of n: contiguous ranges on 64-element boundaries. */
static void thread_range(size_t n, int T, int i, size_t *first, size_t *last)
{
    size_t blocks = (n + 63) / 64;
    size_t b0 = blocks * (size_t)i / (size_t)T, b1 = blocks * (size_t)(i + 1) / (size_t)T;
    *first = b0 * 64 < n ? b0 * 64 : n;
    *last = b1 * 64 < n ? b1 * 64 : n;
}

/* ---- plan ---- */

apl_status apl_sorted_plan_create(const float *pos_sorted, size_t np, double delta,
                                  apl_sorted_plan **plan, apl_error *err)
{
    *plan = NULL;
    if (!pos_sorted || np == 0)
        return apl_fail(err, APL_ERR_ARG, "sorted plan: no positives");
    if (!(delta > 0.0) || !isfinite(delta))
        return apl_fail(err, APL_ERR_ARG, "sorted plan: delta = %g: expected a finite value > 0",
                        delta);
    for (size_t i = 0; i < np; i++) {
        if (!isfinite(pos_sorted[i]))
            return apl_fail(err, APL_ERR_INPUT, "sorted plan: positive[%zu] = %g is not finite",
                            i, (double)pos_sorted[i]);
        if (i && pos_sorted[i] < pos_sorted[i - 1])
            return apl_fail(err, APL_ERR_INPUT,
                            "sorted plan: positive[%zu] = %.9g < positive[%zu] = %.9g: expected "
                            "ascending order",
                            i, (double)pos_sorted[i], i - 1, (double)pos_sorted[i - 1]);
    }
    if (!apl_segments_in_range(pos_sorted[0], pos_sorted[np - 1], np, delta))
        return apl_fail(err, APL_ERR_ARG,
                        "sorted plan: %zu positives in [%g, %g] with delta %g are outside the "
                        "segment algorithm's range (see APL_SEGMENT_MAX_SPAN)",
                        np, (double)pos_sorted[0], (double)pos_sorted[np - 1], delta);
    const size_t S = 2 * np, cells = (size_t)apl_seg_cells(S);
    /* One block: the struct, then doubles, then 64-bit, then 32-bit and float arrays. */
    const size_t nd = (S + 1) /* O */ + np /* pos_sums */ + 2 * S /* alpha beta */ + np;
    const size_t bytes = sizeof(plan_block) + nd * sizeof(double) + S * sizeof(uint64_t) +
                         (2 * np + 2 * cells) * sizeof(uint32_t) + np * sizeof(float);
    plan_block *b = calloc(1, bytes);
    if (!b)
        return apl_fail(err, APL_ERR_NOMEM, "sorted plan: cannot allocate %zu bytes for %zu "
                        "positives", bytes, np);
    double *O = (double *)(b + 1), *pos_sums = O + S + 1, *alpha = pos_sums + np,
           *beta = alpha + S, *pos_grad = beta + S;
    uint64_t *E = (uint64_t *)(pos_grad + np);
    uint32_t *lo = (uint32_t *)(E + S), *hi = lo + np, *clo = hi + np, *chi = clo + cells;
    float *pos = (float *)(chi + cells);
    apl_sorted_plan *p = &b->pub;
    memcpy(pos, pos_sorted, np * sizeof *pos);

    /* Breakpoints: merge the two ascending lists s_i - delta and s_i + delta. */
    for (size_t i = 0, j = 0, k = 0; k < S; k++) {
        double L = i < np ? (double)pos[i] - delta : 0, U = (double)pos[j] + delta;
        O[k] = (i < np && L <= U) ? (i++, L) : (j++, U);
    }
    O[S] = INFINITY; /* the vectorised search reads O[k+1] for k = S-1 */
    for (size_t i = 0; i < np; i++) {
        lo[i] = (uint32_t)lower_bound_d(O, S, (double)pos[i] - delta);
        hi[i] = (uint32_t)lower_bound_d(O, S, (double)pos[i] + delta);
    }
    /* Positions in 2^-52 ramp widths. In range the span is below 4097 ramp widths, so below
     * 2^64. */
    const double escale = ldexp(0.5 / delta, APL_HIST_OFFSET_BITS);
    for (size_t k = 0; k < S; k++)
        E[k] = (uint64_t)rint((O[k] - O[0]) * escale);
    b->ix = apl_seg_index_fill(O, S, clo, chi);

    p->np = np;
    p->segments = S;
    p->delta = delta;
    p->thr = apl_prune_threshold(pos[0], delta);
    p->pos = pos;
    p->O = O;
    p->lo = lo;
    p->hi = hi;
    p->E = E;
    p->pos_sums = pos_sums;
    p->simd = 1;
    p->alpha = alpha;
    p->beta = beta;
    p->pos_grad = pos_grad;
    p->index = &b->ix;

    /* The positives' own window sums, with the same histogram and sums as the negatives'. */
    int64_t *hp = calloc(APL_HIST_WORDS * S, sizeof *hp);
    if (!hp) {
        free(b);
        return apl_fail(err, APL_ERR_NOMEM, "sorted plan: cannot allocate the positives' "
                        "histogram (%zu segments)", S);
    }
    apl_sorted_hist_values(p, pos, np, hp);
    apl_status st = apl_sorted_window_sums(p, hp, pos_sums, err);
    free(hp);
    if (st != APL_OK) {
        free(b);
        return st;
    }
    *plan = p;
    return APL_OK;
}

void apl_sorted_plan_free(apl_sorted_plan *plan)
{
    free(plan); /* the plan_block starts with it */
}

size_t apl_sorted_hist_len(const apl_sorted_plan *plan)
{
    return APL_HIST_WORDS * plan->segments;
}

/* ---- histogram ---- */

void apl_sorted_hist_values(const apl_sorted_plan *p, const float *x, size_t m, int64_t *hist)
{
    const double qscale = ldexp(0.5 / p->delta, APL_HIST_OFFSET_BITS);
    for (size_t i = 0; i < m; i++) {
        double v = (double)x[i];
        uint64_t k = apl_seg_find(p->index, v);
        hist_add(hist, k, offset_q(v, p->O[k], qscale), 0);
    }
}

apl_status apl_sorted_histogram(const apl_sorted_plan *p, const float *logits,
                                const int8_t *targets, size_t n, int64_t *hist, uint32_t *memo,
                                int threads, size_t *valid, apl_error *err)
{
    if (!p || !hist || (n && (!logits || !targets)))
        return apl_fail(err, APL_ERR_ARG, "sorted histogram: null argument");
    const int T = threads_for(threads, n), avx2 = use_avx2(p);
    const size_t words = apl_sorted_hist_len(p);
    const int atomic = T > 1 && p->segments > PRIVATE_MAX_SEGMENTS;
    const unsigned copies = !atomic && p->segments <= COPIES_MAX_SEGMENTS ? COPIES : 1;
    /* Per thread `copies` private histograms, unless adding atomically into hist; one thread
     * with one copy adds straight into hist. */
    const size_t per = (size_t)copies * words;
    int64_t *priv = NULL;
    if (!atomic && (T > 1 || copies > 1)) {
        priv = calloc((size_t)T * per, sizeof *priv);
        if (!priv)
            return apl_fail(err, APL_ERR_NOMEM, "sorted histogram: cannot allocate %d x %u "
                            "private histograms of %zu segments", T, copies, p->segments);
    }
    size_t nv = 0;
    memo_t *mm = (memo_t *)memo;
    if (T == 1) {
        nv = hist_range(p, avx2, logits, targets, 0, n, priv ? priv : hist, words, copies, 0, mm);
    } else {
#pragma omp parallel num_threads(T) reduction(+ : nv)
        {
#ifdef _OPENMP
            const int i = omp_get_thread_num(), team = omp_get_num_threads();
#else
            const int i = 0, team = 1;
#endif
            size_t j0, j1;
            thread_range(n, team, i, &j0, &j1);
            nv += hist_range(p, avx2, logits, targets, j0, j1,
                             atomic ? hist : priv + (size_t)i * per, words, copies, atomic, mm);
        }
    }
    if (priv) /* integer sums: the order of the partial histograms does not matter */
        for (size_t c = 0; c < (size_t)T * copies; c++)
            for (size_t w = 0; w < words; w++)
                hist[w] += priv[c * words + w];
    free(priv);
    if (valid)
        *valid = nv;
    return APL_OK;
}

/* ---- finish ---- */

apl_status apl_sorted_window_sums(const apl_sorted_plan *p, const int64_t *hist, double *out,
                                  apl_error *err)
{
    const size_t S = p->segments, np = p->np;
    uint64_t *C = malloc((S + 1) * sizeof *C);
    u128 *Y = malloc((S + 1) * sizeof *Y);
    if (!C || !Y) {
        free(C), free(Y);
        return apl_fail(err, APL_ERR_NOMEM, "sorted window sums: cannot allocate prefix sums "
                        "of %zu segments", S);
    }
    /* C[k], Y[k]: prefix sums over segments 0..k-1 of the count and of
     * Y = offset + count * E_k (positions from O_0, in 2^-52 ramp widths), mod 2^128. */
    C[0] = 0;
    Y[0] = 0;
    for (size_t k = 0; k < S; k++) {
        const int64_t *h = hist + APL_HIST_WORDS * k;
        uint64_t cnt = (uint64_t)h[0];
        u128 off = ((u128)(uint64_t)h[2] << APL_HIST_LIMB_BITS) + (uint64_t)h[1];
        C[k + 1] = C[k] + cnt;
        Y[k + 1] = Y[k] + off + (u128)cnt * p->E[k];
    }
    if (C[S] >= APL_HIST_MAX_ELEMENTS) {
        uint64_t total = C[S];
        free(C), free(Y);
        return apl_fail(err, APL_ERR_INPUT, "sorted window sums: %llu elements in the histogram: "
                        "at most 2^37 - 1 are exact", (unsigned long long)total);
    }
    /* Window i covers [lo_i, hi_i): every element at or above O[hi_i] = s_i + delta adds 1, one
     * in segment k of the window adds (q + E_k - E_lo) 2^-52. The bracket's true value is in
     * [0, n 2^53), so modular arithmetic gives it exactly; an empty window gives 0. */
    for (size_t i = 0; i < np; i++) {
        uint32_t l = p->lo[i], u = p->hi[i];
        uint64_t full = C[S] - C[u], cw = C[u] - C[l];
        u128 part = Y[u] - Y[l] - (u128)cw * p->E[l];
        out[i] = (double)full + i128_to_double(part) * 0x1p-52;
    }
    free(C), free(Y);
    return APL_OK;
}

double apl_sorted_ap_weights(size_t np, const double *a, const double *b, double *w,
                             double *pos_grad)
{
    /* apl_precision_recurrence writes 1 - prec_i into pos_grad, then it is scaled in place. */
    double loss = apl_precision_recurrence(np, a, b, w, pos_grad);
    for (size_t i = 0; i < np; i++)
        pos_grad[i] = -pos_grad[i] / (double)np;
    return loss;
}

apl_status apl_sorted_coefficients(apl_sorted_plan *p, const double *w, apl_error *err)
{
    const size_t S = p->segments, np = p->np;
    /* Weights in fixed point Wq_i = round(w_i 2^bits), bits chosen so sum Wq < 2^62: prefix
     * sums of open and closed windows are then exact integers, added and removed in any order
     * without a residue, and exactly 0 where no window is open. */
    double wsum = 0.0;
    for (size_t i = 0; i < np; i++) {
        if (!(w[i] >= 0.0) || !isfinite(w[i]))
            return apl_fail(err, APL_ERR_INPUT, "sorted coefficients: w[%zu] = %g: expected a "
                            "finite value >= 0", i, w[i]);
        wsum += w[i];
    }
    int e = 0;
    frexp(wsum * (1.0 + 0x1p-40) + 0x1p-1000, &e); /* wsum < 2^e */
    int bits = 61 - e;
    if (bits > 960) /* 2^-(bits+52) stays a normal double */
        bits = 960;
    const double inv_scale = ldexp(1.0, -bits), inv_scale_pos = ldexp(1.0, -bits - 52);
    const double inv2d = 0.5 / p->delta, inv_np = 1.0 / (double)np;
    uint64_t W = 0, F = 0; /* open, closed */
    u128 WE = 0;           /* sum over open windows of Wq_i E_lo_i */
    size_t ni = 0, nu = 0;
    for (size_t k = 0; k < S; k++) {
        /* Entrants first: a window may open and close at the same k. */
        for (; ni < np && p->lo[ni] == k; ni++) {
            uint64_t q = (uint64_t)rint(ldexp(w[ni], bits));
            W += q;
            WE += (u128)q * p->E[p->lo[ni]];
        }
        for (; nu < np && p->hi[nu] == k; nu++) {
            uint64_t q = (uint64_t)rint(ldexp(w[nu], bits));
            W -= q;
            WE -= (u128)q * p->E[p->lo[nu]];
            F += q;
        }
        /* A = sum_open w_i (O_k - L_i) / (2 delta) = sum_open Wq_i (E_k - E_lo_i) 2^-bits-52 */
        u128 A = (u128)W * p->E[k] - WE;
        double Fd = (double)F * inv_scale, Wd = (double)W * inv_scale;
        p->alpha[k] = (Fd + i128_to_double(A) * inv_scale_pos) * inv_np;
        p->beta[k] = Wd * inv2d * inv_np;
    }
    return APL_OK;
}

apl_status apl_sorted_finish_ap(apl_sorted_plan *p, const int64_t *hist, double *loss,
                                apl_error *err)
{
    const size_t np = p->np;
    double *a = malloc(3 * np * sizeof *a);
    if (!a)
        return apl_fail(err, APL_ERR_NOMEM, "sorted finish: cannot allocate work for %zu "
                        "positives", np);
    double *b = a + np, *w = b + np;
    apl_status st = apl_sorted_window_sums(p, hist, b, err);
    if (st == APL_OK) {
        for (size_t i = 0; i < np; i++)
            a[i] = 0.5 + p->pos_sums[i];
        *loss = apl_sorted_ap_weights(np, a, b, w, p->pos_grad);
        st = apl_sorted_coefficients(p, w, err);
    }
    free(a);
    return st;
}

/* ---- apply ---- */

apl_status apl_sorted_apply(const apl_sorted_plan *p, const float *logits,
                            const int8_t *targets, size_t n, const uint32_t *memo, float *grad,
                            int threads, apl_error *err)
{
    if (!p || (n && (!logits || !targets || !grad)))
        return apl_fail(err, APL_ERR_ARG, "sorted apply: null argument");
    const int T = threads_for(threads, n), avx2 = use_avx2(p);
    const memo_t *mm = (const memo_t *)memo;
    size_t bad = (size_t)-1;
    if (T == 1) {
        bad = apply_range(p, avx2, logits, targets, 0, n, mm, grad);
    } else {
#pragma omp parallel num_threads(T) reduction(min : bad)
        {
#ifdef _OPENMP
            const int i = omp_get_thread_num(), team = omp_get_num_threads();
#else
            const int i = 0, team = 1;
#endif
            size_t j0, j1;
            thread_range(n, team, i, &j0, &j1);
            size_t b = apply_range(p, avx2, logits, targets, j0, j1, mm, grad);
            bad = b < bad ? b : bad;
        }
    }
    if (bad != (size_t)-1)
        return apl_fail(err, APL_ERR_INPUT, "sorted apply: logits[%zu] = %.9g is a positive "
                        "that is not in the plan", bad, (double)logits[bad]);
    return APL_OK;
}
