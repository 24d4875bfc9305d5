/* cuda_pap.cu: Parameterized AP Loss on the GPU (docs/SPEC_PAP.md), behind cuda_sorted's row:
 * apl_cuda_sorted and apl_cuda_sorted_device hand a problem with loss pap to the two entry points
 * here. The phases are pap_sorted.c's (pap_common.h, "segment phases"): the O(M) passes run on
 * the device, the O(|P|) steps are the same host functions the CPU variant calls.
 *
 *   1. rows: the K-th largest valid logit by a sort of the valid order-preserving keys (-0 folded
 *      onto +0), then the cut among the entries tied with it, in flat order: the rule of
 *      apl_pap_select (skipped when K = 0 or K >= the valid entries);
 *   2. positives: indices, logits and IoUs to the host (O(|P|)), sorted (apl_pap_pos_sort), the
 *      breakpoints O (apl_pap_seg_build) back to the device;
 *   3. pass 1: every negative row finds its segment (first k with O_k >= x, in double: the exact
 *      classification the contract requires); the rows are sorted by segment with a stable radix
 *      sort and one block per segment sums count, offset and tie in a fixed order. No floating
 *      atomics, so two runs give the same bits;
 *   4. apl_pap_seg_middle on the host: the loss, G_k, Gfoot_k, the positives' gradients and the
 *      IoU gradient;
 *   5. pass 2: every element's gradient, then the positives' scattered over it.
 *
 * Outside the exact range (a logit or breakpoint that apl_pap_logit_exact / apl_pap_seg_build
 * refuse: |s| > 2^26 or 0 < |s| < 2^-29) the inputs go to the host and apl_pap_naive runs there,
 * the same hand-over as pap_sorted's.
 *
 * Device pointers (apl_cuda_pap_device): logits, targets, aux (IoUs), params and the outputs, as
 * for every device_fn; apl_cuda_pap copies host inputs in and the outputs back. */
#include "thrust_sorted.inl"

extern "C" {
#include "pap_common.h"
}

#include <memory>
#include <vector>

