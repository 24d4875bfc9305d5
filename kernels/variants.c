/* variants.c: the one table of variants. Adding a variant is one file in kernels/ and one row
 * here; the CLI, the agreement tests and the benchmarks all iterate this table. */
#include "kernels.h"

#include <stdio.h>
#include <string.h>

#ifdef APL_HAVE_CUDA
#define GPU_FN(f) f
#else
#define GPU_FN(f) NULL
#endif
#ifdef APL_HAVE_THRUST_CPU /* needs only the CCCL headers: may be built without CUDA */
#define THRUST_CPU_FN(f) f
#else
#define THRUST_CPU_FN(f) NULL
#endif

/* name, fn (host pointers), device, backend, quadratic, description, device_fn (GPU rows:
 * device pointers, see aploss.h; NULL for CPU rows). */
static const apl_variant table[] = {
    {"naive", apl_naive, APL_CPU, "C", 1,
     "O(|P|*M) loop over every element, no pruning (the published code minus its pruning line)",
     NULL},
    {"pruned", apl_pruned, APL_CPU, "C", 1,
     "the published algorithm: compact valid negatives (s >= min positive - delta), then loop",
     NULL},
    {"sorted", apl_sorted, APL_CPU, "C", 0,
     "O(M log|P|): sort positives, pass 1 histograms b_i per segment, pass 2 evaluates G(x)",
     NULL},
    {"thrust_sorted_cpu", THRUST_CPU_FN(apl_thrust_sorted_cpu), APL_CPU, "Thrust/CPP", 0,
     "thrust_sorted on Thrust's CPU backend: sort, search, reduce_by_key, integer scans",
     NULL},
    {"cuda_warp", GPU_FN(apl_cuda_warp), APL_GPU, "CUDA", 1,
     "published algorithm on the GPU: one warp per positive, scan for max_prec",
     GPU_FN(apl_cuda_warp_device)},
    {"cuda_sorted", GPU_FN(apl_cuda_sorted), APL_GPU, "CUDA+CUB", 0,
     "sorted algorithm on the GPU: shared-memory segment histograms, scans, one pass for G(x)",
     GPU_FN(apl_cuda_sorted_device)},
    {"thrust_sorted_cuda", GPU_FN(apl_thrust_sorted_cuda), APL_GPU, "Thrust/CUDA", 0,
     "thrust_sorted on the GPU: the same source as thrust_sorted_cpu, CUB underneath",
     GPU_FN(apl_thrust_sorted_cuda_device)},
};

const apl_variant *apl_variants(size_t *count)
{
    *count = sizeof table / sizeof table[0];
    return table;
}

const apl_variant *apl_variant_find(const char *name)
{
    for (size_t i = 0; name && i < sizeof table / sizeof table[0]; i++)
        if (strcmp(table[i].name, name) == 0)
            return &table[i];
    return NULL;
}

int apl_variant_runnable(const apl_variant *v, apl_error *why)
{
    if (!v->fn) {
        apl_fail(why, APL_ERR_UNAVAILABLE, "%s: not built into this binary (%s)", v->name,
                 v->device == APL_GPU ? "configured without CUDA: no nvcc, or APL_CUDA=OFF"
                                      : "Thrust/CCCL headers not found at configure time");
        return 0;
    }
#ifdef APL_HAVE_CUDA
    if (v->device == APL_GPU && apl_cuda_device_count(why) <= 0)
        return 0;
#endif
    return 1;
}

#ifndef APL_HAVE_CUDA
/* GPU timing (aploss.h) in a build without CUDA: every call says so; nothing to free. */
#define APL_NO_CUDA_MSG "GPU timing: not built into this binary (configured without CUDA: no nvcc, or APL_CUDA=OFF)"

apl_status apl_gpu_bench_create(const float *logits, const int8_t *targets, size_t n,
                                apl_gpu_bench **out, apl_error *err)
{
    (void)logits, (void)targets, (void)n;
    if (out)
        *out = NULL;
    return apl_fail(err, APL_ERR_UNAVAILABLE, APL_NO_CUDA_MSG);
}

apl_status apl_gpu_bench_run(apl_gpu_bench *b, const apl_variant *v, double delta,
                             apl_result *res, double *seconds, apl_error *err)
{
    (void)b, (void)v, (void)delta, (void)res, (void)seconds;
    return apl_fail(err, APL_ERR_UNAVAILABLE, APL_NO_CUDA_MSG);
}

apl_status apl_gpu_bench_floor(apl_gpu_bench *b, double *seconds, apl_error *err)
{
    (void)b, (void)seconds;
    return apl_fail(err, APL_ERR_UNAVAILABLE, APL_NO_CUDA_MSG);
}

apl_status apl_gpu_bench_grad(const apl_gpu_bench *b, float *host_grad, apl_error *err)
{
    (void)b, (void)host_grad;
    return apl_fail(err, APL_ERR_UNAVAILABLE, APL_NO_CUDA_MSG);
}

size_t apl_gpu_bench_size(const apl_gpu_bench *b)
{
    (void)b;
    return 0;
}

void apl_gpu_bench_destroy(apl_gpu_bench *b) { (void)b; }

apl_status apl_gpu_name(char *buf, size_t cap)
{
    if (buf && cap > 0)
        snprintf(buf, cap, "%s", APL_NO_CUDA_MSG);
    return APL_ERR_UNAVAILABLE;
}
#endif
