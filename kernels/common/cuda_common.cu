/* cuda_common.cu: what every GPU variant shares on the C side: counting CUDA devices (0, with
 * the reason, where there is no driver or no device) and turning a cudaError_t into a status
 * with CUDA's own message and the place (see cuda_common.h). Never aborts.
 *
 * Also the GPU timing of aploss.h: apl_gpu_bench, a device-resident benchmark context (inputs,
 * aLRP's e included, copied to the device once; a variant's device_fn or the memory floor kernel
 * timed with CUDA events on the default stream), and apl_gpu_name. */
#include "cuda_common.h"
#include "aploss/harness.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <mutex>

/* A GPU device node (/dev/nvidia0, /dev/nvidia1, ...; /dev/nvidiactl alone is not a GPU) exists:
 * the kernel driver sees a GPU, so a failing CUDA runtime is a fault to report, not a machine
 * without a GPU. */
static bool gpu_device_node_exists()
{
    char path[32];
    for (int i = 0; i < 64; i++) {
        snprintf(path, sizeof path, "/dev/nvidia%d", i);
        if (access(path, F_OK) == 0)
            return true;
    }
    return false;
}

extern "C" int apl_cuda_device_count(apl_error *err)
{
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        /* cudaErrorNoDevice, or cudaErrorInsufficientDriver with no driver at all: a machine
         * without a usable GPU, not a failure of the caller. But where a GPU device node exists,
         * any error (a driver older than this static runtime needs: cudaErrorInsufficientDriver;
         * a driver/library mismatch; a device in a bad state) is an error, so that a GPU run
         * cannot pass as "skipped". */
        if (e != cudaErrorNoDevice && gpu_device_node_exists())
            apl_fail(err, APL_ERR_CUDA,
                     "CUDA driver failed although a GPU device node (/dev/nvidia*) exists: %s: %s",
                     cudaGetErrorName(e), cudaGetErrorString(e));
        else
            apl_fail(err, APL_ERR_NODEVICE, "no CUDA device: %s", cudaGetErrorString(e));
        return 0;
    }
    if (count <= 0) {
        apl_fail(err, APL_ERR_NODEVICE, "no CUDA device: %s",
                 cudaGetErrorString(cudaErrorNoDevice));
        return 0;
    }
    return count;
}

apl_status apl_cuda_check(cudaError_t e, apl_error *err, const char *file, int line)
{
    if (e == cudaSuccess)
        return APL_OK;
    (void)cudaGetLastError(); /* clear it, so the next call does not report it again */
    const char *base = strrchr(file, '/');
    return apl_fail(err, e == cudaErrorMemoryAllocation ? APL_ERR_NOMEM : APL_ERR_CUDA,
                    "%s:%d: %s: %s", base ? base + 1 : file, line, cudaGetErrorName(e),
                    cudaGetErrorString(e));
}

/* ---- the per-device memory pool (cuda_common.h) ---- */

namespace {

const int MAX_DEVICES = 64;
struct device_pool {
    std::once_flag once;
    /* nullptr: not created, or no pool support (plain cudaMalloc/cudaFree). Atomic: read
     * without the once_flag by apl_cuda_pool_free and apl_gpu_release_cache. */
    std::atomic<cudaMemPool_t> pool{nullptr};
    cudaError_t init_error = cudaSuccess;
};
device_pool pools[MAX_DEVICES];

void pool_init(int dev, device_pool &dp)
{
    int supported = 0;
    cudaError_t e = cudaDeviceGetAttribute(&supported, cudaDevAttrMemoryPoolsSupported, dev);
    if (e != cudaSuccess || !supported) {
        (void)cudaGetLastError();
        dp.init_error = e;
        return;
    }
    cudaMemPoolProps props = {};
    props.allocType = cudaMemAllocationTypePinned;
    props.location.type = cudaMemLocationTypeDevice;
    props.location.id = dev;
    cudaMemPool_t pool = nullptr;
    e = cudaMemPoolCreate(&pool, &props);
    if (e == cudaSuccess) {
        /* Keep what was freed: never give memory back to the driver at a synchronisation. */
        uint64_t keep = UINT64_MAX;
        e = cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep);
    }
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        if (pool)
            (void)cudaMemPoolDestroy(pool);
        dp.init_error = e;
        return;
    }
    dp.pool.store(pool);
}

