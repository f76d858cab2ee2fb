// The CUDA kernels' per-position bodies (trt_plugins/correlationPlugin/correlationDevice.h) run as
// plain C++ over every position, so the CPU test suite checks their index arithmetic against the
// reference. Only the launch configuration and the float/half conversions differ on the GPU.
#include "correlationDevice.h"

#include <cmath>
#include <cstdint>

namespace
{
float load(float const& v)
{
    return v;
}
float store(float v)
{
    return v;
}

template <int32_t K, bool Forward>
void run(float const* a, float const* b, float* out, int64_t N, int64_t C, int64_t T, int64_t H, int64_t W, int32_t L)
{
    float const scale = 1.F / std::sqrt(static_cast<float>(C));
    for (int64_t n = 0; n < N; ++n)
        for (int64_t t = 0; t < T; ++t)
            for (int64_t i = 0; i < H; ++i)
                for (int64_t j = 0; j < W; ++j)
                {
                    if (Forward)
                        dcf::forwardAt<K>(a, out, C, T, H, W, L, scale, n, t, i, j, load, store);
                    else
                        dcf::backwardAt<K>(a, b, out, C, T, H, W, L, scale, n, t, i, j, load, store);
                }
}

template <bool Forward>
int dispatch(float const* a, float const* b, float* out, int64_t N, int64_t C, int64_t T, int64_t H, int64_t W,
    int32_t K, int32_t L)
{
    switch (K)
    {
    case 1: run<1, Forward>(a, b, out, N, C, T, H, W, L); return 0;
    case 3: run<3, Forward>(a, b, out, N, C, T, H, W, L); return 0;
    case 5: run<5, Forward>(a, b, out, N, C, T, H, W, L); return 0;
    case 7: run<7, Forward>(a, b, out, N, C, T, H, W, L); return 0;
    case 9: run<9, Forward>(a, b, out, N, C, T, H, W, L); return 0;
    default: return 1;
    }
}
} // namespace

extern "C" int emulate_forward(
    float const* x, float* y, int64_t N, int64_t C, int64_t T, int64_t H, int64_t W, int32_t K, int32_t L)
{
    return dispatch<true>(x, nullptr, y, N, C, T, H, W, K, L);
}

extern "C" int emulate_backward(float const* gy, float const* x, float* gx, int64_t N, int64_t C, int64_t T, int64_t H,
    int64_t W, int32_t K, int32_t L)
{
    return dispatch<false>(gy, x, gx, N, C, T, H, W, K, L);
}
