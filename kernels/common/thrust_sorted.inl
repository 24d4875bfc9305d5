/* thrust_sorted.inl: the SPEC's O(M log|P|) algorithm written with Thrust algorithms only, and
 * the steps the GPU variants share with it. Compiled into:
 *   thrust_sorted_cpu.cpp   Thrust's CPP backend under plain g++: the CPU variant thrust_sorted_cpu.
 *                           CI has no GPU; this build is how the logic below gets tested there.
 *   thrust_sorted_cuda.cu   the same source on Thrust's CUDA backend: thrust_sorted_cuda.
 *   cuda_sorted.cu          its own pass-1 histogram and pass-2 kernels around the steps here.
 *   cuda_warp.cu            the positives, the valid negatives and the loss's middle.
 *
 * The math is sorted.c's: the sorted positives' ramp ends s_i -+ delta, merged, cut the logit
 * axis into segments [O_k, O_k+1) (found by the one segment index, segment_index.h, which the
 * CPU's sorted phases use too); per segment a histogram of counts and offsets x - O_k gives
 * every a_i and b_i as window sums; the recurrence gives w_i; G(x) = alpha_k + beta_k (x - O_k) per
 * segment; pass 2 evaluates G at every valid negative.
 *
 * What differs is that every sum whose terms arrive in a data-dependent order is an integer
 * (fixed-point) sum: exact, the same in any order (so GPU atomics stay deterministic), and
 * bitwise the same on the CPU and the GPU. With u = 2 delta, the ramp width:
 *  - breakpoint positions E_k = round((O_k - O_0) / u * 2^52) mod 2^64. Only differences
 *    E_k - E_m inside one ramp window are used, and those are below 2^52 + 1, so wrapping mod
 *    2^64 (tiny delta, wide logit range) loses nothing.
 *  - element offsets q = round((x - O_k) / u * 2^Fq), clamped to [0, 2^Fq] (a segment wider
 *    than u has no window open, its offsets are never used). Fq = min(52, 62 - bits(n)): even if
 *    one segment receives all n elements its sum stays below 2^62. For 2e7 elements Fq = 37, a
 *    quantum of 7e-12 ramp widths. Per segment: cnt_k and off_k = sum q, both uint64.
 *  - window sums: Y_k = off_k * 2^(52-Fq) + cnt_k * E_k, prefix sums over segments in 128 bits
 *    (mod 2^128). b_i = #(x >= s_i + delta) + 2^-52 [Y(l_i..u_i) - cnt(l_i..u_i) E_{l_i}]: the
 *    bracket's true value lies in [0, n 2^53), so modular arithmetic yields it exactly. No
 *    cancellation (sorted.c's prefix of count * (O_k - O_0) cancels at large |O_k|), and an empty
 *    window is exactly 0.
 *  - weights Wq_i = round(w_i 2^57). w_i <= 1/a_i and a_i >= 1 + (|P|-1-i)/2 in ascending order,
 *    so sum w_i <= 2 (ln|P| + 1) < 64 and every prefix fits in uint64. (aLRP's w_i = L_i / b_i
 *    has no such bound: there the scale is 2^bits with sum Wq < 2^62, bits from sum w_i, as in
 *    the CPU's apl_sorted_coefficients.) Per segment, F_k (windows
 *    already closed) and W_k (windows open) are prefix differences, exactly 0 where none is open;
 *    A_k = sum_open Wq_i (E_k - E_{l_i}) = W_k E_k - sum_open Wq_i E_{l_i} in 128 bits, true
 *    value below 2^116. So G is exactly 0 where every H is 0, as the SPEC requires.
 * Everything O(|P|) after the sums is double, as in sorted.c; the recurrence is a min-scan
 * (bitwise the sequential loop, since min does not round). aLRP Loss replaces the recurrence by
 * its own middle (c_i, L_i, w_i = L_i / b_i, the losses, grad_e), run on the host by the CPU
 * variants' functions (alrp.h, see alrp_middle); everything else is AP-Loss's.
 */
#ifndef APL_THRUST_SORTED_INL
#define APL_THRUST_SORTED_INL

#include "cuda_common.h"
#include "segment_index.h"

extern "C" {
#include "alrp.h" /* aLRP's O(|P|) middle, shared with the CPU variants */
}

#include <thrust/binary_search.h>
#include <thrust/copy.h>
#include <thrust/count.h>
#if THRUST_DEVICE_SYSTEM == THRUST_DEVICE_SYSTEM_CUDA
#include <thrust/system/cuda/execution_policy.h>
#else
#include <thrust/system/cpp/execution_policy.h>
#endif
#include <thrust/functional.h>
#include <thrust/gather.h>
#include <thrust/iterator/constant_iterator.h>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/iterator/transform_iterator.h>
#include <thrust/iterator/zip_iterator.h>
#include <thrust/merge.h>
#include <thrust/reduce.h>
#include <thrust/scan.h>
#include <thrust/scatter.h>
#include <thrust/sort.h>
#include <thrust/transform.h>
#include <thrust/tuple.h>

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <memory>
#include <vector>

