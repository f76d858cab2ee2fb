/*
 * The DCF correlation op on CUDA (DESIGN.md section 1), used by the TensorRT plugin and by
 * dcf.ops.correlation for CUDA tensors.
 *
 *   y[n, (tauIdx*K + ky)*K + kx, t, i, j] = 1/sqrt(C) * sum_c x[n,c,t,i,j] * x[n,c,t+tau,i+dy,j+dx]
 *   tau in (-L..-1, +1..+L), (dy, dx) = (ky - K/2, kx - K/2) * |tau|, zero outside the clip/frame.
 *
 * Launches run on the given stream, allocate nothing and do not synchronise.
 */
#ifndef DCF_CORRELATION_KERNEL_H
#define DCF_CORRELATION_KERNEL_H

#include <cuda_runtime_api.h>
#include <cstdint>

namespace dcf
{

struct CorrelationShape
{
    int64_t n, c, t, h, w; // input x is (N, C, T, H, W), contiguous
    int32_t kernelSize;    // K: odd, 1..kMaxKernelSize
    int32_t temporalRange; // L >= 1
};

constexpr int32_t kMaxKernelSize = 9;

//! True when the kernels handle this shape (K odd and <= kMaxKernelSize, L >= 1, sizes >= 0).
bool correlationSupported(CorrelationShape const& s);

//! y (N, K*K*2L, T, H, W) from x; every element of y is written once. T: float or __half
//! (accumulation in float).
template <typename T>
cudaError_t correlationForward(T const* x, T* y, CorrelationShape const& s, cudaStream_t stream);

//! grad_x (N, C, T, H, W) from grad_y (N, K*K*2L, T, H, W) and x; every element written once.
template <typename T>
cudaError_t correlationBackward(T const* gradY, T const* x, T* gradX, CorrelationShape const& s, cudaStream_t stream);

} // namespace dcf

#endif // DCF_CORRELATION_KERNEL_H
