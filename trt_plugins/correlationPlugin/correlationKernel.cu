/*
 * CUDA kernels of the correlation op: one thread per output position (n, t, i, j), all 2L*K*K
 * channels in one launch, float accumulation. Threads along x are neighbouring columns, so the
 * loads of x and the stores of y coalesce; the K*K partner reads of neighbouring threads overlap
 * and are served by the read-only cache.
 */
#include "correlationDevice.h"
#include "correlationKernel.h"

#include <cuda_fp16.h>

#include <cmath>
#include <type_traits>

namespace dcf
{
namespace
{

constexpr int32_t kBlockX = 32; // columns
constexpr int32_t kBlockY = 8;  // rows
constexpr int64_t kMaxGridZ = 65535;

template <typename T>
struct Convert;

template <>
struct Convert<float>
{
    __device__ static float load(float const& v)
    {
        return __ldg(&v);
    }
    __device__ static float store(float v)
    {
        return v;
    }
};

template <>
struct Convert<__half>
{
    __device__ static float load(__half const& v)
    {
        return __half2float(__ldg(&v));
    }
    __device__ static __half store(float v)
    {
        return __float2half_rn(v);
    }
};

//! y at every channel of one position.
template <int32_t K, typename T>
struct Forward
{
    T const* x;
    T* y;
    __device__ void operator()(int64_t C, int64_t Tn, int64_t H, int64_t W, int32_t L, float scale, int64_t n,
        int64_t t, int64_t i, int64_t j) const
    {
        // Lambdas, so the conversions inline (a function pointer would be an indirect call).
        auto load = [](T const& v) { return Convert<T>::load(v); };
        auto store = [](float v) { return Convert<T>::store(v); };
        forwardAt<K>(x, y, C, Tn, H, W, L, scale, n, t, i, j, load, store);
    }
};

//! grad_x at every channel of one position.
template <int32_t K, typename T>
struct Backward
{
    T const* gy;
    T const* x;
    T* gx;
    __device__ void operator()(int64_t C, int64_t Tn, int64_t H, int64_t W, int32_t L, float scale, int64_t n,
        int64_t t, int64_t i, int64_t j) const
    {
        // Lambdas, so the conversions inline (a function pointer would be an indirect call).
        auto load = [](T const& v) { return Convert<T>::load(v); };
        auto store = [](float v) { return Convert<T>::store(v); };
        backwardAt<K>(gy, x, gx, C, Tn, H, W, L, scale, n, t, i, j, load, store);
    }
};

//! One thread per (i, j); blocks along z stride over (n, t).
template <typename Op>
__global__ void positionsKernel(Op op, int64_t N, int64_t C, int64_t Tn, int64_t H, int64_t W, int32_t L, float scale)
{
    int64_t const j = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
    int64_t const i = int64_t{blockIdx.y} * blockDim.y + threadIdx.y;
    if (i >= H || j >= W)
    {
        return;
    }
    for (int64_t nt = blockIdx.z; nt < N * Tn; nt += gridDim.z)
    {
        op(C, Tn, H, W, L, scale, nt / Tn, nt % Tn, i, j);
    }
}

dim3 gridFor(CorrelationShape const& s)
{
    int64_t const z = s.n * s.t < kMaxGridZ ? s.n * s.t : kMaxGridZ;
    return dim3(static_cast<uint32_t>((s.w + kBlockX - 1) / kBlockX), static_cast<uint32_t>((s.h + kBlockY - 1) / kBlockY),
        static_cast<uint32_t>(z));
}

bool empty(CorrelationShape const& s)
{
    return s.n == 0 || s.t == 0 || s.h == 0 || s.w == 0;
}

float scaleOf(CorrelationShape const& s)
{
    return 1.F / std::sqrt(static_cast<float>(s.c));
}

//! Calls launch(std::integral_constant<int32_t, K>) for the compiled window sizes.
template <typename Launch>
cudaError_t withKernelSize(CorrelationShape const& s, Launch&& launch)
{
    if (!correlationSupported(s))
    {
        return cudaErrorInvalidValue;
    }
    if (empty(s))
    {
        return cudaSuccess;
    }
    switch (s.kernelSize)
    {
    case 1: launch(std::integral_constant<int32_t, 1>{}); break;
    case 3: launch(std::integral_constant<int32_t, 3>{}); break;
    case 5: launch(std::integral_constant<int32_t, 5>{}); break;
    case 7: launch(std::integral_constant<int32_t, 7>{}); break;
    case 9: launch(std::integral_constant<int32_t, 9>{}); break;
    default: return cudaErrorInvalidValue;
    }
    return cudaPeekAtLastError(); // the launch's error, left for the caller to see too
}

} // namespace

bool correlationSupported(CorrelationShape const& s)
{
    return s.kernelSize >= 1 && s.kernelSize <= kMaxKernelSize && s.kernelSize % 2 == 1 && s.temporalRange >= 1
        && s.n >= 0 && s.c >= 1 && s.t >= 0 && s.h >= 0 && s.w >= 0 && s.h < 65535 * kBlockY;
}

template <typename T>
cudaError_t correlationForward(T const* x, T* y, CorrelationShape const& s, cudaStream_t stream)
{
    return withKernelSize(s, [&](auto k) {
        positionsKernel<<<gridFor(s), dim3(kBlockX, kBlockY), 0, stream>>>(
            Forward<decltype(k)::value, T>{x, y}, s.n, s.c, s.t, s.h, s.w, s.temporalRange, scaleOf(s));
    });
}

template <typename T>
cudaError_t correlationBackward(T const* gradY, T const* x, T* gradX, CorrelationShape const& s, cudaStream_t stream)
{
    return withKernelSize(s, [&](auto k) {
        positionsKernel<<<gridFor(s), dim3(kBlockX, kBlockY), 0, stream>>>(
            Backward<decltype(k)::value, T>{gradY, x, gradX}, s.n, s.c, s.t, s.h, s.w, s.temporalRange, scaleOf(s));
    });
}

template cudaError_t correlationForward<float>(float const*, float*, CorrelationShape const&, cudaStream_t);
template cudaError_t correlationForward<__half>(__half const*, __half*, CorrelationShape const&, cudaStream_t);
template cudaError_t correlationBackward<float>(
    float const*, float const*, float*, CorrelationShape const&, cudaStream_t);
template cudaError_t correlationBackward<__half>(
    __half const*, __half const*, __half*, CorrelationShape const&, cudaStream_t);

} // namespace dcf