/* The current device's pool entry, created once; throws what the creation failed with. */
device_pool &current_pool()
{
    int dev = 0;
    throw_if_cuda(cudaGetDevice(&dev));
    if (dev < 0 || dev >= MAX_DEVICES)
        throw thrust::system_error(cudaErrorInvalidDevice, thrust::cuda_category(),
                                   "device number beyond the pool table");
    device_pool &dp = pools[dev];
    std::call_once(dp.once, pool_init, dev, std::ref(dp));
    if (dp.init_error != cudaSuccess)
        throw thrust::system_error(dp.init_error, thrust::cuda_category(), "creating the memory pool");
    return dp;
}

} /* namespace */

void *apl_cuda_pool_alloc(size_t bytes, cudaStream_t stream)
{
    device_pool &dp = current_pool();
    void *p = nullptr;
    cudaMemPool_t pool = dp.pool.load();
    cudaError_t e = pool ? cudaMallocFromPoolAsync(&p, bytes ? bytes : 1, pool, stream)
                            : cudaMalloc(&p, bytes ? bytes : 1);
    if (e == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError();
        throw std::bad_alloc();
    }
    throw_if_cuda(e);
    return p;
}

void apl_cuda_pool_free(void *p, cudaStream_t stream) noexcept
{
    if (!p)
        return;
    int dev = 0;
    bool pooled = cudaGetDevice(&dev) == cudaSuccess && dev >= 0 && dev < MAX_DEVICES &&
                  pools[dev].pool.load() != nullptr;
    /* A pointer from cudaMallocFromPoolAsync may be freed with cudaFreeAsync on any stream. */
    if ((pooled ? cudaFreeAsync(p, stream) : cudaFree(p)) != cudaSuccess)
        (void)cudaGetLastError();
}

extern "C" apl_status apl_gpu_release_cache(void)
{
    /* Memory still allocated stays; every freed block whose free has completed goes back. */
    for (int dev = 0; dev < MAX_DEVICES; dev++) {
        cudaMemPool_t pool = pools[dev].pool.load();
        if (!pool)
            continue;
        cudaError_t e = cudaMemPoolTrimTo(pool, 0);
        if (e != cudaSuccess) {
            (void)cudaGetLastError();
            return APL_ERR_CUDA;
        }
    }
    return APL_OK;
}

/* ---- GPU timing ---- */

struct apl_gpu_bench {
    size_t n = 0;
    float *s = nullptr;    /* device logits */
    int8_t *t = nullptr;   /* device targets */
    float *g = nullptr;    /* device gradient */
    apl_loss aux_loss = APL_LOSS_AP; /* the loss whose per-positive inputs the context holds */
    size_t n_aux = 0;
    float *aux = nullptr;  /* device e (aLRP), n_aux */
    float *ga = nullptr;   /* device grad_e, n_aux */
    cudaEvent_t start = nullptr, stop = nullptr;
    unsigned floor_blocks = 1; /* the floor kernel's grid, fixed at creation */
    bool floor_vec = false;    /* float4/char4 loads and float4 stores */
};

