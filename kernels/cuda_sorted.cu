/* cuda_sorted.cu: the variant cuda_sorted, the SPEC's O(M log|P|) algorithm on the GPU.
 *
 *   1. gather and sort the positives (Thrust/CUB) of the device-resident inputs;
 *      merged breakpoints s_i -+ delta, their windows, fixed-point positions and the segment
 *      lookup table (build_segments in thrust_sorted.inl)
 *   2. pass1_kernel: every valid negative finds its segment and adds its count and fixed-point
 *      offset to a histogram privatised per block in shared memory (when 2|P| segments fit),
 *      merged into the global one with integer atomics; the positives' histogram from their
 *      sorted list (histogram_sorted)
 *   3. sorted_core (thrust_sorted.inl): window sums give a_i, b_i; the loss's middle (AP: the
 *      recurrence; aLRP: c_i, L_i, w_i = L_i / b_i, both losses and grad_e, on the host by the
 *      CPU variants' functions, alrp_middle); alpha_k, beta_k
 *   4. pass2_kernel: every element's gradient (G at valid negatives, 0 elsewhere), then the
 *      positives' own values (AP -(1 - prec_i)/|P|, aLRP -L_i/|P|), straight into the device
 *      gradient
 *
 * aLRP Loss (docs/SPEC_ALRP.md) differs from AP-Loss only in step 3: the kernels are the same.
 * Outside the segments' exact range both losses go to cuda_warp (exact_fallback); PAP goes to
 * kernels/cuda_pap.cu.
 *
 * apl_cuda_sorted_device is that, on device pointers; apl_cuda_sorted (host pointers) copies the
 * inputs (aLRP: and e) in, calls it and copies the gradient (aLRP: and grad_e) out.
 *
 * Deterministic: the only atomics add integers (counts, fixed-point offsets), and integer
 * addition does not depend on order. Steps 1 and 3 are the code thrust_sorted_cpu runs on the
 * CPU in CI; the two kernels here are the GPU-only part.
 */
#include "thrust_sorted.inl"

#include <functional>
#include <mutex>

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

/* SHARED: bins privatised per block in dynamic shared memory, three 32-bit words per segment:
 * the count, and the offset sum as a low and a high word (see shared_add). A block sees fewer
 * than 2^32 elements (see grid_for) and its offset sum is below n 2^Fq < 2^62, so neither the
 * count nor the high word can overflow. Otherwise straight to the global bins. A few segments
 * can take 10-25% of all negatives: privatising turns those hot global atomics into
 * shared-memory ones, and 32-bit words keep them native (a 64-bit add on shared memory compiles
 * to a compare-and-swap loop, which serialises the lanes that hit one segment). */
struct smem_bins {
    unsigned *cnt, *lo, *hi;
};

/* off += q on a (lo, hi) pair of 32-bit words, exactly: add the low half, and the high half plus
 * the carry out of the low word (old + add wrapped iff the sum is below old). Integer additions,
 * so the total is the same in any order. */
__device__ inline void shared_add(unsigned *lo, unsigned *hi, ull q)
{
    const unsigned ql = (unsigned)q;
    unsigned qh = (unsigned)(q >> 32);
    if (ql) {
        const unsigned old = atomicAdd(lo, ql);
        qh += (unsigned)(old + ql < old);
    }
    if (qh)
        atomicAdd(hi, qh);
}