namespace {

const int PAP_THREADS = 256;

/* apl_pap_rows as the kernels read it. */
struct row_rule {
    int all;
    float tau;
    uint64_t cut;
    __device__ bool is_row(float s, int8_t t, uint64_t j) const
    {
        return t != -1 && (all || s > tau || (s == tau && j <= cut));
    }
};

/* The order-preserving key of pap_common.c's selection: a < b as floats iff key(a) < key(b). */
struct key_of {
    __host__ __device__ uint32_t operator()(float s) const
    {
        if (s == 0.0f)
            s = 0.0f; /* -0 and +0: one value */
        uint32_t u;
        memcpy(&u, &s, sizeof u);
        return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    }
};
inline float float_of_key(uint32_t key)
{
    uint32_t u = (key & 0x80000000u) ? (key & 0x7fffffffu) : ~key;
    float s;
    memcpy(&s, &u, sizeof s);
    return s;
}

struct is_valid {
    __device__ bool operator()(int8_t t) const { return t != -1; }
};
struct is_positive {
    __device__ bool operator()(int8_t t) const { return t == 1; }
};
struct key_above {
    uint32_t k;
    __device__ bool operator()(uint32_t x) const { return x > k; }
};
struct tied_at {
    const float *s;
    const int8_t *t;
    uint32_t k;
    __device__ bool operator()(uint64_t j) const { return t[j] != -1 && key_of{}(s[j]) == k; }
};

/* Step 1: the rows. Counts are integers and the sort is exact, so the selection is the CPU's. */
apl_pap_rows select_rows(const float *s, const int8_t *t, size_t n, size_t topk)
{
    apl_pap_rows sel = {};
    const size_t valid = (size_t)thrust::count_if(P(), dptr(t), dptr(t) + n, is_valid{});
    sel.all = 1;
    sel.rows = valid;
    if (topk == 0 || topk >= valid)
        return sel;
    dvec<uint32_t> keys(valid);
    auto kit = thrust::make_transform_iterator(dptr(s), key_of{});
    thrust::copy_if(P(), kit, kit + n, dptr(t), keys.begin(), is_valid{});
    thrust::sort(P(), keys.begin(), keys.end(), thrust::greater<uint32_t>());
    const uint32_t kt = keys[topk - 1];
    const size_t above = (size_t)thrust::count_if(P(), keys.begin(), keys.end(), key_above{kt});
    const size_t need = topk - above; /* >= 1: the K-th key itself is tied at kt */
    keys.release();
    dvec<uint64_t> ties(valid);
    thrust::copy_if(P(), count_it(0), count_it(n), ties.begin(), tied_at{s, t, kt});
    sel.all = 0;
    sel.tau = float_of_key(kt);
    sel.cut = (size_t)ties[need - 1];
    sel.rows = topk;
    return sel;
}

__device__ inline uint32_t first_at_or_above(const double *O, uint32_t S, double x)
{
    uint32_t lo = 0, hi = S;
    while (lo < hi) {
        uint32_t m = lo + (hi - lo) / 2;
        if (O[m] < x)
            lo = m + 1;
        else
            hi = m;
    }
    return lo;
}

__device__ inline bool logit_exact(float s)
{
    float a = fabsf(s);
    return a == 0.0f || (a >= 0x1p-29f && a <= 0x1p26f); /* apl_pap_logit_exact */
}

/* Pass 1: the segment of every negative row (S + 1 for anything else, sorted last). */
__global__ void pass1_keys(const float *s, const int8_t *t, uint64_t n, row_rule r,
                           const double *O, uint32_t S, uint32_t *key, float *x, int *bad)
{
    const uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
    for (uint64_t j = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; j < n; j += stride) {
        const float v = s[j];
        uint32_t k = S + 1;
        if (t[j] == 0 && r.is_row(v, 0, j)) {
            if (!logit_exact(v))
                *bad = 1; /* every writer writes 1 */
            k = first_at_or_above(O, S, (double)v);
        }
        key[j] = k;
        x[j] = v;
    }
}

/* One block per segment k (0..S) over its run [start_k, start_k+1) of the sorted rows: count,
 * the sum of x - O_k-1 (k > 0) and the rows on O_k (k < S), summed per thread in a fixed stride
 * and then by a fixed tree: the same bits every run. */
__global__ void pass1_sums(const float *x, const uint64_t *start, const double *O, uint32_t S,
                           double *hist)
{
    __shared__ double so[PAP_THREADS], st[PAP_THREADS];
    const uint32_t k = blockIdx.x;
    const uint64_t a = start[k], b = start[k + 1];
    const double left = k > 0 ? O[k - 1] : 0.0, right = k < S ? O[k] : 0.0;
    double off = 0.0, tie = 0.0;
    for (uint64_t i = a + threadIdx.x; i < b; i += blockDim.x) {
        const double v = (double)x[i];
        if (k > 0)
            off += v - left; /* exact in double (the breakpoints are exact) */
        if (k < S && v == right)
            tie += 1.0;
    }
    so[threadIdx.x] = off;
    st[threadIdx.x] = tie;
    __syncthreads();
    for (int w = PAP_THREADS / 2; w > 0; w >>= 1) {
        if ((int)threadIdx.x < w) {
            so[threadIdx.x] += so[threadIdx.x + w];
            st[threadIdx.x] += st[threadIdx.x + w];
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        const uint64_t S1 = (uint64_t)S + 1;
        hist[k] = (double)(b - a);
        hist[S1 + k] = so[0];
        hist[2 * S1 + k] = st[0];
    }
}

/* Pass 2: a negative row at segment k gets G_k (+ Gfoot_k on O_k), everything else 0; the
 * positives are written over this afterwards. */
__global__ void pass2_grad(const float *s, const int8_t *t, uint64_t n, row_rule r,
                           const double *O, uint32_t S, const double *Gk, const double *Gf,
                           float *g)
{
    const uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
    for (uint64_t j = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; j < n; j += stride) {
        const float v = s[j];
        float out = 0.0f;
        if (t[j] == 0 && r.is_row(v, 0, j)) {
            const double xv = (double)v;
            const uint32_t k = first_at_or_above(O, S, xv);
            out = (float)(k < S && xv == O[k] ? Gk[k] + Gf[k] : Gk[k]);
        }
        g[j] = out;
    }
}

unsigned grid_for_n(uint64_t n)
{
    uint64_t blocks = (n + PAP_THREADS - 1) / PAP_THREADS;
    return (unsigned)(blocks < 1 ? 1 : blocks > 65535 ? 65535 : blocks);
}

/* Outside the exact range: the whole problem on the host (apl_pap_naive), results copied back. */
apl_status host_naive(const apl_problem *p, const apl_output *out, apl_result *res,
                      apl_error *err)
{
    const size_t n = p->n, na = p->n_aux, np = (size_t)p->param_rows * 12;
    std::vector<float> s(n), g(n), aux(na), ga(na), prm(np);
    std::vector<int8_t> t(n);
    copy_to_host(s.data(), p->logits, n);
    copy_to_host(t.data(), p->targets, n);
    copy_to_host(aux.data(), p->aux, na);
    copy_to_host(prm.data(), p->params, np);
    apl_problem hp = *p;
    hp.logits = s.data(), hp.targets = t.data(), hp.aux = na ? aux.data() : nullptr;
    hp.params = prm.data(), hp.stream = nullptr;
    const apl_output ho = {g.data(), out->grad_aux ? ga.data() : nullptr};
    apl_status st = apl_pap_naive(&hp, &ho, res, err);
    if (st != APL_OK)
        return st;
    copy_to_device(out->grad, g.data(), n);
    if (out->grad_aux)
        copy_to_device(out->grad_aux, ga.data(), na);
    return device_sync(err);
}

struct seg_free {
    void operator()(apl_pap_seg *q) const { apl_pap_seg_free(q); }
};

/* The device core: every pointer of p and out is a device pointer. May throw: call inside
 * apl_guarded. */
apl_status cuda_pap_core(const apl_problem *p, const apl_output *out, apl_result *res,
                         apl_error *err)
{
    *res = apl_result{};
    const float *s = p->logits;
    const int8_t *t = p->targets;
    const size_t n = p->n;
    float *grad = out->grad;
    if (n == 0)
        return APL_OK;
    std::vector<float> params((size_t)p->param_rows * 12);
    copy_to_host(params.data(), p->params, params.size());
    apl_pap_fns fns;
    apl_pap_fns_init(params.data(), p->param_rows, &fns);

    const apl_pap_rows sel = select_rows(s, t, n, p->topk);
    const row_rule rule = {sel.all, sel.tau, (uint64_t)sel.cut};

    /* Step 2: the positives, in flat order (k), to the host; then sorted. */
    const size_t np = (size_t)thrust::count_if(P(), dptr(t), dptr(t) + n, is_positive{});
    std::vector<apl_pap_pos> pos(np);
    if (np > 0) {
        dvec<uint64_t> pidx(np);
        dvec<float> ps(np);
        thrust::copy_if(P(), count_it(0), count_it(n), dptr(t), pidx.begin(), is_positive{});
        thrust::gather(P(), pidx.begin(), pidx.end(), dptr(s), ps.begin());
        std::vector<uint64_t> hidx(np);
        std::vector<float> hs(np), hv(np);
        pidx.to_host(hidx.data());
        ps.to_host(hs.data());
        copy_to_host(hv.data(), p->aux, np);
        for (size_t k = 0; k < np; k++) {
            apl_pap_pos &e = pos[k];
            e.s = (double)hs[k];
            e.index = (size_t)hidx[k];
            e.k = k;
            e.v = (double)hv[k];
            e.row = apl_pap_is_row(&sel, hs[k], 1, e.index);
            e.w = e.row ? 1.0 - apl_pwl_value(&fns.f[APL_PAP_I2], e.v) : 0.0;
        }
        apl_pap_pos_sort(pos.data(), np);
    }
    res->positives = np;
    res->valid_negatives = apl_pap_negative_rows(&sel, pos.data(), np);
    if (np == 0) { /* loss 0, every gradient 0 */
        throw_if_cuda(cudaMemsetAsync(grad, 0, n * sizeof *grad, cur_stream()));
        return device_sync(err);
    }
    apl_pap_seg *plan_raw = nullptr;
    apl_status st = apl_pap_seg_build(&fns, pos.data(), np, &plan_raw, err);
    if (st != APL_OK)
        return st;
    std::unique_ptr<apl_pap_seg, seg_free> plan(plan_raw);
    if (!plan)
        return host_naive(p, out, res, err);
    size_t S = 0;
    const double *Oh = apl_pap_seg_breakpoints(plan.get(), &S);
    if (S + 2 > UINT32_MAX)
        return apl_fail(err, APL_ERR_ARG, "cuda_sorted (pap): %zu breakpoints: at most %u "
                        "supported", S, UINT32_MAX - 2);
    const size_t S1 = S + 1;
    dvec<double> O;
    O.from_host(Oh, S);

    /* Step 3: pass 1. */
    dvec<uint32_t> key(n);
    dvec<float> x(n);
    dvec<int> bad(1, 0);
    pass1_keys<<<grid_for_n(n), PAP_THREADS, 0, cur_stream()>>>(s, t, n, rule, raw(O),
                                                                 (uint32_t)S, raw(key), raw(x),
                                                                 raw(bad));
    CUDA_CHECK(cudaGetLastError());
    if (bad[0])
        return host_naive(p, out, res, err);
    thrust::stable_sort_by_key(P(), key.begin(), key.end(), x.begin());
    dvec<uint64_t> start(S1 + 1);
    thrust::lower_bound(P(), key.begin(), key.end(), thrust::counting_iterator<uint32_t>(0),
                        thrust::counting_iterator<uint32_t>((uint32_t)(S1 + 1)), start.begin());
    dvec<double> hist(3 * S1);
    pass1_sums<<<(unsigned)S1, PAP_THREADS, 0, cur_stream()>>>(raw(x), raw(start), raw(O),
                                                                (uint32_t)S, raw(hist));
    CUDA_CHECK(cudaGetLastError());
    std::vector<double> hh(3 * S1);
    hist.to_host(hh.data());
    key.release();
    x.release();

    /* Step 4: the O(|P|) middle, shared with sorted. */
    std::vector<double> G(2 * S1), gpos(np);
    std::vector<float> gaux(np);
    st = apl_pap_seg_middle(plan.get(), hh.data(), &res->loss, G.data(), G.data() + S1,
                            gpos.data(), out->grad_aux ? gaux.data() : nullptr, err);
    if (st != APL_OK)
        return st;

    /* Step 5: pass 2, then the positives over it, and the IoU gradient. */
    dvec<double> Gd;
    Gd.from_host(G.data(), 2 * S1);
    pass2_grad<<<grid_for_n(n), PAP_THREADS, 0, cur_stream()>>>(s, t, n, rule, raw(O), (uint32_t)S,
                                                                 raw(Gd), raw(Gd) + S1, grad);
    CUDA_CHECK(cudaGetLastError());
    std::vector<float> gp(np);
    std::vector<uint64_t> gi(np);
    for (size_t i = 0; i < np; i++)
        gp[i] = (float)gpos[i], gi[i] = (uint64_t)pos[i].index;
    dvec<float> gpd;
    dvec<uint64_t> gid;
    gpd.from_host(gp.data(), np);
    gid.from_host(gi.data(), np);
    thrust::scatter(P(), gpd.begin(), gpd.end(), gid.begin(), dptr(grad));
    if (out->grad_aux)
        copy_to_device(out->grad_aux, gaux.data(), np);
    return device_sync(err); /* the host vectors above outlive the copies from them */
}

} /* namespace */

APL_VARIANT_FN(apl_cuda_pap_device)
{
    stream_scope on(p->stream);
    return apl_guarded(err, "cuda_sorted (pap)", [&]() -> apl_status {
        return cuda_pap_core(p, out, res, err);
    });
}

APL_VARIANT_FN(apl_cuda_pap)
{
    stream_scope on(p->stream);
    return apl_guarded(err, "cuda_sorted (pap)", [&]() -> apl_status {
        *res = apl_result{};
        const size_t n = p->n, na = p->n_aux, nprm = (size_t)p->param_rows * 12;
        if (n == 0)
            return APL_OK;
        dvec<float> s, aux, prm, g(n), ga(na);
        dvec<int8_t> t;
        s.from_host(p->logits, n);
        t.from_host(p->targets, n);
        aux.from_host(p->aux, na);
        prm.from_host(p->params, nprm);
        apl_problem dp = *p;
        dp.logits = raw(s), dp.targets = raw(t), dp.aux = na ? raw(aux) : nullptr;
        dp.params = raw(prm);
        const apl_output dout = {raw(g), out->grad_aux ? raw(ga) : nullptr};
        apl_status st = cuda_pap_core(&dp, &dout, res, err);
        if (st != APL_OK)
            return st;
        g.to_host(out->grad);
        if (out->grad_aux)
            ga.to_host(out->grad_aux);
        return APL_OK;
    });
}