namespace {

const int FLOOR_THREADS = 256;

/* The memory floor: read every logit and target once, write every gradient once. Grid-stride;
 * with vec, four elements per step (16-byte logit and gradient accesses, 4-byte target ones;
 * the caller checked the alignment), then the scalar tail. */
__global__ void floor_kernel(const float *__restrict__ s, const int8_t *__restrict__ t,
                             float *__restrict__ g, uint64_t n, bool vec)
{
    const uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
    const uint64_t tid = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
    uint64_t done = 0;
    if (vec) {
        const uint64_t n4 = n / 4;
        const float4 *s4 = reinterpret_cast<const float4 *>(s);
        const char4 *t4 = reinterpret_cast<const char4 *>(t);
        float4 *g4 = reinterpret_cast<float4 *>(g);
        for (uint64_t j = tid; j < n4; j += stride) {
            const float4 x = s4[j];
            const char4 c = t4[j];
            float4 o;
            o.x = c.x == 1 ? -x.x : x.x * 0.5f;
            o.y = c.y == 1 ? -x.y : x.y * 0.5f;
            o.z = c.z == 1 ? -x.z : x.z * 0.5f;
            o.w = c.w == 1 ? -x.w : x.w * 0.5f;
            g4[j] = o;
        }
        done = n4 * 4;
    }
    for (uint64_t j = done + tid; j < n; j += stride)
        g[j] = t[j] == 1 ? -s[j] : s[j] * 0.5f;
}

/* Frees whatever b holds (a partly built context too); errors are cleared, not reported. */
void gpu_bench_free(apl_gpu_bench *b)
{
    if (b->s)
        (void)cudaFree(b->s);
    if (b->t)
        (void)cudaFree(b->t);
    if (b->g)
        (void)cudaFree(b->g);
    if (b->aux)
        (void)cudaFree(b->aux);
    if (b->ga)
        (void)cudaFree(b->ga);
    if (b->start)
        (void)cudaEventDestroy(b->start);
    if (b->stop)
        (void)cudaEventDestroy(b->stop);
    (void)cudaGetLastError();
    delete b;
}

apl_status gpu_bench_setup(apl_gpu_bench *b, const apl_problem *pr, apl_error *err)
{
    const size_t n = pr->n;
    const float *logits = pr->logits;
    const int8_t *targets = pr->targets;
    b->n = n;
    const size_t m = n ? n : 1; /* valid, distinct pointers even for n = 0 */
    /* Through locals: b only ever holds what was really allocated (gpu_bench_free frees it). */
    void *p = nullptr;
    CUDA_CHECK(cudaMalloc(&p, m * sizeof(float)));
    b->s = (float *)p;
    p = nullptr;
    CUDA_CHECK(cudaMalloc(&p, m * sizeof(int8_t)));
    b->t = (int8_t *)p;
    p = nullptr;
    CUDA_CHECK(cudaMalloc(&p, m * sizeof(float)));
    b->g = (float *)p;
    cudaEvent_t ev = nullptr;
    CUDA_CHECK(cudaEventCreate(&ev));
    b->start = ev;
    ev = nullptr;
    CUDA_CHECK(cudaEventCreate(&ev));
    b->stop = ev;
    if (n) {
        CUDA_CHECK(cudaMemcpy(b->s, logits, n * sizeof(float), cudaMemcpyHostToDevice));
        CUDA_CHECK(cudaMemcpy(b->t, targets, n * sizeof(int8_t), cudaMemcpyHostToDevice));
    }
    if (pr->loss == APL_LOSS_ALRP) { /* e once, and room for grad_e */
        const size_t na = pr->n_aux, ma = na ? na : 1;
        p = nullptr;
        CUDA_CHECK(cudaMalloc(&p, ma * sizeof(float)));
        b->aux = (float *)p;
        p = nullptr;
        CUDA_CHECK(cudaMalloc(&p, ma * sizeof(float)));
        b->ga = (float *)p;
        if (na)
            CUDA_CHECK(cudaMemcpy(b->aux, pr->aux, na * sizeof(float), cudaMemcpyHostToDevice));
        b->aux_loss = APL_LOSS_ALRP;
        b->n_aux = na;
    }
    /* cudaMalloc aligns to 256 bytes, so this holds; checked all the same. */
    b->floor_vec = (uintptr_t)b->s % 16 == 0 && (uintptr_t)b->g % 16 == 0 &&
                   (uintptr_t)b->t % 4 == 0;
    int dev = 0, sms = 0, per_sm = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, floor_kernel, FLOOR_THREADS,
                                                             0));
    /* Enough resident blocks to fill the device, no more than the work needs. */
    uint64_t blocks = (uint64_t)(sms > 0 ? sms : 1) * (uint64_t)(per_sm > 0 ? per_sm : 1);
    const uint64_t steps = b->floor_vec ? n / 4 + n % 4 : n;
    const uint64_t need = (steps + FLOOR_THREADS - 1) / FLOOR_THREADS;
    if (blocks > need)
        blocks = need;
    b->floor_blocks = (unsigned)(blocks ? blocks : 1);
    CUDA_CHECK(cudaDeviceSynchronize());
    return APL_OK;
}

