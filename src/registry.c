/* registry.c: the one table of variants. Adding a variant is one file in kernels/ (the build
 * compiles every .c file there, and every .cu file with CUDA) and, here, its declaration and its
 * row; the CLI, the tests and the benchmarks all iterate this table, and test_registry fails if a
 * row that should be built has no implementation. */
#include "kernels.h"

#include <stdlib.h>
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

/* Variants no other kernel calls are declared here, beside their rows (the ones other kernels
 * call, e.g. as an exact fallback, are declared in kernels/common/kernels.h):
 * APL_VARIANT_FN(apl_NAME);   (GPU ones inside #ifdef APL_HAVE_CUDA, with apl_NAME_device) */

#define AP APL_LOSS_BIT(APL_LOSS_AP)
#define ALRP APL_LOSS_BIT(APL_LOSS_ALRP)
#define PAP APL_LOSS_BIT(APL_LOSS_PAP)

static const apl_variant table[] = {
    {.name = "naive", .fn = apl_naive, .device = APL_CPU, .losses = AP | ALRP | PAP, .backend = "C",
     .quadratic = 1,
     .description = "O(|P|*M) loop over every element, no pruning (the published code minus its "
                    "pruning line)"},
    {.name = "pruned", .fn = apl_pruned, .device = APL_CPU, .losses = AP | ALRP, .backend = "C",
     .quadratic = 1, .threaded = 1,
     .description = "the published algorithm: compact valid negatives (s >= min positive - "
                    "delta), then loop"},
    {.name = "sorted", .fn = apl_sorted, .device = APL_CPU, .losses = AP | ALRP | PAP,
     .backend = "C", .threaded = 1,
     .description = "O(M log|P|): sort positives, pass 1 histograms b_i per segment, pass 2 "
                    "evaluates G(x)"},
    {.name = "thrust_sorted_cpu", .fn = THRUST_CPU_FN(apl_thrust_sorted_cpu), .device = APL_CPU,
     .losses = AP, .backend = "Thrust/CPP",
     .description = "thrust_sorted on Thrust's CPU backend: sort, search, reduce_by_key, integer "
                    "scans"},
    {.name = "cuda_warp", .fn = GPU_FN(apl_cuda_warp), .device_fn = GPU_FN(apl_cuda_warp_device),
     .device = APL_GPU, .losses = AP | ALRP, .backend = "CUDA", .quadratic = 1,
     .description = "published algorithm on the GPU: one warp per positive, scan for max_prec; "
                    "alrp: aLRP's O(|P|) middle on the host"},
    {.name = "cuda_sorted", .fn = GPU_FN(apl_cuda_sorted),
     .device_fn = GPU_FN(apl_cuda_sorted_device), .device = APL_GPU, .losses = AP | ALRP | PAP,
     .backend = "CUDA+CUB",
     .description = "sorted algorithm on the GPU: shared-memory segment histograms, scans, one "
                    "pass for G(x); alrp: the same passes, aLRP's O(|P|) middle on the host; "
                    "pap: sorted's segment phases, passes on the GPU"},
    {.name = "thrust_sorted_cuda", .fn = GPU_FN(apl_thrust_sorted_cuda),
     .device_fn = GPU_FN(apl_thrust_sorted_cuda_device), .device = APL_GPU, .losses = AP,
     .backend = "Thrust/CUDA",
     .description = "thrust_sorted on the GPU: the same source as thrust_sorted_cpu, CUB "
                    "underneath"},
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

int apl_variant_has_loss(const apl_variant *v, apl_loss l)
{
    return v && (unsigned)l < APL_LOSS_COUNT && (v->losses & APL_LOSS_BIT(l)) != 0;
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
