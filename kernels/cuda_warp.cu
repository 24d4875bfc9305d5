/* cuda_warp.cu: the variant cuda_warp, the published algorithm (pruned.c's O(|P| * |V|) loops)
 * made warp-parallel on the GPU.
 *
 *   1. gather and sort the positives of the device-resident inputs; compact the valid
 *      negatives (s_j >= the exact float threshold) (Thrust, shared with thrust_sorted.inl)
 *   2. ab_kernel: one warp per positive computes partial a_i and b_i over one chunk of the
 *      positives and of the valid negatives (the chunks spread the work over every SM); the
 *      block's warps share tiles of logits staged in shared memory; H per term in double,
 *      double accumulation, butterfly shuffle reduction; ab_reduce adds the chunks' partials in
 *      ascending order (fixed orders throughout: deterministic)
 *   3. the loss's middle (loss_middle, thrust_sorted.inl). AP: precision_recurrence, 1 - max_prec
 *      as a min-scan in ascending score order, w_i in the SPEC's stable form, loss = mean(1 -
 *      prec_i). aLRP (docs/SPEC_ALRP.md): a_i, b_i to the host, where the CPU variants'
 *      functions give c_i, L_i, w_i = L_i / b_i, both losses and grad_e (alrp_middle), as for
 *      naive and pruned
 *   4. neg_grad_kernel: one thread per valid negative, looping over the positives (logit and
 *      w_i) in shared-memory tiles, double accumulation; then the positives' own values (AP
 *      -(1 - prec_i)/|P|, aLRP -L_i/|P|)
 *
 * The ramps are double throughout (x - s_i in double, never a float32 breakpoint), which is
 * what aLRP's unbounded weights need (SPEC_ALRP.md, "Numerical hazards"). No atomics at all, so
 * two runs give the same bits.
 *
 * apl_cuda_warp_device is that, on device pointers; apl_cuda_warp (host pointers) copies the
 * inputs (aLRP: and e) in, calls it and copies the gradient (aLRP: and grad_e) out.
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

/* Rows [r * m / splits, (r + 1) * m / splits) of an m-element array: split r's chunk. */
__device__ inline uint64_t chunk_start(uint64_t m, uint64_t r, uint64_t splits)
{
    return (uint64_t)(((unsigned __int128)m * r) / splits);
}

/* Partial a_i and b_i over one chunk of the positives and one of the valid negatives: warp w of
 * block (x, y) handles sorted positive x * AB_WARPS + w against chunk y of each array and writes
 * pa[y * np + i] = sum_k H(s_k - s_i), pb[y * np + i] = sum_j H(x_j - s_i) over its chunks.
 * Splitting the arrays over gridDim.y fills the device when |P| is small (16 positives per
 * block would give a few dozen blocks at batch 8); ab_reduce adds the partials in a fixed
 * order, so the result does not depend on scheduling. */
__global__ void ab_kernel(const float *sp, uint64_t np, const float *xv, uint64_t nv,
                          double inv2d, double two_delta, double *pa, double *pb)
{
    __shared__ float tile[AB_TILE];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const uint64_t i = (uint64_t)blockIdx.x * AB_WARPS + warp;
    const uint64_t split = blockIdx.y, splits = gridDim.y;
    const bool live = i < np; /* dead warps still help load tiles and reach every barrier */
    const double si = live ? (double)sp[i] : 0.0;
    double sums[2];
    for (int pass = 0; pass < 2; pass++) {
        const float *x = pass ? xv : sp;
        const uint64_t m = pass ? nv : np;
        const uint64_t lo = chunk_start(m, split, splits), hi = chunk_start(m, split + 1, splits);
        double acc = 0.0;
        for (uint64_t base = lo; base < hi; base += AB_TILE) {
            const uint64_t len = hi - base < (uint64_t)AB_TILE ? hi - base : (uint64_t)AB_TILE;
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
        pa[split * np + i] = sums[0];
        pb[split * np + i] = sums[1];
    }
}

/* a_i = 1/2 + sum over splits of pa, b_i = sum of pb, splits in ascending order. */
__global__ void ab_reduce(const double *pa, const double *pb, uint64_t np, uint64_t splits,
                          double *a, double *b)
{
    const uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= np)
        return;
    double sa = 0.0, sb = 0.0;
    for (uint64_t r = 0; r < splits; r++) {
        sa += pa[r * np + i];
        sb += pb[r * np + i];
    }
    a[i] = 0.5 + sa;
    b[i] = sb;
}

