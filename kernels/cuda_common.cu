/* cuda_common.cu: what every GPU variant shares on the C side: counting CUDA devices (0, with
 * the reason, where there is no driver or no device) and turning a cudaError_t into a status
 * with CUDA's own message and the place (see cuda_common.h). Never aborts. */
#include "cuda_common.h"

#include <string.h>

extern "C" int apl_cuda_device_count(apl_error *err)
{
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        /* cudaErrorNoDevice, cudaErrorInsufficientDriver (no driver at all), ...: a machine
         * without a usable GPU, not a failure of the caller. */
        (void)cudaGetLastError();
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
