/*
 * Per-position bodies of the correlation kernels. Device code includes them from
 * correlationKernel.cu; the CPU test suite compiles the same bodies as plain C++ to check their
 * index arithmetic against the reference (tests/ops/test_correlation_cuda_source.py).
 */
#ifndef DCF_CORRELATION_DEVICE_H
#define DCF_CORRELATION_DEVICE_H

#include <cstdint>

#if defined(__CUDACC__)
#define DCF_HD __host__ __device__ __forceinline__
#else
#define DCF_HD inline
#endif

namespace dcf
{

//! Offset tau of output block tauIdx: -L..-1 for tauIdx < L, then +1..+L.
DCF_HD int32_t temporalOffset(int32_t tauIdx, int32_t L)
{
    return tauIdx < L ? tauIdx - L : tauIdx - L + 1;
}

//! y at (n, :, t, i, j): all 2L*K*K channels of one position. Load converts T to float, Store back.
template <int32_t K, typename T, typename Load, typename Store>
DCF_HD void forwardAt(T const* x, T* y, int64_t C, int64_t Tn, int64_t H, int64_t W, int32_t L, float scale,
    int64_t n, int64_t t, int64_t i, int64_t j, Load load, Store store)
{
    constexpr int32_t r = K / 2;
    int64_t const plane = H * W;
    int64_t const volume = Tn * plane;
    T const* xn = x + n * C * volume;
    int64_t const outChannels = int64_t{K} * K * 2 * L;
    T* yp = y + n * outChannels * volume + t * plane + i * W + j;
    for (int32_t tauIdx = 0; tauIdx < 2 * L; ++tauIdx)
    {
        int32_t const tau = temporalOffset(tauIdx, L);
        int32_t const d = tau < 0 ? -tau : tau;
        int64_t const tt = t + tau;
        float acc[K * K];
        for (int32_t k = 0; k < K * K; ++k)
        {
            acc[k] = 0.F;
        }
        if (tt >= 0 && tt < Tn)
        {
            for (int64_t c = 0; c < C; ++c)
            {
                T const* channel = xn + c * volume;
                float const center = load(channel[t * plane + i * W + j]);
                T const* partner = channel + tt * plane;
                for (int32_t ky = 0; ky < K; ++ky)
                {
                    int64_t const ii = i + int64_t{ky - r} * d;
                    if (ii < 0 || ii >= H)
                    {
                        continue;
                    }
                    for (int32_t kx = 0; kx < K; ++kx)
                    {
                        int64_t const jj = j + int64_t{kx - r} * d;
                        if (jj >= 0 && jj < W)
                        {
                            acc[ky * K + kx] += center * load(partner[ii * W + jj]);
                        }
                    }
                }
            }
        }
        for (int32_t k = 0; k < K * K; ++k)
        {
            yp[(int64_t{tauIdx} * K * K + k) * volume] = store(acc[k] * scale);
        }
    }
}

//! grad_x at (n, :, t, i, j): the position as the first factor of every channel, and as the
//! partner of (t - tau, i - dy, j - dx).
template <int32_t K, typename T, typename Load, typename Store>
DCF_HD void backwardAt(T const* gy, T const* x, T* gx, int64_t C, int64_t Tn, int64_t H, int64_t W, int32_t L,
    float scale, int64_t n, int64_t t, int64_t i, int64_t j, Load load, Store store)
{
    constexpr int32_t r = K / 2;
    int64_t const plane = H * W;
    int64_t const volume = Tn * plane;
    int64_t const outChannels = int64_t{K} * K * 2 * L;
    T const* xn = x + n * C * volume;
    T const* gyn = gy + n * outChannels * volume;
    for (int64_t c = 0; c < C; ++c)
    {
        T const* channel = xn + c * volume;
        float g = 0.F;
        for (int32_t tauIdx = 0; tauIdx < 2 * L; ++tauIdx)
        {
            int32_t const tau = temporalOffset(tauIdx, L);
            int32_t const d = tau < 0 ? -tau : tau;
            int64_t const ahead = t + tau;  // frame of the partner of (t, i, j)
            int64_t const behind = t - tau; // frame whose partner is (t, i, j)
            for (int32_t ky = 0; ky < K; ++ky)
            {
                int64_t const dy = int64_t{ky - r} * d;
                for (int32_t kx = 0; kx < K; ++kx)
                {
                    int64_t const dx = int64_t{kx - r} * d;
                    T const* go = gyn + (int64_t{tauIdx} * K * K + ky * K + kx) * volume;
                    int64_t ii = i + dy;
                    int64_t jj = j + dx;
                    if (ahead >= 0 && ahead < Tn && ii >= 0 && ii < H && jj >= 0 && jj < W)
                    {
                        g += load(go[t * plane + i * W + j]) * load(channel[ahead * plane + ii * W + jj]);
                    }
                    ii = i - dy;
                    jj = j - dx;
                    if (behind >= 0 && behind < Tn && ii >= 0 && ii < H && jj >= 0 && jj < W)
                    {
                        int64_t const at = behind * plane + ii * W + jj;
                        g += load(go[at]) * load(channel[at]);
                    }
                }
            }
        }
        gx[n * C * volume + c * volume + t * plane + i * W + j] = store(g * scale);
    }
}

} // namespace dcf

#endif // DCF_CORRELATION_DEVICE_H
