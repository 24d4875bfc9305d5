/* variants.c: the one table of variants. Adding a variant is one file in kernels/ and one row
 * here; the CLI, the agreement tests and the benchmarks all iterate this table. */
#include "kernels.h"

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

static const apl_variant table[] = {
    {"naive", apl_naive, APL_CPU, "C", 1,
     "O(|P|*M) loop over every element, no pruning (the published code minus its pruning line)"},
    {"pruned", apl_pruned, APL_CPU, "C", 1,
     "the published algorithm: compact valid negatives (s >= min positive - delta), then loop"},
    {"sorted", apl_sorted, APL_CPU, "C", 0,
     "O(M log|P|): sort positives, pass 1 histograms b_i per segment, pass 2 evaluates G(x)"},
    {"thrust_sorted_cpu", THRUST_CPU_FN(apl_thrust_sorted_cpu), APL_CPU, "Thrust/CPP", 0,
     "thrust_sorted on Thrust's CPU backend: sort, search, reduce_by_key, integer scans"},
    {"cuda_warp", GPU_FN(apl_cuda_warp), APL_GPU, "CUDA", 1,
     "published algorithm on the GPU: one warp per positive, scan for max_prec"},
    {"cuda_sorted", GPU_FN(apl_cuda_sorted), APL_GPU, "CUDA+CUB", 0,
     "sorted algorithm on the GPU: shared-memory segment histograms, scans, one pass for G(x)"},
    {"thrust_sorted_cuda", GPU_FN(apl_thrust_sorted_cuda), APL_GPU, "Thrust/CUDA", 0,
     "thrust_sorted on the GPU: the same source as thrust_sorted_cpu, CUB underneath"},
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
