/* gpu_stub.c: the GPU timing API of aploss/harness.h in a build without CUDA: every call says
 * so; nothing to free. (With CUDA it lives in kernels/common/cuda_common.cu.) */
#include "aploss/harness.h"

#include <stdio.h>

#define APL_NO_CUDA_MSG "GPU timing: not built into this binary (configured without CUDA: no nvcc, or APL_CUDA=OFF)"

apl_status apl_gpu_bench_create(const float *logits, const int8_t *targets, size_t n,
                                apl_gpu_bench **out, apl_error *err)
{
    (void)logits, (void)targets, (void)n;
    if (out)
        *out = NULL;
    return apl_fail(err, APL_ERR_UNAVAILABLE, APL_NO_CUDA_MSG);
}

apl_status apl_gpu_bench_create_problem(const apl_problem *p, apl_gpu_bench **out,
                                        apl_error *err)
{
    (void)p;
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

apl_status apl_gpu_bench_run_loss(apl_gpu_bench *b, const apl_variant *v, apl_loss loss,
                                  double delta, apl_result *res, double *seconds, apl_error *err)
{
    (void)b, (void)v, (void)loss, (void)delta, (void)res, (void)seconds;
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

apl_status apl_gpu_bench_grad_aux(const apl_gpu_bench *b, float *host_grad_aux, apl_error *err)
{
    (void)b, (void)host_grad_aux;
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