template <bool SHARED>
__global__ void pass1_kernel(pass1_args a)
{
    extern __shared__ unsigned smem[];
    const uint64_t S = a.ix.S;
    smem_bins sb = {smem, smem + S, smem + 2 * S};
    if (SHARED) {
        for (uint64_t k = threadIdx.x; k < 3 * S; k += blockDim.x)
            smem[k] = 0;
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
            atomicAdd(&sb.cnt[k], 1u);
            shared_add(&sb.lo[k], &sb.hi[k], q);
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
            if (sb.cnt[k]) {
                atomicAdd(&a.cnt[k], (ull)sb.cnt[k]);
                atomicAdd(&a.off[k], ((ull)sb.hi[k] << 32) + (ull)sb.lo[k]);
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

const size_t BIN_BYTES = 3 * sizeof(unsigned); /* shared memory per segment (smem_bins) */

/* The shared-memory path's size limit on device dev, in bytes: what the device allows one block
 * (the opt-in maximum), but no more than leaves room for 2 blocks per SM (each block also has
 * the reserved per-block shared memory), so one block's barrier never idles a whole SM. Also
 * raises pass1_kernel<true>'s dynamic shared memory limit to the opt-in maximum, once per device
 * for the process: setting it per call to that call's size would race between host threads. */
struct shared_limit {
    std::once_flag once;
    cudaError_t error = cudaSuccess;
    size_t bytes = 0;
};
shared_limit shared_limits[64];

void shared_limit_init(int dev, shared_limit &sl)
{
    int optin = 0, per_sm = 0, reserved = 0;
    cudaError_t e = cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
    if (e == cudaSuccess)
        e = cudaDeviceGetAttribute(&per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, dev);
    if (e == cudaSuccess)
        e = cudaDeviceGetAttribute(&reserved, cudaDevAttrReservedSharedMemoryPerBlock, dev);
    if (e == cudaSuccess)
        e = cudaFuncSetAttribute(pass1_kernel<true>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 optin);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        sl.error = e;
        return;
    }
    long two = (long)per_sm / 2 - (long)reserved;
    long cap = two < (long)optin ? two : (long)optin;
    sl.bytes = cap > 0 ? (size_t)cap : 0;
}

apl_status shared_bytes(int dev, size_t *bytes, apl_error *err)
{
    if (dev < 0 || dev >= 64)
        return apl_fail(err, APL_ERR_CUDA, "cuda_sorted: device %d beyond the table", dev);
    shared_limit &sl = shared_limits[dev];
    std::call_once(sl.once, shared_limit_init, dev, std::ref(sl));
    CUDA_CHECK(sl.error);
    *bytes = sl.bytes;
    return APL_OK;
}

/* The device core, AP-Loss or aLRP Loss: every pointer of pr and out is a device pointer. May
 * throw. */
apl_status cuda_sorted_core(const apl_problem *pr, const apl_output *out, apl_result *res,
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
    const cudaStream_t st = cur_stream();
    int dev = 0, sms = 0;
    size_t smem_cap = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    apl_status lim = shared_bytes(dev, &smem_cap, err);
    if (lim != APL_OK)
        return lim;

    positives p;
    gather_positives(s, t, n, delta, p);
    res->positives = p.np;
    if (p.np == 0) { /* both losses 0, every gradient 0 (grad_e has no entries) */
        CUDA_CHECK(cudaMemsetAsync(grad, 0, n * sizeof *grad, st));
        return device_sync(err);
    }
    if (p.np > MAX_POSITIVES)
        return apl_fail(err, APL_ERR_ARG, "cuda_sorted: %zu positives: at most %zu supported",
                        p.np, MAX_POSITIVES);
    if (!segments_in_range(p, delta))
        return exact_fallback(pr, out, res, err);
    segments sg;
    build_segments(p, delta, n, sg);
    const uint64_t S = sg.S;

    /* Pass 1. */
    dvec<uint64_t> cnt_n(S, 0), off_n(S, 0), nv(1, 0);
    pass1_args a1 = {s, t, n, p.thr, sg.ix, sg.qscale, sg.qmax,
                     (ull *)raw(cnt_n), (ull *)raw(off_n), (ull *)raw(nv)};
    const size_t smem = S * BIN_BYTES;
    if (smem <= smem_cap) {
        int per_sm = 0;
        CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, pass1_kernel<true>,
                                                                 THREADS, smem));
        pass1_kernel<true><<<(unsigned)grid_for(n, sms, per_sm), THREADS, smem, st>>>(a1);
    } else {
        pass1_kernel<false><<<(unsigned)grid_for(n, sms, 2048 / THREADS), THREADS, 0, st>>>(a1);
    }
    CUDA_CHECK(cudaGetLastError());
    dvec<uint32_t> kp;
    dvec<uint64_t> cnt_p, off_p;
    histogram_sorted(p.s, sg, kp, cnt_p, off_p);

    core_result r;
    alrp_io alrp = alrp_of(pr, out);
    apl_status mid = sorted_core(p, sg, delta, cnt_n, off_n, cnt_p, off_p,
                                 pr->loss == APL_LOSS_ALRP ? &alrp : nullptr, r, err);
    if (mid != APL_OK)
        return mid;
    res->loss = r.loss;
    res->loss_loc = alrp.loss_loc;
    res->valid_negatives = (size_t)(uint64_t)nv[0];

    /* Pass 2: every element of the gradient, then the positives over it. */
    pass2_args a2 = {s, t, n, p.thr, sg.ix, raw(r.alpha), raw(r.beta), grad};
    pass2_kernel<<<(unsigned)grid_for(n, sms, 2048 / THREADS), THREADS, 0, st>>>(a2);
    CUDA_CHECK(cudaGetLastError());
    scatter_positive_grads(p, r, grad);
    return device_sync(err);
}

} /* namespace */

APL_VARIANT_FN(apl_cuda_sorted_device)
{
    if (p->loss == APL_LOSS_PAP) /* the row's second loss: its own phases, kernels/cuda_pap.cu */
        return apl_cuda_pap_device(p, out, res, err);
    stream_scope on(p->stream);
    return apl_guarded(err, "cuda_sorted", [&]() -> apl_status {
        return cuda_sorted_core(p, out, res, err);
    });
}

APL_VARIANT_FN(apl_cuda_sorted)
{
    if (p->loss == APL_LOSS_PAP)
        return apl_cuda_pap(p, out, res, err);
    stream_scope on(p->stream);
    return apl_guarded(err, "cuda_sorted", [&]() -> apl_status {
        return run_from_host(cuda_sorted_core, p, out, res, err);
    });
}

/* The shared-memory histogram's limit in segments on the current device (S = 2|P|; above it
 * pass 1 takes the global path), for the tests that sit on either side of it; 0 on error. */
extern "C" size_t apl_cuda_sorted_shared_segments(void)
{
    int dev = 0;
    size_t bytes = 0;
    apl_error e = {};
    if (cudaGetDevice(&dev) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    if (apl_guarded(&e, "cuda_sorted", [&]() -> apl_status { return shared_bytes(dev, &bytes, &e); }) != APL_OK)
        return 0;
    return bytes / BIN_BYTES;
}