/* How many chunks to split the arrays into: enough blocks for about 4 per SM, each chunk at
 * least 4 tiles of the larger array (fewer splits are cheaper to reduce), at most 65535 (grid y). */
uint64_t ab_splits(uint64_t np, uint64_t nv, int sms)
{
    const uint64_t pos_blocks = (np + AB_WARPS - 1) / AB_WARPS;
    const uint64_t want = 4 * (uint64_t)(sms > 0 ? sms : 1);
    uint64_t splits = (want + pos_blocks - 1) / pos_blocks;
    const uint64_t m = np > nv ? np : nv;
    const uint64_t most = (m + 4 * AB_TILE - 1) / (4 * AB_TILE);
    if (splits > most)
        splits = most;
    if (splits > 65535)
        splits = 65535;
    return splits ? splits : 1;
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

/* The device core, AP-Loss or aLRP Loss: every pointer of pr and out is a device pointer. May
 * throw. */
apl_status cuda_warp_core(const apl_problem *pr, const apl_output *out, apl_result *res,
                          apl_error *err)
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
        CUDA_CHECK(cudaMemsetAsync(grad, 0, n * sizeof *grad, cur_stream()));
        return device_sync(err);
    }
    dvec<uint64_t> vidx;
    dvec<float> xv;
    const size_t nv = compact_valid_negatives(s, t, n, p.thr, vidx, xv);
    res->valid_negatives = nv;

    const double inv2d = 1.0 / (2.0 * delta);
    const cudaStream_t st = cur_stream();
    int dev = 0, sms = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    const uint64_t ab_blocks = (p.np + AB_WARPS - 1) / AB_WARPS;
    if (ab_blocks > 0x7fffffffu) /* the grid's x limit: 2^35 positives */
        return apl_fail(err, APL_ERR_ARG, "cuda_warp: %zu positives: too many", p.np);
    const uint64_t splits = ab_splits(p.np, nv, sms);
    dvec<double> a(p.np), b(p.np), w, pa(splits * p.np), pb(splits * p.np);
    ab_kernel<<<dim3((unsigned)ab_blocks, (unsigned)splits), AB_WARPS * 32, 0, st>>>(
        raw(p.s), p.np, raw(xv), nv, inv2d, 2.0 * delta, raw(pa), raw(pb));
    CUDA_CHECK(cudaGetLastError());
    ab_reduce<<<(unsigned)((p.np + 255) / 256), 256, 0, st>>>(raw(pa), raw(pb), p.np, splits,
                                                             raw(a), raw(b));
    CUDA_CHECK(cudaGetLastError());
    core_result r;
    alrp_io alrp = alrp_of(pr, out);
    apl_status mid =
        loss_middle(p, delta, a, b, pr->loss == APL_LOSS_ALRP ? &alrp : nullptr, r, w, err);
    if (mid != APL_OK)
        return mid;
    res->loss = r.loss;
    res->loss_loc = alrp.loss_loc;

    /* 0 everywhere, then G at the valid negatives and -om_i/|P| at the positives. */
    CUDA_CHECK(cudaMemsetAsync(grad, 0, n * sizeof *grad, st));
    if (nv > 0) {
        neg_grad_kernel<<<(unsigned)((nv + G_THREADS - 1) / G_THREADS), G_THREADS, 0, st>>>(
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
    stream_scope on(p->stream);
    return apl_guarded(err, "cuda_warp", [&]() -> apl_status {
        return cuda_warp_core(p, out, res, err);
    });
}

APL_VARIANT_FN(apl_cuda_warp)
{
    stream_scope on(p->stream);
    return apl_guarded(err, "cuda_warp", [&]() -> apl_status {
        return run_from_host(cuda_warp_core, p, out, res, err);
    });
}
