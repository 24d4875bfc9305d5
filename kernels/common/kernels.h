/* kernels.h: the variant functions (one per file in kernels/), declared for the table in
 * kernels/variants.c. All share apl_variant_fn's signature and preconditions (see aploss.h). */
#ifndef APL_KERNELS_H
#define APL_KERNELS_H

#include "aploss/aploss.h"

#ifdef __cplusplus
extern "C" {
#endif

#define APL_VARIANT_FN(name)                                                                     \
    apl_status name(const apl_problem *p, const apl_output *out, apl_result *res,               \
                    apl_error *err)

APL_VARIANT_FN(apl_naive);
APL_VARIANT_FN(apl_pruned);
APL_VARIANT_FN(apl_sorted);
/* Parameterized AP Loss (kernels/common/pap_*.c): the O(|S| * |P|) loops behind naive, the exact
 * segment formulation behind sorted (which hands inputs outside its exact range to naive). */
APL_VARIANT_FN(apl_pap_naive);
APL_VARIANT_FN(apl_pap_sorted);

#ifdef APL_HAVE_THRUST_CPU
/* thrust_sorted.inl on Thrust's CPP backend (needs only the CCCL headers, no GPU). */
APL_VARIANT_FN(apl_thrust_sorted_cpu);
#endif

/* The segment algorithms (sorted, thrust_sorted_*, cuda_sorted) place every ramp end
 * s_i -+ delta on one axis in double (sorted) or in 52-bit fixed point over the positives' span
 * (thrust/cuda). Both lose the ramp when the positives span too many ramp widths or when |s|
 * dwarfs delta (1e30 +- 1 is 1e30). Outside this range they hand the call to an exact O(|P|*N)
 * variant instead (sorted and thrust_sorted_cpu: pruned; the GPU ones: cuda_warp). */
#define APL_SEGMENT_MAX_SPAN 4096.0     /* (max positive - min positive) / delta */
#define APL_SEGMENT_MAX_MAGNITUDE 0x1p24 /* max |positive logit| / delta */
int apl_segments_in_range(float min_pos, float max_pos, size_t np, double delta);

/* cuda_sorted's shared-memory histogram limit in segments on the current device (above it pass 1
 * takes the global path); 0 on error or without CUDA (src/core.c). For the tests. */
size_t apl_cuda_sorted_shared_segments(void);

#ifdef APL_HAVE_CUDA
/* Host entry points: copy logits and targets to the device, run the device core, copy the
 * gradient back. */
APL_VARIANT_FN(apl_cuda_warp);
APL_VARIANT_FN(apl_cuda_sorted);
APL_VARIANT_FN(apl_thrust_sorted_cuda);
/* Device cores (apl_variant.device_fn): logits, targets and grad are device pointers; no copy
 * of the arrays; synchronised with the device before returning. */
APL_VARIANT_FN(apl_cuda_warp_device);
APL_VARIANT_FN(apl_cuda_sorted_device);
APL_VARIANT_FN(apl_thrust_sorted_cuda_device);
/* Parameterized AP Loss on the GPU (kernels/cuda_pap.cu), reached through cuda_sorted's row:
 * host pointers, and device pointers (logits, targets, aux, params, outputs). */
APL_VARIANT_FN(apl_cuda_pap);
APL_VARIANT_FN(apl_cuda_pap_device);
/* Number of CUDA devices; 0 with the reason in err: APL_ERR_NODEVICE when there is no GPU (no
 * driver, no device), APL_ERR_CUDA when the driver fails although a GPU device node exists. */
int apl_cuda_device_count(apl_error *err);

#endif

#ifdef __cplusplus
}
#endif
#endif
