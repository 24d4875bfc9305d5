/* thrust_sorted_cuda.cu: the variant thrust_sorted_cuda, thrust_sorted.inl on Thrust's CUDA
 * backend: the same source CI runs on the CPU as thrust_sorted_cpu, here on the GPU (sorts and
 * scans by CUB underneath). Inputs are copied to the device and the gradient back. */
#include "thrust_sorted.inl"

APL_VARIANT_FN(apl_thrust_sorted_cuda)
{
    return thrust_sorted_run("thrust_sorted_cuda", logits, targets, n, delta, grad, res, err);
}