namespace { /* internal linkage: each including file gets its own copy for its own backend */

typedef unsigned __int128 u128;
typedef unsigned long long ull; /* what CUDA's 64-bit atomicAdd takes */

/* ---- where the work runs, and its memory ----
 * Every Thrust call takes the policy P(): on CUDA, thrust::cuda::par_nosync on the call's stream
 * (apl_problem.stream, set per call by stream_scope at each entry point), with Thrust's own
 * temporaries (CUB's scratch) from the per-device pool of cuda_common.cu; on the CPP backend,
 * thrust::cpp::par. The arrays are dvec: device memory from the same pool (host memory on CPP),
 * allocated and freed in the stream's order, and freed without throwing (a failed free after a
 * device fault is dropped, so the error surfaces as a status, not std::terminate). In steady
 * state nothing calls cudaMalloc or cudaFree. */
#if THRUST_DEVICE_SYSTEM == THRUST_DEVICE_SYSTEM_CUDA
/* The stream of the call running on this thread; saved and restored by stream_scope. */
inline cudaStream_t &cur_stream() noexcept
{
    static thread_local cudaStream_t s = nullptr;
    return s;
}
struct stream_scope {
    cudaStream_t saved;
    explicit stream_scope(void *s) noexcept : saved(cur_stream()) { cur_stream() = (cudaStream_t)s; }
    ~stream_scope() { cur_stream() = saved; }
    stream_scope(const stream_scope &) = delete;
    stream_scope &operator=(const stream_scope &) = delete;
};
/* Thrust's temporary allocator (the interface of Thrust's custom_temporary_allocation example). */
struct temp_alloc {
    typedef char value_type;
    cudaStream_t stream;
    char *allocate(std::ptrdiff_t bytes) { return (char *)apl_cuda_pool_alloc((size_t)bytes, stream); }
    void deallocate(char *q, size_t) noexcept { apl_cuda_pool_free(q, stream); }
};
inline auto P() { return thrust::cuda::par_nosync(temp_alloc{cur_stream()}).on(cur_stream()); }
inline void *buf_alloc(size_t bytes) { return apl_cuda_pool_alloc(bytes, cur_stream()); }
inline void buf_free(void *q) noexcept { apl_cuda_pool_free(q, cur_stream()); }
#else
struct stream_scope {
    explicit stream_scope(void *) noexcept {}
};
inline auto P() { return thrust::cpp::par; }
inline void *buf_alloc(size_t bytes)
{
    void *q = malloc(bytes);
    if (!q)
        throw std::bad_alloc();
    return q;
}
inline void buf_free(void *q) noexcept { free(q); }
#endif

/* An array of trivially copyable T in device memory (host memory on CPP). Uninitialised after
 * construction or resize (every user writes what it reads), except the (n, value) forms. Never
 * copied; resize does not keep the contents. Element reads through operator[] wait for the
 * stream: use them only for the few scalars the algorithm needs on the host. */
template <class T> class dvec {
    T *p_ = nullptr;
    size_t n_ = 0;

  public:
    dvec() = default;
    explicit dvec(size_t n) { resize(n); }
    dvec(size_t n, T v) { assign(n, v); }
    dvec(const dvec &) = delete;
    dvec &operator=(const dvec &) = delete;
    ~dvec() { release(); }
    void release() noexcept
    {
        if (p_)
            buf_free(p_);
        p_ = nullptr;
        n_ = 0;
    }
    void resize(size_t n)
    {
        if (p_ && n == n_)
            return;
        release();
        p_ = (T *)buf_alloc((n ? n : 1) * sizeof(T)); /* a valid pointer even when empty */
        n_ = n;
    }
    void assign(size_t n, T v)
    {
        resize(n);
        thrust::fill_n(P(), p_, n, v);
    }
    size_t size() const { return n_; }
    T *data() { return p_; }
    const T *data() const { return p_; }
    T *begin() { return p_; }
    T *end() { return p_ + n_; }
    const T *begin() const { return p_; }
    const T *end() const { return p_ + n_; }
    /* Host -> this (n elements) and this -> host, in the stream's order; to_host waits. */
    void from_host(const T *h, size_t n)
    {
        resize(n);
#if THRUST_DEVICE_SYSTEM == THRUST_DEVICE_SYSTEM_CUDA
        if (n)
            throw_if_cuda(cudaMemcpyAsync(p_, h, n * sizeof(T), cudaMemcpyHostToDevice, cur_stream()));
#else
        if (n)
            memcpy(p_, h, n * sizeof(T));
#endif
    }
    void to_host(T *h) const
    {
#if THRUST_DEVICE_SYSTEM == THRUST_DEVICE_SYSTEM_CUDA
        if (n_) {
            throw_if_cuda(cudaMemcpyAsync(h, p_, n_ * sizeof(T), cudaMemcpyDeviceToHost, cur_stream()));
            throw_if_cuda(cudaStreamSynchronize(cur_stream()));
        }
#else
        if (n_)
            memcpy(h, p_, n_ * sizeof(T));
#endif
    }
    T operator[](size_t i) const /* one element to the host (a blocking read on CUDA) */
    {
#if THRUST_DEVICE_SYSTEM == THRUST_DEVICE_SYSTEM_CUDA
        T v;
        throw_if_cuda(cudaMemcpyAsync(&v, p_ + i, sizeof(T), cudaMemcpyDeviceToHost, cur_stream()));
        throw_if_cuda(cudaStreamSynchronize(cur_stream()));
        return v;
#else
        return p_[i];
#endif
    }
};
template <class T> T *raw(dvec<T> &v) { return v.data(); }
template <class T> const T *raw(const dvec<T> &v) { return v.data(); }
/* Device (on CPP: host) pointers go to Thrust as they are: the policy P() picks the system. */
template <class T> T *dptr(T *p) { return p; }
typedef thrust::counting_iterator<uint64_t> count_it;

const int POS_BITS = 52; /* breakpoint positions, in 2^-52 ramp widths */
const int W_BITS = 57;   /* weights, in 2^-57 */
/* Segment and window indices are uint32 (half the memory traffic of pass 1 and 2). */
const size_t MAX_POSITIVES = 0x7fffffff;

/* ---- fixed point ---- */

/* double of a two's complement 128-bit integer; two roundings, relative error < 2^-52.
 * Written out so the CPU and GPU builds convert identically. */
APL_HD inline double i128_to_double(u128 v)
{
    bool neg = (v >> 127) != 0;
    if (neg)
        v = (u128)0 - v;
    double d = (double)(uint64_t)(v >> 64) * 0x1p64 + (double)(uint64_t)v;
    return neg ? -d : d;
}

/* round(r) mod 2^64 for r >= 0 (positions). NaN or inf (only with an absurd delta) give 0. */
APL_HD inline uint64_t wrap_u64(double r)
{
    r = rint(r);
    if (!(r >= 0.0 && r <= DBL_MAX))
        return 0;
    if (r < 0x1p64)
        return (uint64_t)r;
    return (uint64_t)fmod(r, 0x1p64); /* exact: r is an integer-valued double here */
}

/* An element's offset from its segment's start, round((x - O_k) * qscale) in [0, qmax]. */
APL_HD inline uint64_t offset_q(double x, double Ok, double qscale, double qmax)
{
    double r = rint((x - Ok) * qscale);
    if (!(r > 0.0))
        return 0;
    return (uint64_t)(r < qmax ? r : qmax);
}

/* Fq for n elements: n * 2^Fq < 2^62. */
inline int offset_bits(size_t n)
{
    int b = 0;
    while (b < 64 && (n >> b) != 0)
        b++;
    return 62 - b < POS_BITS ? 62 - b : POS_BITS;
}

/* ---- searches ---- */

APL_HD inline uint64_t upper_bound_u32(const uint32_t *v, uint64_t len, uint64_t k) /* first v > k */
{
    uint64_t l = 0, r = len;
    while (l < r) {
        uint64_t m = l + (r - l) / 2;
        if (v[m] <= k)
            l = m + 1;
        else
            r = m;
    }
    return l;
}

/* The one segment index (segment_index.h), shared with the CPU's sorted phases: plain data on
 * raw pointers, so a kernel can take it by value; apl_seg_find runs on host and device. */
typedef apl_seg_index seg_index;

/* Pass 2's value for a valid negative x in segment k, sorted.c's expression. */
APL_HD inline float eval_segment(const double *O, const double *alpha, const double *beta,
                                 float x, uint64_t k)
{
    return (float)(alpha[k] + beta[k] * ((double)x - O[k]));
}

/* ---- functors (device lambdas would need --extended-lambda) ---- */

struct is_target {
    int8_t v;
    APL_HD bool operator()(int8_t t) const { return t == v; }
};

struct is_valid_negative { /* t == 0 and s >= thr, thr the exact float threshold */
    float thr;
    APL_HD bool operator()(const thrust::tuple<float, int8_t> &st) const
    {
        return thrust::get<1>(st) == 0 && thrust::get<0>(st) >= thr;
    }
};

struct plus_zero { /* -0 as +0: the same value, one bit pattern */
    APL_HD float operator()(float x) const { return x == 0.0f ? 0.0f : x; }
};

struct shift_by {
    double d;
    APL_HD double operator()(float s) const { return (double)s + d; }
};

struct position_of {
    double O0, scale;
    APL_HD uint64_t operator()(double o) const { return wrap_u64((o - O0) * scale); }
};

struct lut_bound { /* segment_index.h's table, one cell per call */
    const double *O;
    uint64_t S;
    double base, width;
    bool upper;
    APL_HD uint32_t operator()(uint64_t c) const
    {
        return upper ? apl_seg_cell_hi(O, S, base, width, c) : apl_seg_cell_lo(O, S, base, width, c);
    }
};

struct find_seg {
    seg_index ix;
    APL_HD uint32_t operator()(float x) const { return (uint32_t)apl_seg_find(&ix, (double)x); }
};

struct bin_offset {
    const double *O;
    double qscale, qmax;
    APL_HD uint64_t operator()(const thrust::tuple<float, uint32_t> &xk) const
    {
        uint32_t k = thrust::get<1>(xk);
        return offset_q((double)thrust::get<0>(xk), O[k], qscale, qmax);
    }
};

struct segment_y { /* Y_k = off_k 2^shift + cnt_k E_k, mod 2^128 */
    int shift;
    APL_HD u128 operator()(const thrust::tuple<uint64_t, uint64_t, uint64_t> &t) const
    {
        return ((u128)thrust::get<1>(t) << shift) + (u128)thrust::get<0>(t) * thrust::get<2>(t);
    }
};

struct window_sum { /* b_i (add = 0) or a_i (add = 0.5) from the segment prefix sums */
    const uint64_t *C;
    const u128 *Y;
    const uint64_t *E;
    const uint32_t *l, *u;
    uint64_t S;
    double add;
    APL_HD double operator()(uint64_t i) const
    {
        uint32_t li = l[i], ui = u[i];
        uint64_t full = C[S] - C[ui]; /* points at or above s_i + delta: H = 1 */
        uint64_t cw = C[ui] - C[li];  /* points in [s_i - delta, s_i + delta) */
        u128 part = Y[ui] - Y[li] - (u128)cw * E[li];
        return ((double)full + i128_to_double(part) * 0x1p-52) + add;
    }
};

struct one_minus_cur { /* 1 - cur = b/(a+b), no cancellation */
    APL_HD double operator()(const thrust::tuple<double, double> &ab) const
    {
        double a = thrust::get<0>(ab), b = thrust::get<1>(ab);
        return b / (a + b);
    }
};

struct weight_fn { /* cpu_common.c's apl_precision_recurrence, given the running minimum */
    const double *a, *b, *omc, *om;
    APL_HD double operator()(uint64_t i) const
    {
        double prev = i ? om[i - 1] : 1.0; /* 1 - max_prec before positive i */
        if (omc[i] <= prev)                /* max_prec <= cur: factor 1 */
            return 1.0 / (a[i] + b[i]);
        return om[i] / b[i]; /* factor/(a+b) = (1 - max_prec)/b, b > 0 here */
    }
};

struct weight_q { /* Wq_i = round(w_i 2^bits), scale = 2^bits (a power of two: exact) */
    double scale;
    APL_HD uint64_t operator()(double w) const { return (uint64_t)rint(w * scale); }
};

struct weight_pos { /* Wq_i * E_{l_i} */
    const uint64_t *Wq, *E;
    const uint32_t *l;
    APL_HD u128 operator()(uint64_t i) const { return (u128)Wq[i] * E[l[i]]; }
};

struct g_consts { /* alpha_k, beta_k of G(x) = alpha_k + beta_k (x - O_k) */
    const uint32_t *l, *u;
    uint64_t np;
    const uint64_t *Wpre, *E;
    const u128 *WEpre;
    double inv2d, inv_np;
    double inv_scale, inv_scale_pos; /* 2^-bits, 2^-(bits + 52) */
    APL_HD thrust::tuple<double, double> operator()(uint64_t k) const
    {
        uint64_t cl = upper_bound_u32(l, np, k); /* windows opened at or before k */
        uint64_t cu = upper_bound_u32(u, np, k); /* windows closed at or before k */
        /* l and u ascend and l_i <= u_i, so the open windows are exactly [cu, cl). */
        uint64_t Fq = Wpre[cu], Wq = Wpre[cl] - Wpre[cu];
        u128 Aq = (u128)Wq * E[k] - (WEpre[cl] - WEpre[cu]);
        double F = (double)Fq * inv_scale, W = (double)Wq * inv_scale;
        double A = i128_to_double(Aq) * inv_scale_pos; /* sum_open w_i (O_k - L_i) / (2 delta) */
        return thrust::make_tuple((F + A) * inv_np, W * inv2d * inv_np);
    }
};

struct eval_g {
    const double *O, *alpha, *beta;
    APL_HD float operator()(const thrust::tuple<float, uint32_t> &xk) const
    {
        return eval_segment(O, alpha, beta, thrust::get<0>(xk), thrust::get<1>(xk));
    }
};

struct positive_grad {
    double np;
    APL_HD float operator()(double om) const { return (float)(-om / np); }
};

/* ---- steps ---- */

/* cpu_common.c's apl_prune_threshold: the smallest float f with (double)f >= min_pos - delta. */
inline float prune_threshold(float min_pos, double delta)
{
    double thr = (double)min_pos - delta;
    float f = (float)thr;
    if ((double)f < thr)
        f = nextafterf(f, INFINITY);
    return f;
}

struct positives {
    size_t np = 0;
    dvec<float> s;        /* ascending logits (-0 stored as +0), ties by index */
    dvec<uint64_t> index; /* their positions in the input */
    float thr = 0.0f;     /* valid negatives: t == 0 and s >= thr */
};

/* The positives of the n device-resident logits s and targets t, sorted; np = 0 leaves the rest
 * empty. */
inline void gather_positives(const float *s, const int8_t *t, size_t n, double delta,
                             positives &p)
{
    p.np = (size_t)thrust::count(P(), dptr(t), dptr(t) + n, (int8_t)1);
    if (p.np == 0)
        return;
    p.index.resize(p.np);
    p.s.resize(p.np);
    thrust::copy_if(P(), count_it(0), count_it(n), dptr(t), p.index.begin(), is_target{1});
    thrust::gather(P(), p.index.begin(), p.index.end(), dptr(s), p.s.begin());
    /* Stable on ascending indices: ties by index, as cpu_common.c sorts. A radix sort orders -0
     * before +0, which are one value to the contract (and to the CPU's comparison sort): as +0,
     * they tie and keep index order, which aLRP's localisation order needs. */
    thrust::transform(P(), p.s.begin(), p.s.end(), p.s.begin(), plus_zero{});
    thrust::stable_sort_by_key(P(), p.s.begin(), p.s.end(), p.index.begin());
    p.thr = prune_threshold(p.s[0], delta);
}

/* Positions and logits of the valid negatives of the n device-resident s, t, in input order.
 * Returns |V|. */
inline size_t compact_valid_negatives(const float *s, const int8_t *t, size_t n, float thr,
                                      dvec<uint64_t> &vidx, dvec<float> &x)
{
    auto st = thrust::make_zip_iterator(thrust::make_tuple(dptr(s), dptr(t)));
    size_t nv = (size_t)thrust::count_if(P(), st, st + n, is_valid_negative{thr});
    vidx.resize(nv);
    x.resize(nv);
    thrust::copy_if(P(), count_it(0), count_it(n), st, vidx.begin(), is_valid_negative{thr});
    thrust::gather(P(), vidx.begin(), vidx.end(), dptr(s), x.begin());
    return nv;
}

struct segments {
    uint64_t S = 0;    /* 2 |P| breakpoints */
    dvec<double> O;    /* merged s_i - delta and s_i + delta, ascending */
    dvec<uint32_t> l;  /* l_i: O[l_i] = s_i - delta (first such index) */
    dvec<uint32_t> u;  /* u_i: O[u_i] = s_i + delta (first such index) */
    dvec<uint64_t> E;  /* fixed-point positions of the breakpoints */
    dvec<uint32_t> lut_lo, lut_hi;
    seg_index ix;      /* points into O and the table above: keep this struct alive */
    double qscale = 0, qmax = 0; /* element offsets: round((x - O_k) qscale), at most qmax */
    int qbits = 0;
};

/* Breakpoints, windows, positions and the lookup table; n is the element count (for Fq). */
inline void build_segments(const positives &p, double delta, size_t n, segments &sg)
{
    const size_t np = p.np, S = 2 * np;
    sg.S = S;
    dvec<double> L(np), R(np);
    thrust::transform(P(), p.s.begin(), p.s.end(), L.begin(), shift_by{-delta});
    thrust::transform(P(), p.s.begin(), p.s.end(), R.begin(), shift_by{delta});
    sg.O.resize(S);
    thrust::merge(P(), L.begin(), L.end(), R.begin(), R.end(), sg.O.begin());
    sg.l.resize(np);
    sg.u.resize(np);
    thrust::lower_bound(P(), sg.O.begin(), sg.O.end(), L.begin(), L.end(), sg.l.begin());
    thrust::lower_bound(P(), sg.O.begin(), sg.O.end(), R.begin(), R.end(), sg.u.begin());

    const double O0 = sg.O[0], Olast = sg.O[S - 1], inv2d = 1.0 / (2.0 * delta);
    sg.E.resize(S);
    thrust::transform(P(), sg.O.begin(), sg.O.end(), sg.E.begin(),
                      position_of{O0, ldexp(inv2d, POS_BITS)});
    sg.qbits = offset_bits(n);
    sg.qscale = ldexp(inv2d, sg.qbits);
    sg.qmax = ldexp(1.0, sg.qbits);

    /* The lookup table of segment_index.h (the same cells per segment as the CPU's). */
    const uint64_t cells = apl_seg_cells(S);
    const double width = apl_seg_cell_width(O0, Olast, cells);
    sg.lut_lo.resize(cells);
    sg.lut_hi.resize(cells);
    thrust::transform(P(), count_it(0), count_it(cells), sg.lut_lo.begin(),
                      lut_bound{raw(sg.O), S, O0, width, false});
    thrust::transform(P(), count_it(0), count_it(cells), sg.lut_hi.begin(),
                      lut_bound{raw(sg.O), S, O0, width, true});
    sg.ix = apl_seg_index_make(raw(sg.O), S, O0, Olast, raw(sg.lut_lo), raw(sg.lut_hi));
}

/* Histogram (cnt_k, off_k) of values sorted ascending, and each value's segment in k. The keys
 * come out sorted, so reduce_by_key bins them; integer sums, so exact in any order. */
inline void histogram_sorted(const dvec<float> &xs, const segments &sg, dvec<uint32_t> &k,
                             dvec<uint64_t> &cnt, dvec<uint64_t> &off)
{
    const size_t m = xs.size();
    k.resize(m);
    cnt.assign(sg.S, 0);
    off.assign(sg.S, 0);
    if (m == 0)
        return;
    thrust::transform(P(), xs.begin(), xs.end(), k.begin(), find_seg{sg.ix});
    const size_t cap = m < sg.S ? m : sg.S;
    dvec<uint32_t> keys(cap);
    dvec<uint64_t> sums(cap);
    auto end = thrust::reduce_by_key(P(), k.begin(), k.end(), thrust::constant_iterator<uint64_t>(1),
                                     keys.begin(), sums.begin());
    const size_t used = (size_t)(end.first - keys.begin());
    thrust::scatter(P(), sums.begin(), sums.begin() + used, keys.begin(), cnt.begin());
    auto q = thrust::make_transform_iterator(
        thrust::make_zip_iterator(thrust::make_tuple(xs.begin(), k.begin())),
        bin_offset{raw(sg.O), sg.qscale, sg.qmax});
    thrust::reduce_by_key(P(), k.begin(), k.end(), q, keys.begin(), sums.begin());
    thrust::scatter(P(), sums.begin(), sums.begin() + used, keys.begin(), off.begin());
}

/* C[k] and Y[k]: prefix sums over segments 0..k-1 (C[0] = Y[0] = 0). */
inline void segment_prefix(const dvec<uint64_t> &cnt, const dvec<uint64_t> &off,
                           const segments &sg, dvec<uint64_t> &C, dvec<u128> &Y)
{
    C.assign(sg.S + 1, 0);
    Y.assign(sg.S + 1, 0);
    thrust::inclusive_scan(P(), cnt.begin(), cnt.end(), C.begin() + 1);
    auto y = thrust::make_transform_iterator(
        thrust::make_zip_iterator(thrust::make_tuple(cnt.begin(), off.begin(), sg.E.begin())),
        segment_y{POS_BITS - sg.qbits});
    thrust::inclusive_scan(P(), y, y + sg.S, Y.begin() + 1);
}

/* The SPEC's recurrence over the ascending positives, as scans: 1 - max_prec after positive i
 * is the running minimum of 1 - cur (min does not round, so this is bitwise the sequential
 * loop). Fills om (1 - prec_i) and w; returns the loss, the mean of 1 - prec_i. */
inline double precision_recurrence(const dvec<double> &a, const dvec<double> &b,
                                   dvec<double> &om, dvec<double> &w)
{
    const size_t np = a.size();
    dvec<double> omc(np);
    om.resize(np);
    w.resize(np);
    auto ab = thrust::make_zip_iterator(thrust::make_tuple(a.begin(), b.begin()));
    thrust::transform(P(), ab, ab + np, omc.begin(), one_minus_cur{});
    thrust::inclusive_scan(P(), omc.begin(), omc.end(), om.begin(), thrust::minimum<double>());
    thrust::transform(P(), count_it(0), count_it(np), w.begin(),
                      weight_fn{raw(a), raw(b), raw(omc), raw(om)});
    return thrust::reduce(P(), om.begin(), om.end(), 0.0) / (double)np;
}

struct core_result {
    dvec<double> alpha, beta; /* per segment */
    dvec<double> om;          /* per sorted positive, its gradient times -|P|: AP 1 - prec_i,
                                 aLRP L_i */
    double loss = 0.0;        /* AP: 1 - AP; aLRP: loss_cls */
    int wbits = W_BITS;       /* the fixed-point weights Wq_i = round(w_i 2^wbits) */
};

/* The end of every device core: the work queued on the device is done (so a failure shows here,
 * and the caller may read the gradient or stop a timer). Nothing to wait for on the CPP backend. */
inline apl_status device_sync(apl_error *err)
{
#if THRUST_DEVICE_SYSTEM == THRUST_DEVICE_SYSTEM_CUDA
    CUDA_CHECK(cudaStreamSynchronize(cur_stream()));
#else
    (void)err;
#endif
    return APL_OK;
}

/* count elements between host memory and memory that is not a dvec (a caller's device array;
 * host memory on CPP), in the stream's order; copy_to_host waits. */
template <class T> inline void copy_to_host(T *h, const T *d, size_t count)
{
    if (!count)
        return;
#if THRUST_DEVICE_SYSTEM == THRUST_DEVICE_SYSTEM_CUDA
    throw_if_cuda(cudaMemcpyAsync(h, d, count * sizeof(T), cudaMemcpyDeviceToHost, cur_stream()));
    throw_if_cuda(cudaStreamSynchronize(cur_stream()));
#else
    memcpy(h, d, count * sizeof(T));
#endif
}
template <class T> inline void copy_to_device(T *d, const T *h, size_t count)
{
    if (!count)
        return;
#if THRUST_DEVICE_SYSTEM == THRUST_DEVICE_SYSTEM_CUDA
    throw_if_cuda(cudaMemcpyAsync(d, h, count * sizeof(T), cudaMemcpyHostToDevice, cur_stream()));
#else
    memcpy(d, h, count * sizeof(T));
#endif
}

/* ---- aLRP Loss (docs/SPEC_ALRP.md) ----
 * The negatives' side (histogram, b_i, G from w, pass 2) is AP-Loss's unchanged; what differs
 * is the O(|P|) middle: c_i, L_i, w_i = L_i / b_i, the losses and grad_e. That middle runs on
 * the host over the small per-positive arrays with the CPU variants' own functions (alrp.h), so
 * every aLRP variant, CPU or GPU, shares one implementation of it; the weights then go back to
 * the device. */

/* One call's aLRP arrays: device pointers (host on CPP), in the flat order of the positives. */
struct alrp_io {
    const float *e = nullptr; /* n_e localisation errors (apl_problem.aux) */
    size_t n_e = 0;
    float *grad_e = nullptr;  /* d loss_loc / d e (apl_output.grad_aux); nullptr: not wanted */
    double loss_loc = 0.0;    /* out */
};

/* The aLRP arrays of problem p and output out (device pointers), for a call whose loss is aLRP. */
inline alrp_io alrp_of(const apl_problem *p, const apl_output *out)
{
    alrp_io io;
    io.e = p->aux;
    io.n_e = p->n_aux;
    io.grad_e = out->grad_aux;
    return io;
}

struct free_deleter {
    void operator()(void *q) const { free(q); }
};

/* aLRP's middle from a_i and b_i of the sorted positives p (device arrays): copies them, the
 * positives' logits and flat indices and e to the host; there apl_alrp_sorted_e (e in sorted
 * order), apl_alrp_c (c_i over aligned blocks), apl_alrp_weights (w_i, L_i, grad_e, both
 * losses), as naive, pruned and sorted run them; then w and om = L_i to the device and grad_e
 * to io.grad_e in flat order. r.wbits: the fixed point of apl_sorted_coefficients (w_i = L_i /
 * b_i has no upper bound, so the scale adapts to sum w_i: sum Wq < 2^62). */
inline apl_status alrp_middle(const positives &p, double delta, const dvec<double> &a,
                              const dvec<double> &b, alrp_io &io, core_result &r,
                              dvec<double> &w, apl_error *err)
{
    const size_t np = p.np;
    if (io.n_e != np) /* apl_check_problem's precondition; checked again before any read */
        return apl_fail(err, APL_ERR_ARG, "alrp: %zu localisation errors for %zu positives",
                        io.n_e, np);
    std::vector<float> s(np), e_flat(np);
    std::vector<uint64_t> index(np);
    std::vector<apl_pos> pos(np);
    std::vector<double> work(7 * np);
    double *ha = work.data(), *hb = ha + np, *e = hb + np, *c = e + np, *hw = c + np,
           *L = hw + np, *ge = L + np;
    p.s.to_host(s.data());
    p.index.to_host(index.data());
    a.to_host(ha);
    b.to_host(hb);
    copy_to_host(e_flat.data(), io.e, np);
    for (size_t i = 0; i < np; i++)
        pos[i] = apl_pos{s[i], (size_t)index[i]};
    size_t *rank_raw = nullptr;
    apl_status st = apl_alrp_sorted_e(pos.data(), np, e_flat.data(), e, &rank_raw, err);
    std::unique_ptr<size_t, free_deleter> rank(rank_raw);
    if (st == APL_OK)
        st = apl_alrp_c(s.data(), e, np, delta, c, err);
    if (st != APL_OK)
        return st;
    const apl_alrp_losses l = apl_alrp_weights(np, ha, hb, c, e, hw, L, io.grad_e ? ge : nullptr);
    r.loss = l.loss_cls;
    io.loss_loc = l.loss_loc;
    double wsum = 0.0;
    for (size_t i = 0; i < np; i++) {
        if (!(hw[i] >= 0.0) || !isfinite(hw[i]))
            return apl_fail(err, APL_ERR_INPUT, "alrp: w[%zu] = %g: expected a finite value >= 0 "
                            "(every e finite and >= 0?)", i, hw[i]);
        wsum += hw[i];
    }
    int ex = 0;
    frexp(wsum * (1.0 + 0x1p-40) + 0x1p-1000, &ex); /* wsum < 2^ex */
    r.wbits = 61 - ex < 960 ? 61 - ex : 960;        /* 2^-(wbits + 52) stays a normal double */
    w.from_host(hw, np);
    r.om.from_host(L, np);
    std::vector<float> ge_flat(io.grad_e ? np : 0);
    if (io.grad_e) {
        apl_alrp_scatter_grad_e(np, ge, rank.get(), ge_flat.data());
        copy_to_device(io.grad_e, ge_flat.data(), np);
    }
    return device_sync(err); /* the host arrays outlive the copies from them */
}

/* The loss's own middle from a_i and b_i: AP-Loss's precision recurrence (alrp == nullptr) or
 * aLRP's; fills w (G's weights), r.om, r.loss and r.wbits. */
inline apl_status loss_middle(const positives &p, double delta, const dvec<double> &a,
                              const dvec<double> &b, alrp_io *alrp, core_result &r,
                              dvec<double> &w, apl_error *err)
{
    if (alrp)
        return alrp_middle(p, delta, a, b, *alrp, r, w, err);
    r.loss = precision_recurrence(a, b, r.om, w);
    r.wbits = W_BITS;
    return APL_OK;
}

/* G's constants alpha_k, beta_k from the weights w of the sorted positives, in r.wbits fixed
 * point. */
inline void coefficients(const segments &sg, size_t np, double delta, const dvec<double> &w,
                         core_result &r)
{
    const size_t S = sg.S;
    dvec<uint64_t> Wq(np), Wpre(np + 1, 0);
    dvec<u128> WE(np), WEpre(np + 1, 0);
    thrust::transform(P(), w.begin(), w.end(), Wq.begin(), weight_q{ldexp(1.0, r.wbits)});
    thrust::inclusive_scan(P(), Wq.begin(), Wq.end(), Wpre.begin() + 1);
    thrust::transform(P(), count_it(0), count_it(np), WE.begin(),
                      weight_pos{raw(Wq), raw(sg.E), raw(sg.l)});
    thrust::inclusive_scan(P(), WE.begin(), WE.end(), WEpre.begin() + 1);
    r.alpha.resize(S);
    r.beta.resize(S);
    thrust::transform(P(), count_it(0), count_it(S),
                      thrust::make_zip_iterator(thrust::make_tuple(r.alpha.begin(), r.beta.begin())),
                      g_consts{raw(sg.l), raw(sg.u), np, raw(Wpre), raw(sg.E), raw(WEpre),
                               1.0 / (2.0 * delta), 1.0 / (double)np, ldexp(1.0, -r.wbits),
                               ldexp(1.0, -r.wbits - 52)});
}

/* From the histograms of the valid negatives (n) and of the positives (p) to a_i, b_i, the
 * loss's middle (alrp: nullptr for AP-Loss) and G's constants. O(|P|) work, all of it Thrust
 * except aLRP's middle (on the host). */
inline apl_status sorted_core(const positives &p, const segments &sg, double delta,
                              const dvec<uint64_t> &cnt_n, const dvec<uint64_t> &off_n,
                              const dvec<uint64_t> &cnt_p, const dvec<uint64_t> &off_p,
                              alrp_io *alrp, core_result &r, apl_error *err)
{
    const size_t np = p.np, S = sg.S;
    dvec<uint64_t> C;
    dvec<u128> Y;
    dvec<double> a(np), b(np), w;
    segment_prefix(cnt_n, off_n, sg, C, Y);
    thrust::transform(P(), count_it(0), count_it(np), b.begin(),
                      window_sum{raw(C), raw(Y), raw(sg.E), raw(sg.l), raw(sg.u), S, 0.0});
    segment_prefix(cnt_p, off_p, sg, C, Y);
    thrust::transform(P(), count_it(0), count_it(np), a.begin(),
                      window_sum{raw(C), raw(Y), raw(sg.E), raw(sg.l), raw(sg.u), S, 0.5});
    apl_status st = loss_middle(p, delta, a, b, alrp, r, w, err);
    if (st != APL_OK)
        return st;
    coefficients(sg, np, delta, w, r);
    return APL_OK;
}

/* grad[index_i] = -om_i/|P| for every positive (AP: -(1 - prec_i)/|P|, aLRP: -L_i/|P|, each
 * positive its own value, tied ones too); g is the device gradient. */
inline void scatter_positive_grads(const positives &p, const core_result &r, float *g)
{
    auto gp = thrust::make_transform_iterator(r.om.begin(), positive_grad{(double)p.np});
    thrust::scatter(P(), gp, gp + p.np, p.index.begin(), dptr(g));
}

/* A device core's host entry point: copy logits, targets and (aLRP) e to the device, run core
 * (a variant's signature, device pointers), copy the gradient and grad_e back. Call inside
 * apl_guarded. */
template <class Core>
inline apl_status run_from_host(Core &&core, const apl_problem *p, const apl_output *out,
                                apl_result *res, apl_error *err)
{
    *res = apl_result{};
    const size_t n = p->n, na = p->loss == APL_LOSS_ALRP ? p->n_aux : 0;
    if (n == 0)
        return APL_OK;
    dvec<float> s, g(n), aux, ga;
    dvec<int8_t> t;
    s.from_host(p->logits, n);
    t.from_host(p->targets, n);
    aux.from_host(p->aux, na); /* na == 0 reads nothing (p->aux may be NULL) */
    apl_problem dp = *p;
    dp.logits = raw(s), dp.targets = raw(t), dp.aux = na ? raw(aux) : nullptr;
    apl_output dout = {raw(g), nullptr};
    if (na && out->grad_aux) {
        ga.resize(na);
        dout.grad_aux = raw(ga);
    }
    apl_status st = core(&dp, &dout, res, err);
    if (st != APL_OK)
        return st;
    g.to_host(out->grad);
    if (dout.grad_aux)
        ga.to_host(out->grad_aux);
    return APL_OK;
}

/* ---- the variant ---- */

/* Outside the segment algorithms' range (see APL_SEGMENT_MAX_SPAN in kernels.h). */
inline bool segments_in_range(const positives &p, double delta)
{
    return apl_segments_in_range(p.s[0], p.s[p.np - 1], p.np, delta) != 0;
}

/* The exact O(|P|*N) variant of the same backend, on the same (host or device) pointers: the
 * whole problem (aLRP's e and grad_e included). */
inline apl_status exact_fallback(const apl_problem *p, const apl_output *out, apl_result *res,
                                 apl_error *err)
{
    apl_problem q = *p;
    q.threads = 0;
#if THRUST_DEVICE_SYSTEM == THRUST_DEVICE_SYSTEM_CUDA
    q.stream = (void *)cur_stream(); /* the same stream: cuda_warp's own stream_scope */
    return apl_cuda_warp_device(&q, out, res, err);
#else
    return apl_pruned(&q, out, res, err);
#endif
}

/* thrust_sorted on device-resident inputs and outputs (p's and out's pointers): AP-Loss, or
 * aLRP Loss when p->loss says so. May throw: call inside apl_guarded. */
inline apl_status thrust_sorted_core(const char *name, const apl_problem *pr,
                                     const apl_output *out, apl_result *res, apl_error *err)
{
    *res = apl_result{};
    const float *s = pr->logits;
    const int8_t *t = pr->targets;
    const size_t n = pr->n;
    const double delta = pr->delta;
    float *grad = out->grad;
    if (n == 0)
        return APL_OK;
    positives p;
    gather_positives(s, t, n, delta, p);
    res->positives = p.np;
    if (p.np == 0) { /* both losses 0, every gradient 0 (grad_e has no entries) */
        thrust::fill_n(P(), dptr(grad), n, 0.0f);
        return device_sync(err);
    }
    if (p.np > MAX_POSITIVES)
        return apl_fail(err, APL_ERR_ARG, "%s: %zu positives: at most %zu supported", name, p.np,
                        MAX_POSITIVES);
    if (!segments_in_range(p, delta))
        return exact_fallback(pr, out, res, err);
    segments sg;
    build_segments(p, delta, n, sg);

    /* Valid negatives sorted by logit (ties by index), so their segments come out sorted. */
    dvec<uint64_t> vidx;
    dvec<float> xs;
    res->valid_negatives = compact_valid_negatives(s, t, n, p.thr, vidx, xs);
    thrust::stable_sort_by_key(P(), xs.begin(), xs.end(), vidx.begin());

    /* Pass 1: histograms per segment. */
    dvec<uint32_t> kn, kp;
    dvec<uint64_t> cnt_n, off_n, cnt_p, off_p;
    histogram_sorted(xs, sg, kn, cnt_n, off_n);
    histogram_sorted(p.s, sg, kp, cnt_p, off_p);
    core_result r;
    alrp_io alrp = alrp_of(pr, out);
    apl_status st = sorted_core(p, sg, delta, cnt_n, off_n, cnt_p, off_p,
                                pr->loss == APL_LOSS_ALRP ? &alrp : nullptr, r, err);
    if (st != APL_OK)
        return st;
    res->loss = r.loss;
    res->loss_loc = alrp.loss_loc;

    /* Pass 2: G at every valid negative, -om_i/|P| at every positive, 0 elsewhere. */
    thrust::fill_n(P(), dptr(grad), n, 0.0f);
    auto ge = thrust::make_transform_iterator(
        thrust::make_zip_iterator(thrust::make_tuple(xs.begin(), kn.begin())),
        eval_g{raw(sg.O), raw(r.alpha), raw(r.beta)});
    thrust::scatter(P(), ge, ge + xs.size(), vidx.begin(), dptr(grad));
    scatter_positive_grads(p, r, grad);
    return device_sync(err);
}

/* The host entry point (both backends): copy in, thrust_sorted_core, copy out. */
inline apl_status thrust_sorted_run(const char *name, const apl_problem *p, const apl_output *out,
                                    apl_result *res, apl_error *err)
{
    return apl_guarded(err, name, [&]() -> apl_status {
        return run_from_host(
            [name](const apl_problem *dp, const apl_output *dout, apl_result *r, apl_error *e) {
                return thrust_sorted_core(name, dp, dout, r, e);
            },
            p, out, res, err);
    });
}

/* The device entry point: thrust_sorted_core behind the C boundary. */
inline apl_status thrust_sorted_run_device(const char *name, const apl_problem *p,
                                           const apl_output *out, apl_result *res, apl_error *err)
{
    return apl_guarded(err, name, [&]() -> apl_status {
        return thrust_sorted_core(name, p, out, res, err);
    });
}

} /* namespace */

#endif
