/* cuda_warp.cu: the variant cuda_warp, the published algorithm (pruned.c's O(|P| * |V|) loops)
 * made warp-parallel on the GPU.
 *
 *   1. gather and sort the positives of the device-resident inputs; compact the valid
 *      negatives (s_j >= the exact float threshold) (Thrust, shared with thrust_sorted.inl)
 *   2. ab_kernel: one warp per positive computes a_i and b_i; the block's warps share tiles of
 *      logits staged in shared memory; H per term in double, double accumulation, butterfly
 *      shuffle reduction (a fixed order: deterministic)
 *   3. precision_recurrence (thrust_sorted.inl): 1 - max_prec as a min-scan in ascending score
 *      order, w_i in the SPEC's stable form, loss = mean(1 - prec_i)
 *   4. neg_grad_kernel: one thread per valid negative, looping over the positives (logit and
 *      w_i) in shared-memory tiles, double accumulation; then the positives' -(1 - prec_i)/|P|
 *
 * No atomics at all, so two runs give the same bits.
 *
 * apl_cuda_warp_device is that, on device pointers; apl_cuda_warp (host pointers) copies the
 * inputs in, calls it and copies the gradient out.
 */
#include "thrust_sorted.inl"

namespace {

/* H(d) = clamp(d / (2 delta) + 1/2, 0, 1) in double. A multiply instead of the reference's
 * division (a software sequence on the GPU), except next to the foot of the ramp: there the
 * reference's own expression decides, so a gradient is exactly 0 where the reference's is. */
__device__ inline double ramp(double d, double inv2d, double two_delta)
{
    double h = d * inv2d + 0.5;
    if (fabs(h) < 0x1p-30)
        h = d / two_delta + 0.5;
    return h < 0.0 ? 0.0 : (h > 1.0 ? 1.0 : h);
}

const int AB_WARPS = 16; /* positives per block: each tile is read from memory once per 16 */
const int AB_TILE = 2048;

/* a_i = 1/2 + sum_k H(s_k - s_i) over the positives, b_i = sum_j H(x_j - s_i) over the valid
 * negatives; warp w of block b handles sorted positive b * AB_WARPS + w. */
__global__ void ab_kernel(const float *sp, uint64_t np, const float *xv, uint64_t nv,
                          double inv2d, double two_delta, double *a, double *b)
{
    __shared__ float tile[AB_TILE];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const uint64_t i = (uint64_t)blockIdx.x * AB_WARPS + warp;
    const bool live = i < np; /* dead warps still help load tiles and reach every barrier */
    const double si = live ? (double)sp[i] : 0.0;
    double sums[2];
    for (int pass = 0; pass < 2; pass++) {
        const float *x = pass ? xv : sp;
        const uint64_t m = pass ? nv : np;
        double acc = 0.0;
        for (uint64_t base = 0; base < m; base += AB_TILE) {
            const uint64_t len = m - base < (uint64_t)AB_TILE ? m - base : (uint64_t)AB_TILE;
            __syncthreads(); /* the previous tile is no longer read */
            for (uint64_t q = threadIdx.x; q < len; q += blockDim.x)
                tile[q] = x[base + q];
            __syncthreads();
            if (live)
                for (uint64_t q = lane; q < len; q += 32)
                    acc += ramp((double)tile[q] - si, inv2d, two_delta);
        }
        for (int o = 16; o > 0; o >>= 1)
            acc += __shfl_xor_sync(0xffffffffu, acc, o);
        sums[pass] = acc;
    }
    if (live && lane == 0) {
        a[i] = 0.5 + sums[0];
        b[i] = sums[1];
    }
}

const int G_THREADS = 256;
const int G_TILE = 1024;

/* grad[vidx_j] = (1/|P|) sum_i w_i H(x_j - s_i) for every valid negative j. */
__global__ void neg_grad_kernel(const float *xv, const uint64_t *vidx, uint64_t nv,
                                const float *sp, const double *w, uint64_t np, double inv2d,
                                double two_delta, double inv_np, float *grad)
{
    __shared__ float ts[G_TILE];
    __shared__ double tw[G_TILE];
    const uint64_t j = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const bool live = j < nv;
    const double x = live ? (double)xv[j] : 0.0;
    double g = 0.0;
    for (uint64_t base = 0; base < np; base += G_TILE) {
        const uint64_t len = np - base < (uint64_t)G_TILE ? np - base : (uint64_t)G_TILE;
        __syncthreads();
        for (uint64_t q = threadIdx.x; q < len; q += blockDim.x) {
            ts[q] = sp[base + q];
            tw[q] = w[base + q];
        }
        __syncthreads();
        if (live)
            for (uint64_t q = 0; q < len; q++) /* every thread reads the same q: a broadcast */
                g += tw[q] * ramp(x - (double)ts[q], inv2d, two_delta);
    }
    if (live)
        grad[vidx[j]] = (float)(g * inv_np);
}

/* The device core: s, t and grad are device pointers (n elements each). May throw. */
apl_status cuda_warp_core(const float *s, const int8_t *t, size_t n, double delta, float *grad,
                          apl_result *res, apl_error *err)
{
    *res = apl_result{};
    if (n == 0)
        return APL_OK;
    positives p;
    gather_positives(s, t, n, delta, p);
    res->positives = p.np;
    if (p.np == 0) {
        CUDA_CHECK(cudaMemset(grad, 0, n * sizeof *grad));
        return device_sync(err);
    }
    dvec<uint64_t> vidx;
    dvec<float> xv;
    const size_t nv = compact_valid_negatives(s, t, n, p.thr, vidx, xv);
    res->valid_negatives = nv;

    const double inv2d = 1.0 / (2.0 * delta);
    dvec<double> a(p.np), b(p.np), w;
    const uint64_t ab_blocks = (p.np + AB_WARPS - 1) / AB_WARPS;
    ab_kernel<<<(unsigned)ab_blocks, AB_WARPS * 32>>>(raw(p.s), p.np, raw(xv), nv, inv2d,
                                                      2.0 * delta, raw(a), raw(b));
    CUDA_CHECK(cudaGetLastError());
    core_result r;
    r.loss = precision_recurrence(a, b, r.om, w);
    res->loss = r.loss;

    /* 0 everywhere, then G at the valid negatives and -(1 - prec_i)/|P| at the positives. */
    CUDA_CHECK(cudaMemset(grad, 0, n * sizeof *grad));
    if (nv > 0) {
        neg_grad_kernel<<<(unsigned)((nv + G_THREADS - 1) / G_THREADS), G_THREADS>>>(
            raw(xv), raw(vidx), nv, raw(p.s), raw(w), p.np, inv2d, 2.0 * delta,
            1.0 / (double)p.np, grad);
        CUDA_CHECK(cudaGetLastError());
    }
    scatter_positive_grads(p, r, grad);
    return device_sync(err);
}

} /* namespace */

APL_VARIANT_FN(apl_cuda_warp_device)
{
    return apl_guarded(err, "cuda_warp", [&]() -> apl_status {
        return cuda_warp_core(APL_AP_ARGS(p, out), res, err);
    });
}

APL_VARIANT_FN(apl_cuda_warp)
{
    return apl_guarded(err, "cuda_warp", [&]() -> apl_status {
        return run_from_host(cuda_warp_core, APL_AP_ARGS(p, out), res, err);
    });
}
