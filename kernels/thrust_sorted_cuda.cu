/* thrust_sorted_cuda.cu: the variant thrust_sorted_cuda, thrust_sorted.inl on Thrust's CUDA
 * backend: the same source CI runs on the CPU as thrust_sorted_cpu, here on the GPU (sorts and
 * scans by CUB underneath). apl_thrust_sorted_cuda_device runs on device pointers;
 * apl_thrust_sorted_cuda copies the inputs to the device, calls the same core and copies the
 * gradient back. */
#include "thrust_sorted.inl"

APL_VARIANT_FN(apl_thrust_sorted_cuda)
{
    stream_scope on(p->stream);
    return thrust_sorted_run("thrust_sorted_cuda", p, out, res, err);
}

APL_VARIANT_FN(apl_thrust_sorted_cuda_device)
{
    stream_scope on(p->stream);
    return thrust_sorted_run_device("thrust_sorted_cuda", p, out, res, err);
}
