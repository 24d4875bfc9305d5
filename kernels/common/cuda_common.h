/* cuda_common.h: internal C++ header of the Thrust and CUDA variants.
 *
 * Holds:
 *  - apl_status_from_exception(): the C boundary. Thrust reports failures by throwing
 *    (thrust::system_error, std::bad_alloc); nothing may escape into the C callers, so every
 *    variant body runs inside apl_guarded(), which turns an exception into a status and message.
 *    Header-only because the CPU build of thrust_sorted (Thrust's CPP backend, plain g++, no
 *    CUDA) needs it as much as the .cu files do.
 *  - APL_HD: __host__ __device__ under nvcc, nothing under a host compiler, for code shared by
 *    both builds of thrust_sorted.inl.
 *  - (nvcc only) apl_cuda_check() and CUDA_CHECK(call): a cudaError_t becomes APL_ERR_CUDA with
 *    CUDA's own string and the file:line of the call; defined in cuda_common.cu.
 */
#ifndef APL_CUDA_COMMON_H
#define APL_CUDA_COMMON_H

#include "kernels.h"

#include <exception>
#include <new>
#include <thrust/system_error.h>

/* thrust_sorted_cpu.cpp wraps Thrust in its own namespace (THRUST_CUB_WRAPPED_NAMESPACE) so its
 * CPP-backend instantiations cannot collide with the CUDA ones at link time; this alias lets
 * shared code keep writing thrust::. */
#ifdef THRUST_WRAPPED_NAMESPACE
namespace thrust = THRUST_NS_QUALIFIER;
#endif

#if defined(__CUDACC__)
#define APL_HD __host__ __device__
#else
#define APL_HD
#endif

/* Call only from inside a catch block: rethrows the exception in flight and classifies it. */
inline apl_status apl_status_from_exception(apl_error *err, const char *where) noexcept
{
    try {
        throw;
    } catch (const std::bad_alloc &e) { /* thrust's bad_alloc derives from std::bad_alloc */
        return apl_fail(err, APL_ERR_NOMEM, "%s: out of memory (%s)", where, e.what());
    } catch (const thrust::system_error &e) {
        return apl_fail(err, APL_ERR_CUDA, "%s: %s", where, e.what());
    } catch (const std::exception &e) {
        return apl_fail(err, APL_ERR_CUDA, "%s: unexpected exception: %s", where, e.what());
    } catch (...) {
        return apl_fail(err, APL_ERR_CUDA, "%s: unknown exception", where);
    }
}

/* Runs body() (returning apl_status); any exception becomes a status instead of terminate(). */
template <class Body>
apl_status apl_guarded(apl_error *err, const char *where, Body &&body) noexcept
{
    try {
        return body();
    } catch (...) {
        return apl_status_from_exception(err, where);
    }
}

#if defined(__CUDACC__)
#include <cuda_runtime.h>
#include <thrust/system/cuda/error.h>

/* APL_OK for cudaSuccess; otherwise clears CUDA's (non-sticky) last error and fills err with
 * "file:line: cudaErrorName: CUDA's string". cudaErrorMemoryAllocation gives APL_ERR_NOMEM,
 * everything else APL_ERR_CUDA. */
apl_status apl_cuda_check(cudaError_t e, apl_error *err, const char *file, int line);

/* Device memory of the GPU variants: one stream-ordered pool per device (cudaMallocAsync on a
 * cudaMemPool_t whose release threshold is "never"), created on first use. It grows to the
 * largest working set seen and does not shrink until the process exits or
 * apl_gpu_release_cache() is called, so in steady state no call reaches cudaMalloc/cudaFree.
 * Thread-safe (the pool is CUDA's). Devices without memory-pool support fall back to
 * cudaMalloc/cudaFree.
 *  - apl_cuda_pool_alloc: bytes on the current device, usable in `stream`'s order; throws
 *    std::bad_alloc when out of memory, thrust::system_error on any other CUDA error (call
 *    inside apl_guarded).
 *  - apl_cuda_pool_free: returns the block in `stream`'s order; never throws (an error, e.g.
 *    after a device fault, is cleared and dropped: the fault is reported by the call's own
 *    synchronisation). */
void *apl_cuda_pool_alloc(size_t bytes, cudaStream_t stream);
void apl_cuda_pool_free(void *p, cudaStream_t stream) noexcept;

/* Throws thrust::system_error for a failed CUDA call (for code inside apl_guarded that has no
 * apl_error at hand); clears CUDA's last error first. */
inline void throw_if_cuda(cudaError_t e)
{
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        throw thrust::system_error(e, thrust::cuda_category());
    }
}

/* Inside a function that returns apl_status and has `apl_error *err` in scope: returns the
 * status of a failed CUDA call, with the place. Use CUDA_CHECK(cudaGetLastError()) after every
 * kernel launch. */
#define CUDA_CHECK(call)                                                                         \
    do {                                                                                         \
        apl_status cuda_check_st_ = apl_cuda_check((call), err, __FILE__, __LINE__);             \
        if (cuda_check_st_ != APL_OK)                                                            \
            return cuda_check_st_;                                                               \
    } while (0)
#endif

#endif
