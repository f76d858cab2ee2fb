/*
 * A C ABI over the CUDA kernels for dcf.ops.correlation on CUDA tensors (loaded with ctypes, so
 * the library needs neither PyTorch headers nor TensorRT). Pointers are device pointers of
 * contiguous tensors; `stream` is the caller's cudaStream_t. Returns a cudaError_t.
 */
#include "correlationKernel.h"

#include <cuda_fp16.h>

namespace
{
enum DType : int32_t
{
    kFloat32 = 0,
    kFloat16 = 1,
};

dcf::CorrelationShape shapeOf(int64_t n, int64_t c, int64_t t, int64_t h, int64_t w, int32_t k, int32_t l)
{
    return dcf::CorrelationShape{n, c, t, h, w, k, l};
}
// The launcher peeks at the launch's error (TensorRT reads it after enqueue); here the caller,
// dcf.ops, raises on the status, so the error is consumed: the next PyTorch check must not see it.
int32_t consumed(cudaError_t status)
{
    if (status != cudaSuccess)
    {
        static_cast<void>(cudaGetLastError());
    }
    return status;
}

} // namespace

extern "C" __attribute__((visibility("default"))) int32_t dcf_correlation_cuda_abi_version()
{
    return 1;
}

extern "C" __attribute__((visibility("default"))) int32_t dcf_correlation_cuda_forward(int32_t dtype, void const* x,
    void* y, int64_t n, int64_t c, int64_t t, int64_t h, int64_t w, int32_t kernelSize, int32_t temporalRange,
    void* stream)
{
    auto const s = shapeOf(n, c, t, h, w, kernelSize, temporalRange);
    auto const st = static_cast<cudaStream_t>(stream);
    switch (dtype)
    {
    case kFloat32: return consumed(dcf::correlationForward(static_cast<float const*>(x), static_cast<float*>(y), s, st));
    case kFloat16: return consumed(dcf::correlationForward(static_cast<__half const*>(x), static_cast<__half*>(y), s, st));
    default: return cudaErrorInvalidValue;
    }
}

extern "C" __attribute__((visibility("default"))) int32_t dcf_correlation_cuda_backward(int32_t dtype,
    void const* gradY, void const* x, void* gradX, int64_t n, int64_t c, int64_t t, int64_t h, int64_t w,
    int32_t kernelSize, int32_t temporalRange, void* stream)
{
    auto const s = shapeOf(n, c, t, h, w, kernelSize, temporalRange);
    auto const st = static_cast<cudaStream_t>(stream);
    switch (dtype)
    {
    case kFloat32:
        return consumed(dcf::correlationBackward(
            static_cast<float const*>(gradY), static_cast<float const*>(x), static_cast<float*>(gradX), s, st));
    case kFloat16:
        return consumed(dcf::correlationBackward(
            static_cast<__half const*>(gradY), static_cast<__half const*>(x), static_cast<__half*>(gradX), s, st));
    default: return cudaErrorInvalidValue;
    }
}