/* Elapsed time between b's two events, after waiting for the second. */
apl_status gpu_bench_elapsed(apl_gpu_bench *b, double *seconds, apl_error *err)
{
    CUDA_CHECK(cudaEventSynchronize(b->stop));
    float ms = 0.0f;
    CUDA_CHECK(cudaEventElapsedTime(&ms, b->start, b->stop));
    *seconds = (double)ms * 1e-3;
    return APL_OK;
}

} /* namespace */

extern "C" apl_status apl_gpu_bench_create(const float *logits, const int8_t *targets, size_t n,
                                           apl_gpu_bench **out, apl_error *err)
{
    apl_problem p = {};
    p.loss = APL_LOSS_AP;
    p.logits = logits;
    p.targets = targets;
    p.n = n;
    p.delta = 1.0;
    return apl_gpu_bench_create_problem(&p, out, err);
}

extern "C" apl_status apl_gpu_bench_create_problem(const apl_problem *pr, apl_gpu_bench **out,
                                                   apl_error *err)
{
    if (!out || !pr)
        return apl_fail(err, APL_ERR_ARG, "apl_gpu_bench_create: null problem or output pointer");
    *out = nullptr;
    if (pr->loss == APL_LOSS_PAP)
        return apl_fail(err, APL_ERR_UNAVAILABLE, "apl_gpu_bench_create: loss pap: the GPU "
                        "timing context does not carry its parameters and top-K");
    apl_status st = apl_check_problem(pr, err);
    if (st != APL_OK)
        return st;
    const size_t n = pr->n;
    if (n > SIZE_MAX / sizeof(float))
        return apl_fail(err, APL_ERR_NOMEM, "apl_gpu_bench_create: %zu elements: size overflows",
                        n);
    apl_error why = {};
    if (apl_cuda_device_count(&why) <= 0) /* NODEVICE, or CUDA: a driver that failed */
        return apl_fail(err, why.code, "%s", why.msg);
    return apl_guarded(err, "apl_gpu_bench_create", [&]() -> apl_status {
        apl_gpu_bench *b = new (std::nothrow) apl_gpu_bench();
        if (!b)
            return apl_fail(err, APL_ERR_NOMEM, "apl_gpu_bench_create: out of host memory");
        apl_status s2 = gpu_bench_setup(b, pr, err);
        if (s2 != APL_OK) {
            gpu_bench_free(b);
            return s2;
        }
        *out = b;
        return APL_OK;
    });
}

extern "C" apl_status apl_gpu_bench_run(apl_gpu_bench *b, const apl_variant *v, double delta,
                                        apl_result *res, double *seconds, apl_error *err)
{
    return apl_gpu_bench_run_loss(b, v, APL_LOSS_AP, delta, res, seconds, err);
}

extern "C" apl_status apl_gpu_bench_run_loss(apl_gpu_bench *b, const apl_variant *v,
                                             apl_loss loss, double delta, apl_result *res,
                                             double *seconds, apl_error *err)
{
    if (!b || !v || !seconds)
        return apl_fail(err, APL_ERR_ARG, "apl_gpu_bench_run: null context, variant or seconds");
    if (!v->device_fn)
        return apl_fail(err, APL_ERR_UNAVAILABLE,
                        "%s: no device-resident entry point (device_fn) in this binary", v->name);
    if (!apl_variant_has_loss(v, loss))
        return apl_fail(err, APL_ERR_UNAVAILABLE, "%s: does not implement loss %s", v->name,
                        apl_loss_name(loss));
    if (loss != APL_LOSS_AP && loss != b->aux_loss)
        return apl_fail(err, APL_ERR_ARG, "apl_gpu_bench_run: loss %s: the context holds no "
                        "inputs for it (apl_gpu_bench_create_problem)", apl_loss_name(loss));
    apl_status st = apl_check_inputs(nullptr, nullptr, 0, delta, err); /* delta alone */
    if (st != APL_OK)
        return st;
    return apl_guarded(err, "apl_gpu_bench_run", [&]() -> apl_status {
        apl_result r = {};
        apl_problem pr = {};
        pr.loss = loss;
        pr.logits = b->s;
        pr.targets = b->t;
        pr.n = b->n;
        pr.delta = delta;
        apl_output o = {b->g, nullptr};
        if (loss == APL_LOSS_ALRP) {
            pr.aux = b->aux;
            pr.n_aux = b->n_aux;
            o.grad_aux = b->ga;
        }
        CUDA_CHECK(cudaEventRecord(b->start, 0));
        apl_status s2 = v->device_fn(&pr, &o, &r, err);
        if (s2 != APL_OK)
            return s2;
        CUDA_CHECK(cudaEventRecord(b->stop, 0));
        s2 = gpu_bench_elapsed(b, seconds, err);
        if (s2 == APL_OK && res)
            *res = r;
        return s2;
    });
}

