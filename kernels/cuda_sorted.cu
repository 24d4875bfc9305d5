/* cuda_sorted.cu: the variant cuda_sorted, the SPEC's O(M log|P|) algorithm on the GPU.
 *
 *   1. gather and sort the positives (Thrust/CUB) of the device-resident inputs;
 *      merged breakpoints s_i -+ delta, their windows, fixed-point positions and the segment
 *      lookup table (build_segments in thrust_sorted.inl)
 *   2. pass1_kernel: every valid negative finds its segment and adds its count and fixed-point
 *      offset to a histogram privatised per block in shared memory (when 2|P| segments fit),
 *      merged into the global one with integer atomics; the positives' histogram from their
 *      sorted list (histogram_sorted)
 *   3. sorted_core (thrust_sorted.inl): window sums give a_i, b_i; the recurrence; alpha_k, beta_k
 *   4. pass2_kernel: every element's gradient (G at valid negatives, 0 elsewhere), then the
 *      positives' -(1 - prec_i)/|P|, straight into the device gradient
 *
 * apl_cuda_sorted_device is that, on device pointers; apl_cuda_sorted (host pointers) copies the
 * inputs in, calls it and copies the gradient out.
 *
 * Deterministic: the only atomics add integers (counts, fixed-point offsets), and integer
 * addition does not depend on order. Steps 1 and 3 are the code thrust_sorted_cpu runs on the
 * CPU in CI; the two kernels here are the GPU-only part.
 */
#include "thrust_sorted.inl"

