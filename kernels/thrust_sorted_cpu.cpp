/* thrust_sorted_cpu.cpp: the variant thrust_sorted_cpu, thrust_sorted.inl on Thrust's CPP backend
 * (sequential, host memory, plain C++ compiler). CI has no GPU: this build is how the logic that
 * thrust_sorted_cuda and cuda_sorted run on the GPU gets checked against the reference. Its row
 * claims AP-Loss only, but the function computes the problem's loss: for aLRP it runs the aLRP
 * path cuda_sorted and cuda_warp share (tests/test_alrp.c checks it as "thrust_sorted_cpu+").
 *
 * kernels/CMakeLists.txt compiles it with THRUST_DEVICE_SYSTEM=THRUST_DEVICE_SYSTEM_CPP and
 * THRUST_CUB_WRAPPED_NAMESPACE=apl_thrust_cpp: the wrapping namespace keeps these Thrust
 * instantiations apart from the CUDA ones linked into the same library. */
#include "thrust_sorted.inl"

#if THRUST_DEVICE_SYSTEM != THRUST_DEVICE_SYSTEM_CPP
#error "thrust_sorted_cpu.cpp must be built with -DTHRUST_DEVICE_SYSTEM=THRUST_DEVICE_SYSTEM_CPP"
#endif
#ifndef THRUST_WRAPPED_NAMESPACE
#error "thrust_sorted_cpu.cpp must be built with -DTHRUST_CUB_WRAPPED_NAMESPACE=apl_thrust_cpp"
#endif

APL_VARIANT_FN(apl_thrust_sorted_cpu)
{
    return thrust_sorted_run("thrust_sorted_cpu", p, out, res, err);
}