extern "C" apl_status apl_gpu_bench_floor(apl_gpu_bench *b, double *seconds, apl_error *err)
{
    if (!b || !seconds)
        return apl_fail(err, APL_ERR_ARG, "apl_gpu_bench_floor: null context or seconds");
    return apl_guarded(err, "apl_gpu_bench_floor", [&]() -> apl_status {
        CUDA_CHECK(cudaEventRecord(b->start, 0));
        if (b->n) {
            floor_kernel<<<b->floor_blocks, FLOOR_THREADS>>>(b->s, b->t, b->g, (uint64_t)b->n,
                                                             b->floor_vec);
            CUDA_CHECK(cudaGetLastError());
        }
        CUDA_CHECK(cudaEventRecord(b->stop, 0));
        return gpu_bench_elapsed(b, seconds, err);
    });
}

extern "C" apl_status apl_gpu_bench_grad(const apl_gpu_bench *b, float *host_grad,
                                         apl_error *err)
{
    if (!b)
        return apl_fail(err, APL_ERR_ARG, "apl_gpu_bench_grad: null context");
    if (b->n == 0)
        return APL_OK;
    if (!host_grad)
        return apl_fail(err, APL_ERR_ARG, "apl_gpu_bench_grad: null gradient for %zu elements",
                        b->n);
    CUDA_CHECK(cudaMemcpy(host_grad, b->g, b->n * sizeof(float), cudaMemcpyDeviceToHost));
    return APL_OK;
}

extern "C" apl_status apl_gpu_bench_grad_aux(const apl_gpu_bench *b, float *host_grad_aux,
                                             apl_error *err)
{
    if (!b)
        return apl_fail(err, APL_ERR_ARG, "apl_gpu_bench_grad_aux: null context");
    if (b->n_aux == 0)
        return APL_OK;
    if (!host_grad_aux)
        return apl_fail(err, APL_ERR_ARG, "apl_gpu_bench_grad_aux: null output for %zu values",
                        b->n_aux);
    CUDA_CHECK(cudaMemcpy(host_grad_aux, b->ga, b->n_aux * sizeof(float), cudaMemcpyDeviceToHost));
    return APL_OK;
}

extern "C" size_t apl_gpu_bench_size(const apl_gpu_bench *b) { return b ? b->n : 0; }

extern "C" void apl_gpu_bench_destroy(apl_gpu_bench *b)
{
    if (b)
        gpu_bench_free(b);
}

extern "C" apl_status apl_gpu_name(char *buf, size_t cap)
{
    char tmp[APL_MSG_LEN];
    apl_error why = {};
    apl_status st = APL_OK;
    int dev = 0;
    cudaDeviceProp prop;
    cudaError_t e = cudaSuccess;
    if (apl_cuda_device_count(&why) <= 0) {
        st = why.code;
        snprintf(tmp, sizeof tmp, "%s", why.msg);
    } else if ((e = cudaGetDevice(&dev)) != cudaSuccess ||
               (e = cudaGetDeviceProperties(&prop, dev)) != cudaSuccess) {
        (void)cudaGetLastError();
        st = APL_ERR_CUDA;
        snprintf(tmp, sizeof tmp, "%s: %s", cudaGetErrorName(e), cudaGetErrorString(e));
    } else {
        snprintf(tmp, sizeof tmp, "%s", prop.name);
    }
    if (buf && cap > 0)
        snprintf(buf, cap, "%s", tmp);
    return st;
}