namespace {

struct pass1_args {
    const float *s;
    const int8_t *t;
    uint64_t n;
    float thr;
    seg_index ix;
    double qscale, qmax;
    ull *cnt, *off; /* global histogram, S bins each, zeroed */
    ull *nv;        /* valid negatives */
};

/* SHARED: bins privatised per block in dynamic shared memory (off as ull[S], then cnt as
 * unsigned[S]; a block sees fewer than 2^32 elements, see the launch). Otherwise straight to
 * the global bins. A few segments can take 10-25% of all negatives: privatising turns those
 * hot global atomics into shared-memory ones. */
template <bool SHARED>
__global__ void pass1_kernel(pass1_args a)
{
    extern __shared__ ull smem[];
    const uint64_t S = a.ix.S;
    ull *off = a.off;
    unsigned *cnt32 = nullptr;
    if (SHARED) {
        off = smem;
        cnt32 = (unsigned *)(smem + S);
        for (uint64_t k = threadIdx.x; k < S; k += blockDim.x) {
            off[k] = 0;
            cnt32[k] = 0;
        }
        __syncthreads();
    }
    ull nv = 0;
    const uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
    for (uint64_t j = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; j < a.n; j += stride) {
        float x = a.s[j];
        if (a.t[j] != 0 || !(x >= a.thr))
            continue;
        uint64_t k = apl_seg_find(&a.ix, (double)x);
        ull q = offset_q((double)x, a.ix.O[k], a.qscale, a.qmax);
        if (SHARED) {
            atomicAdd(&cnt32[k], 1u);
            atomicAdd(&off[k], q);
        } else {
            atomicAdd(&a.cnt[k], 1ull);
            atomicAdd(&a.off[k], q);
        }
        nv++;
    }
    /* Every thread gets here (no early return), so full-mask shuffles are safe. */
    for (int o = 16; o > 0; o >>= 1)
        nv += __shfl_down_sync(0xffffffffu, nv, o);
    if ((threadIdx.x & 31) == 0 && nv)
        atomicAdd(a.nv, nv);
    if (SHARED) {
        __syncthreads();
        for (uint64_t k = threadIdx.x; k < S; k += blockDim.x)
            if (cnt32[k]) {
                atomicAdd(&a.cnt[k], (ull)cnt32[k]);
                atomicAdd(&a.off[k], off[k]);
            }
    }
}

struct pass2_args {
    const float *s;
    const int8_t *t;
    uint64_t n;
    float thr;
    seg_index ix;
    const double *alpha, *beta;
    float *grad;
};

/* Every element: G at valid negatives, 0 elsewhere (positives are written afterwards). */
__global__ void pass2_kernel(pass2_args a)
{
    const uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
    for (uint64_t j = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; j < a.n; j += stride) {
        float x = a.s[j], g = 0.0f;
        if (a.t[j] == 0 && x >= a.thr)
            g = eval_segment(a.ix.O, a.alpha, a.beta, x, apl_seg_find(&a.ix, (double)x));
        a.grad[j] = g;
    }
}

const int THREADS = 512;

/* Blocks for a grid-stride loop over n elements: enough to fill the device, no more than the
 * work, and enough that no block sees 2^32 elements (its shared counters are 32-bit). */
uint64_t grid_for(uint64_t n, int sms, int per_sm)
{
    uint64_t blocks = (uint64_t)sms * (uint64_t)(per_sm > 0 ? per_sm : 1);
    uint64_t need = (n + THREADS - 1) / THREADS;
    if (blocks > need)
        blocks = need;
    if (blocks < (n >> 31) + 1)
        blocks = (n >> 31) + 1;
    return blocks ? blocks : 1;
}

/* The device core: s, t and grad are device pointers (n elements each). May throw. */
apl_status cuda_sorted_core(const float *s, const int8_t *t, size_t n, double delta,
                            float *grad, apl_result *res, apl_error *err)
{
    *res = apl_result{};
    if (n == 0)
        return APL_OK;
    int dev = 0, sms = 0, smem_optin = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));

    positives p;
    gather_positives(s, t, n, delta, p);
    res->positives = p.np;
    if (p.np == 0) {
        CUDA_CHECK(cudaMemset(grad, 0, n * sizeof *grad));
        return device_sync(err);
    }
    if (p.np > MAX_POSITIVES)
        return apl_fail(err, APL_ERR_ARG, "cuda_sorted: %zu positives: at most %zu supported",
                        p.np, MAX_POSITIVES);
    if (!segments_in_range(p, delta))
        return exact_fallback(s, t, n, delta, grad, res, err);
    segments sg;
    build_segments(p, delta, n, sg);
    const uint64_t S = sg.S;

    /* Pass 1. */
    dvec<uint64_t> cnt_n(S, 0), off_n(S, 0), nv(1, 0);
    pass1_args a1 = {s, t, n, p.thr, sg.ix, sg.qscale, sg.qmax,
                     (ull *)raw(cnt_n), (ull *)raw(off_n), (ull *)raw(nv)};
    const size_t smem = S * (sizeof(ull) + sizeof(unsigned));
    if (smem <= (size_t)smem_optin) {
        CUDA_CHECK(cudaFuncSetAttribute(pass1_kernel<true>,
                                        cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        int per_sm = 0;
        CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, pass1_kernel<true>,
                                                                 THREADS, smem));
        pass1_kernel<true><<<(unsigned)grid_for(n, sms, per_sm), THREADS, smem>>>(a1);
    } else {
        pass1_kernel<false><<<(unsigned)grid_for(n, sms, 2048 / THREADS), THREADS>>>(a1);
    }
    CUDA_CHECK(cudaGetLastError());
    dvec<uint32_t> kp;
    dvec<uint64_t> cnt_p, off_p;
    histogram_sorted(p.s, sg, kp, cnt_p, off_p);

    core_result r;
    sorted_core(p, sg, delta, cnt_n, off_n, cnt_p, off_p, r);
    res->loss = r.loss;
    res->valid_negatives = (size_t)(uint64_t)nv[0];

    /* Pass 2: every element of the gradient, then the positives over it. */
    pass2_args a2 = {s, t, n, p.thr, sg.ix, raw(r.alpha), raw(r.beta), grad};
    pass2_kernel<<<(unsigned)grid_for(n, sms, 2048 / THREADS), THREADS>>>(a2);
    CUDA_CHECK(cudaGetLastError());
    scatter_positive_grads(p, r, grad);
    return device_sync(err);
}

} /* namespace */

APL_VARIANT_FN(apl_cuda_sorted_device)
{
    return apl_guarded(err, "cuda_sorted", [&]() -> apl_status {
        return cuda_sorted_core(APL_AP_ARGS(p, out), res, err);
    });
}

APL_VARIANT_FN(apl_cuda_sorted)
{
    return apl_guarded(err, "cuda_sorted", [&]() -> apl_status {
        return run_from_host(cuda_sorted_core, APL_AP_ARGS(p, out), res, err);
    });
}
