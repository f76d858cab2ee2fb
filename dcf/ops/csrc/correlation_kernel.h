// CPU kernels for the DCF correlation op (meaning: DESIGN.md section 1), included by each runtime's
// entry points: correlation_cpu.cpp (ctypes, PyTorch and OpenVINO's Python operation; OpenMP
// threads), correlation_ort.cpp (ONNX Runtime's custom-op library; ONNX Runtime's own threads) and
// correlation_openvino.cpp (OpenVINO's C++ extension; its oneTBB threads).
//
//   y[n, o, t, i, j] = scale * sum_c x[n, c, t, i, j] * x[n, c, t + tau, i + dy, j + dx]
//   o = (tau_index * K + dy / d + r) * K + dx / d + r,   d = |tau|,  r = K / 2,  scale = 1 / sqrt(C)
//   tau in (-L..-1, +1..+L); a partner outside the video or the frame counts as zero.
//
// Tensors are dense, contiguous (N, C, T, H, W). The kernels take the parallel loop as a callable
// `parallel(count, body)` that runs body(item) for every item in [0, count): each runtime brings
// its own thread pool, so the op never starts a second one that fights it for the cores.
//
// Layout of the work: the input is first copied into a buffer of layout (N, T, H, C, Wp) whose
// rows carry P = r*L zeros on both sides, so every displaced read along W is in bounds and reads
// zero outside the frame, and the reduction over C walks memory sequentially. One work item is one
// row (n, t, i); for each (tau > 0, dy) and each block of columns the K accumulators (one per
// dx) stay in vector registers for the whole reduction over C. Each product serves both +tau and
// its mirror -tau, so half of them are never computed; every output element is written exactly
// once. Built by GCC for x86-64, the row kernels are compiled for AVX-512, for AVX2 with FMA and
// for the baseline, the forward's register blocks one vector register wide and one partner row
// high (its K accumulators and K row addresses stay in registers), a row's last columns in one
// block as narrow as covers them (down to 16 bytes, stored through a mask), and the first call
// picks the build for the CPU at hand; other compilers and processors build the baseline only.
// A row only meets rows of its own batch element, so
// the batch runs in passes of as many elements as keep the padded copies within 64 MiB: the
// scratch does not grow with the batch.
//
// correlation_conv fuses the correlation with the 1x1x1 convolution that reads its volume (the
// DCF block's conv2; OpenVINO's DCFCorrelationConv): each row's volume is made as a tile in the
// thread's cache, convolved and pooled there, and never written out.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <vector>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define DCF_X86 1
#define DCF_AVX512 __attribute__((target("avx512f,avx2,fma")))
#define DCF_AVX2 __attribute__((target("avx2,fma")))
#else
#define DCF_X86 0
#define DCF_AVX512
#define DCF_AVX2
#endif
#define DCF_INLINE inline __attribute__((always_inline))
#define DCF_UNUSED __attribute__((unused))  // each runtime uses some of the kernels

namespace {

constexpr int kChunk = 16;  // the widest register block, in columns (padding rounds rows to it)

// The most scratch a thread keeps between calls, per buffer (Scratch, conv_rows' tiles); larger
// buffers are allocated for the call and freed. Why 64 MiB: at Scratch below.
constexpr size_t kKeptScratchBytes = size_t{64} << 20;

// GCC vector extension types of `Lanes` elements: the compiler maps them onto the widest
// registers of the instruction set the function is compiled for (AVX-512, AVX2 or SSE2).
template <class T, int Lanes>
struct VecOf;
template <int Lanes>
struct VecOf<float, Lanes> {
  typedef float type __attribute__((vector_size(Lanes * sizeof(float))));
};
template <int Lanes>
struct VecOf<double, Lanes> {
  typedef double type __attribute__((vector_size(Lanes * sizeof(double))));
};
template <class T, int Lanes = kChunk>
using Vec = typename VecOf<T, Lanes>::type;

template <class T, int Lanes = kChunk>
DCF_INLINE Vec<T, Lanes> load(const T* p) {
  Vec<T, Lanes> v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// The largest window the row kernels are specialised for (1, 3, ..., 11); MAX_KERNEL_SIZE in
// dcf/ops/_cpu_kernel.py.
constexpr int kMaxKernelSize = 11;

struct Shape {
  int64_t N, C, T, H, W;
  int K, L;
  int64_t out_channels() const { return int64_t(K) * K * 2 * L; }
  int pad() const { return (K / 2) * L; }
  // Padded row length: P zeros, W values, P zeros, rounded so a full block never leaves the row.
  int64_t padded_width() const { return (W + kChunk - 1) / kChunk * kChunk + 2 * pad(); }
};

// tau for position `index` in (-L..-1, +1..+L).
DCF_INLINE int tau_of(int index, int L) { return index < L ? index - L : index - L + 1; }

// Padded copy of one frame row (n, t, i) of all channels: (N, C, T, H, W) -> (N, T, H, C, Wp).
template <class T>
DCF_INLINE void pad_row(const T* src, T* dst, int64_t row, int64_t C, int64_t T_, int64_t H, int64_t W,
                        int64_t Wp, int64_t P) {
  const int64_t i = row % H, t = (row / H) % T_, n = row / H / T_;
  T* out = dst + row * C * Wp;
  for (int64_t c = 0; c < C; ++c, out += Wp) {
    std::memset(out, 0, sizeof(T) * P);
    std::memcpy(out + P, src + (((n * C + c) * T_ + t) * H + i) * W, sizeof(T) * W);
    std::memset(out + P + W, 0, sizeof(T) * (Wp - P - W));
  }
}

// Where a block's outputs go. The dot product <x[t,i,j], x[t+tau,i+dy,j+dx]> is
// y[+tau, dy, dx] at (t, i, j) and also y[-tau, -dy, -dx] at (t+tau, i+dy, j+dx): the kernel
// computes each product once, for tau > 0, and writes it to both places.
template <class T>
struct RowTargets {
  T* direct;  // row i of channel (tau, dy, dx = -r*d); channel dx steps by +stride
  T* mirror;  // row i+dy of frame t+tau, channel (-tau, -dy, -dx = +r*d); steps by -stride
};

// Stores lanes [l0, l1) of v at dst[l0..l1), and nothing else: the neighbouring elements may
// belong to another thread's row. Written as a loop over every lane with a condition so that GCC
// makes it one masked store (AVX-512 vmovups with a mask, AVX2 vmaskmovps); the plain loop over
// [l0, l1) became a call to memcpy through a stack copy, a fifth of the forward at W = 40.
template <class T, int Lanes>
DCF_INLINE void store_lanes(T* __restrict dst, const Vec<T, Lanes>& v, int64_t l0, int64_t l1) {
  if (l0 == 0 && l1 == Lanes) {
    std::memcpy(dst, &v, sizeof(v));
    return;
  }
  T lanes[Lanes];
  std::memcpy(lanes, &v, sizeof(v));
  for (int64_t l = 0; l < Lanes; ++l) {
    if (l >= l0 && l < l1) dst[l] = lanes[l];
  }
}

// Lanes columns of the K dot products (dx = -r*d .. r*d) of one (row, tau, dy), unscaled: the K
// accumulators stay in registers for the whole reduction over C (enough independent chains to
// hide the FMA latency), and each load of `a` feeds K FMAs. `a` and `b` point at the block's
// first column, `b` displaced by -r*d.
template <class T, int K, int Lanes>
DCF_INLINE void correlate(const T* a, const T* b, int64_t C, int64_t Wp, int d, Vec<T, Lanes> (&acc)[K]) {
#pragma GCC unroll 16
  for (int dxi = 0; dxi < K; ++dxi) acc[dxi] = Vec<T, Lanes>{};  // lane by lane: `= {}` became a memset
  for (int64_t c = 0; c < C; ++c) {
    const Vec<T, Lanes> av = load<T, Lanes>(a + c * Wp);
#pragma GCC unroll 16
    for (int dxi = 0; dxi < K; ++dxi) acc[dxi] += av * load<T, Lanes>(b + c * Wp + dxi * d);
  }
}

// forward_chunk: the block's K outputs, scaled, stored to their row and to their mirror.
template <class T, int K, int Lanes>
DCF_INLINE void forward_chunk(const T* a, const T* b, const RowTargets<T>& to, int64_t j0, int64_t W,
                              int64_t out_stride, int64_t C, int64_t Wp, int d, T scale) {
  constexpr int r = K / 2;
  Vec<T, Lanes> acc[K];
  correlate<T, K, Lanes>(a + j0, b + j0, C, Wp, d, acc);
  const int64_t lanes = std::min<int64_t>(Lanes, W - j0);
#pragma GCC unroll 16
  for (int dxi = 0; dxi < K; ++dxi) {
    const Vec<T, Lanes> v = acc[dxi] * scale;
    store_lanes<T, Lanes>(to.direct + dxi * out_stride + j0, v, 0, lanes);
    // Mirror: column j + dx, for the lanes where that column is inside the frame.
    const int64_t dx = int64_t(dxi - r) * d;
    const int64_t l0 = std::max<int64_t>(0, -dx - j0), l1 = std::min<int64_t>(lanes, W - dx - j0);
    if (l1 > l0) store_lanes<T, Lanes>(to.mirror - dxi * out_stride + j0 + dx, v, l0, l1);
  }
}

// The narrowest register block: one 16-byte vector (SSE2, the baseline).
template <class T>
constexpr int kMinLanes = 16 / int(sizeof(T));

// The last columns [j0, W), at most Lanes of them: one block, the narrowest that covers them
// (W = 20 in 16-column blocks: 16 + 4 rather than 16 + 16), stored through a mask where partial.
// One block, not a chain of narrower ones: each block costs the same instructions per channel
// whatever its width, and at R(2+1)D's 256 channels on 14-column rows 8 + 4 + 4 took 1.4x as long
// as one 16-column block.
template <class T, int K, int Lanes>
DCF_INLINE void forward_last(const T* a, const T* b, const RowTargets<T>& to, int64_t j0, int64_t W,
                             int64_t out_stride, int64_t C, int64_t Wp, int d, T scale) {
  if constexpr (Lanes / 2 >= kMinLanes<T>) {
    if (W - j0 <= Lanes / 2) return forward_last<T, K, Lanes / 2>(a, b, to, j0, W, out_stride, C, Wp, d, scale);
  }
  forward_chunk<T, K, Lanes>(a, b, to, j0, W, out_stride, C, Wp, d, scale);
}

// One (row, tau, dy) across the row, in blocks of Lanes columns. One partner row per block: two
// shared the loads of `a`, but their 2K displaced loads need an address register each (d is known
// at run time), more than x86-64 has at K = 5, and the loop reloaded them from the stack.
template <class T, int K, int Lanes>
DCF_INLINE void forward_row_block(const T* a, const T* b, const RowTargets<T>& to, int64_t W, int64_t out_stride,
                                  int64_t C, int64_t Wp, int d, T scale) {
  // Every block starts at a multiple of its width and ends within W rounded up to Lanes.
  static_assert(Lanes <= kChunk && kChunk % Lanes == 0 && Lanes >= kMinLanes<T>,
                "a block never reads past the padded row");
  int64_t j0 = 0;
  for (; j0 + Lanes <= W; j0 += Lanes) {
    forward_chunk<T, K, Lanes>(a, b, to, j0, W, out_stride, C, Wp, d, scale);
  }
  if (j0 < W) forward_last<T, K, Lanes>(a, b, to, j0, W, out_stride, C, Wp, d, scale);
}

// Forward for one row (n, t, i): the tau > 0 outputs of this row and their mirrors (tau < 0,
// elsewhere), plus zeros for the tau < 0 entries of this row that no partner reaches.
// xp: padded input (N, T, H, C, Wp). Lanes: columns per register block.
template <class T, int K, int Lanes>
DCF_INLINE void forward_row(const T* xp, T* y, const Shape& s, int64_t item) {
  constexpr int r = K / 2;
  const int64_t H = s.H, W = s.W, Wp = s.padded_width(), P = s.pad(), C = s.C;
  const int64_t i = item % H, t = (item / H) % s.T, n = item / H / s.T;
  const int64_t plane = H * W, out_stride = s.T * plane;
  const T scale = T(1) / std::sqrt(T(C));
  const T* a = xp + ((n * s.T + t) * H + i) * C * Wp + P;
  // Row `row` of frame `frame` in channel (tau_index, dyi, dxi).
  auto out_row = [&](int tau_index, int dyi, int dxi, int64_t frame, int64_t row) {
    const int64_t o = (int64_t(tau_index) * K + dyi) * K + dxi;
    return y + ((n * s.out_channels() + o) * s.T + frame) * plane + row * W;
  };
  for (int tau = 1; tau <= s.L; ++tau) {
    const int d = tau, plus = s.L - 1 + tau, minus = s.L - tau;  // channel-group indices of +tau, -tau
    const int64_t tp = t + tau, tm = t - tau;
    const T* b[K];
    RowTargets<T> to[K];
    int rows = 0;
    for (int dyi = 0; dyi < K; ++dyi) {
      const int64_t dy = int64_t(dyi - r) * d;
      // Direct outputs of this row: computed below, or zero where the partner row is outside.
      if (tp >= s.T || i + dy < 0 || i + dy >= H) {
        for (int dxi = 0; dxi < K; ++dxi) std::memset(out_row(plus, dyi, dxi, t, i), 0, sizeof(T) * W);
      } else {
        b[rows] = xp + ((n * s.T + tp) * H + i + dy) * C * Wp + P - int64_t(r) * d;
        to[rows] = {out_row(plus, dyi, 0, t, i), out_row(minus, K - 1 - dyi, K - 1, tp, i + dy)};
        ++rows;
      }
      // Mirrored outputs of this row, channel (-tau, dy, dx), come from row (t-tau, i+dy) at
      // column j+dx; zero the entries where that source is outside.
      const bool source_row = tm >= 0 && i + dy >= 0 && i + dy < H;
      for (int dxi = 0; dxi < K; ++dxi) {
        T* o = out_row(minus, dyi, dxi, t, i);
        const int64_t dx = int64_t(dxi - r) * d;
        if (!source_row) {
          std::memset(o, 0, sizeof(T) * W);
        } else if (dx > 0) {
          std::memset(o + std::max<int64_t>(0, W - dx), 0, sizeof(T) * std::min<int64_t>(W, dx));
        } else if (dx < 0) {
          std::memset(o, 0, sizeof(T) * std::min<int64_t>(W, -dx));
        }
      }
    }
    for (int q = 0; q < rows; ++q) forward_row_block<T, K, Lanes>(a, b[q], to[q], W, out_stride, C, Wp, d, scale);
  }
}

// Backward, one row (n, t, i) of grad_x, all channels, written once. xp: padded x
// (N, T, H, C, Wp); gp: padded grad_y (N, T, H, O, Wp).
//   gx[c,t,i,j] = scale * sum_offsets ( g[o,t,i,j]           * x[c,t+tau,i+dy,j+dx]
//                                     + g[o,t-tau,i-dy,j-dx] * x[c,t-tau,i-dy,j-dx] )
template <class T, int K>
DCF_INLINE void backward_row(const T* gp, const T* xp, T* gx, const Shape& s, int64_t item) {
  constexpr int r = K / 2;
  const int64_t H = s.H, W = s.W, Wp = s.padded_width(), P = s.pad(), C = s.C, O = s.out_channels();
  const int64_t i = item % H, t = (item / H) % s.T, n = item / H / s.T;
  const T scale = T(1) / std::sqrt(T(C));
  auto x_row = [&](int64_t tt, int64_t ii) { return xp + ((n * s.T + tt) * H + ii) * C * Wp + P; };
  auto g_row = [&](int64_t tt, int64_t ii) { return gp + ((n * s.T + tt) * H + ii) * O * Wp + P; };
  for (int64_t j0 = 0; j0 < W; j0 += kChunk) {
    for (int64_t c = 0; c < C; ++c) {
      Vec<T> acc = {};
      for (int tau_index = 0; tau_index < 2 * s.L; ++tau_index) {
        const int tau = tau_of(tau_index, s.L), d = std::abs(tau);
        const int64_t tp = t + tau, tq = t - tau;
        for (int dyi = 0; dyi < K; ++dyi) {
          const int64_t dy = int64_t(dyi - r) * d;
          const int64_t o0 = int64_t(tau_index * K + dyi) * K;
          // This row looked at frame t+tau: g at (t, i), x at (t+tau, i+dy), displaced by +dx.
          if (tp >= 0 && tp < s.T && i + dy >= 0 && i + dy < H) {
            const T* g = g_row(t, i) + o0 * Wp + j0;
            const T* x = x_row(tp, i + dy) + c * Wp + j0 - int64_t(r) * d;
#pragma GCC unroll 16
            for (int dxi = 0; dxi < K; ++dxi) acc += load(g + dxi * Wp) * load(x + dxi * d);
          }
          // Row (t-tau, i-dy) looked at this row: g and x both there, displaced by -dx.
          if (tq >= 0 && tq < s.T && i - dy >= 0 && i - dy < H) {
            const T* g = g_row(tq, i - dy) + o0 * Wp + j0 + int64_t(r) * d;
            const T* x = x_row(tq, i - dy) + c * Wp + j0 + int64_t(r) * d;
#pragma GCC unroll 16
            for (int dxi = 0; dxi < K; ++dxi) acc += load(g + dxi * (Wp - d)) * load(x - dxi * d);
          }
        }
      }
      store_lanes<T, kChunk>(gx + ((n * C + c) * s.T + t) * H * W + i * W + j0, acc * scale, 0,
                             std::min<int64_t>(kChunk, W - j0));
    }
  }
}

// One output row of a pyramid step: the 2x2 means of rows r0 and r1 (the same row where an odd
// height leaves it alone), an odd last column the mean of its pair. `quarter` is 1/4 times any
// scale the rows still need. The rows are summed first, a block at a time, so that both steps
// vectorise (the sum of four in one expression read every other column and ran scalar).
template <class T>
DCF_INLINE void pool_rows(const T* __restrict r0, const T* __restrict r1, T* __restrict out, int64_t W, T quarter) {
  constexpr int64_t kBlock = 64;  // even: a block's pairs are the row's
  T sum[kBlock];
  for (int64_t j0 = 0; j0 < W; j0 += kBlock) {
    const int64_t n = std::min(kBlock, W - j0);
    for (int64_t j = 0; j < n; ++j) sum[j] = r0[j0 + j] + r1[j0 + j];
    T* __restrict o = out + j0 / 2;
    for (int64_t j = 0; j < n / 2; ++j) o[j] = (sum[2 * j] + sum[2 * j + 1]) * quarter;
    if (n % 2) o[n / 2] = sum[n - 1] * (2 * quarter);
  }
}

// The correlation and the 1x1x1 convolution that reads its volume, in one pass (the DCF block's
// conv2 of its own volume, OpenVINO's fused operation, issue #15):
//   z[n, q, t, i, j] = sum_o w[q, o] * y[n, o, t, i, j]
// and, where asked, the volume pooled once (y's first pyramid level). The volume is never
// written: one row's O x W tile of it is made in the thread's cache, convolved there and pooled
// with the row below it. That costs the symmetry of forward_row (each dot product is made for
// +tau and for -tau), and saves writing the volume and reading it back, which is what the
// correlation cost next to a convolution: at X3D's stage 2 the volume has 100 channels and the
// convolution's output 24.
constexpr int kConvRows = 6;  // output channels per register block of the convolution

// The weight, scaled by `scale` (the correlation's 1/sqrt(C)) and packed for conv_tile: blocks of
// kConvRows output channels, each (O, kConvRows), the last block's missing channels zero.
template <class T>
std::vector<T> pack_weight(const T* w, int64_t Q, int64_t O, T scale) {
  const int64_t blocks = (Q + kConvRows - 1) / kConvRows;
  std::vector<T> packed(size_t(blocks * O * kConvRows), T(0));
  for (int64_t q = 0; q < Q; ++q)
    for (int64_t o = 0; o < O; ++o) packed[size_t(((q / kConvRows) * O + o) * kConvRows + q % kConvRows)] = w[q * O + o] * scale;
  return packed;
}

// Columns [j0, j0 + Vectors * Lanes) of kConvRows rows of z from one volume tile (O, Wt): the
// accumulators stay in registers, the tile's rows stream from the cache, and each weight is
// broadcast once for `Vectors` FMAs. Stores only the rows below Q and the columns below W.
template <class T, int Lanes, int Vectors>
DCF_INLINE void conv_block(const T* __restrict tile, int64_t Wt, const T* __restrict wb, int64_t O, int64_t rows,
                           T* z, int64_t q_stride, int64_t j0, int64_t W) {
  Vec<T, Lanes> acc[kConvRows][Vectors];
#pragma GCC unroll 8
  for (int q = 0; q < kConvRows; ++q)
#pragma GCC unroll 2
    for (int v = 0; v < Vectors; ++v) acc[q][v] = Vec<T, Lanes>{};
  const T* column = tile + j0;
  for (int64_t o = 0; o < O; ++o, column += Wt, wb += kConvRows) {
    Vec<T, Lanes> x[Vectors];
#pragma GCC unroll 2
    for (int v = 0; v < Vectors; ++v) x[v] = load<T, Lanes>(column + v * Lanes);
#pragma GCC unroll 8
    for (int q = 0; q < kConvRows; ++q) {
      const T weight = wb[q];
#pragma GCC unroll 2
      for (int v = 0; v < Vectors; ++v) acc[q][v] += x[v] * weight;
    }
  }
  for (int q = 0; q < rows; ++q) {
    for (int v = 0; v < Vectors; ++v) {
      const int64_t j = j0 + v * Lanes;
      if (j < W) store_lanes<T, Lanes>(z + q * q_stride + j, acc[q][v], 0, std::min<int64_t>(Lanes, W - j));
    }
  }
}

// z's row (Q channels of q_stride apart, W columns) from one volume tile (O, Wt), Wt >= W a
// multiple of Lanes: blocks two vectors wide, and the last one vector wide where that covers it.
template <class T, int Lanes>
DCF_INLINE void conv_tile(const T* tile, int64_t Wt, const T* packed, int64_t O, int64_t Q, T* z, int64_t q_stride,
                          int64_t W) {
  for (int64_t q0 = 0; q0 < Q; q0 += kConvRows) {
    const T* wb = packed + q0 * O;  // block q0 / kConvRows
    const int64_t rows = std::min<int64_t>(kConvRows, Q - q0);
    T* zq = z + q0 * q_stride;
    int64_t j0 = 0;
    for (; j0 + Lanes < W; j0 += 2 * Lanes) conv_block<T, Lanes, 2>(tile, Wt, wb, O, rows, zq, q_stride, j0, W);
    if (j0 < W) conv_block<T, Lanes, 1>(tile, Wt, wb, O, rows, zq, q_stride, j0, W);
  }
}

// The unscaled volume of row (n, t, i) as a tile (O, Wt), Wt = W rounded up to Lanes: every
// offset's dot products computed here, zero where the partner row is outside, and zero in the
// columns past W (they read the padding's zeros: Wt <= W rounded up to kChunk, which the padded
// rows hold). xp: padded input.
template <class T, int K, int Lanes>
DCF_INLINE void volume_tile(const T* xp, T* tile, int64_t Wt, const Shape& s, int64_t n, int64_t t, int64_t i) {
  static_assert(kChunk % Lanes == 0, "a tile row never reads past the padded row");
  constexpr int r = K / 2;
  const int64_t H = s.H, Wp = s.padded_width(), P = s.pad(), C = s.C;
  const T* a = xp + ((n * s.T + t) * H + i) * C * Wp + P;
  for (int tau_index = 0; tau_index < 2 * s.L; ++tau_index) {
    const int tau = tau_of(tau_index, s.L), d = std::abs(tau);
    const int64_t tp = t + tau;
    for (int dyi = 0; dyi < K; ++dyi) {
      const int64_t dy = int64_t(dyi - r) * d;
      T* rows = tile + (int64_t(tau_index) * K + dyi) * K * Wt;
      if (tp < 0 || tp >= s.T || i + dy < 0 || i + dy >= H) {
        std::memset(rows, 0, sizeof(T) * K * Wt);
        continue;
      }
      const T* b = xp + ((n * s.T + tp) * H + i + dy) * C * Wp + P - int64_t(r) * d;
      for (int64_t j0 = 0; j0 < Wt; j0 += Lanes) {
        Vec<T, Lanes> acc[K];
        correlate<T, K, Lanes>(a + j0, b + j0, C, Wp, d, acc);
#pragma GCC unroll 16
        for (int dxi = 0; dxi < K; ++dxi) std::memcpy(rows + dxi * Wt + j0, &acc[dxi], sizeof(acc[dxi]));
      }
    }
  }
}

// Everything fused (correlation_conv) needs besides the input.
template <class T>
struct ConvTargets {
  const T* packed;  // pack_weight
  int64_t Q;        // the convolution's output channels
  T* z;             // (N, Q, T, H, W)
  T* pooled;        // (N, O, T, ceil(H/2), ceil(W/2)), or null
};

// One item of correlation_conv: rows 2*i2 and 2*i2 + 1 of frame (n, t), their z rows and their
// pooled row. The two tiles are the calling thread's, kept between items and calls up to
// kKeptScratchBytes (3.5 MB at K = 11, L = 8, W = 224), else allocated for the item.
template <class T, int K, int Lanes>
DCF_INLINE void conv_rows(const T* xp, const ConvTargets<T>& to, const Shape& s, int64_t item) {
  const int64_t H = s.H, W = s.W, H2 = (H + 1) / 2, W2 = (W + 1) / 2, O = s.out_channels();
  const int64_t i2 = item % H2, t = (item / H2) % s.T, n = item / H2 / s.T;
  const int64_t Wt = (W + Lanes - 1) / Lanes * Lanes;
  const size_t count = size_t(2 * O * Wt);
  thread_local std::vector<T> kept;
  std::unique_ptr<T[]> owned;
  T* tiles;
  if (count * sizeof(T) <= kKeptScratchBytes) {
    if (kept.size() < count) kept.resize(count);
    tiles = kept.data();
  } else {
    owned.reset(new T[count]);  // volume_tile writes every element read
    tiles = owned.get();
  }
  const int64_t rows = std::min<int64_t>(2, H - 2 * i2);
  for (int64_t k = 0; k < rows; ++k) {
    const int64_t i = 2 * i2 + k;
    T* tile = tiles + k * O * Wt;
    volume_tile<T, K, Lanes>(xp, tile, Wt, s, n, t, i);
    conv_tile<T, Lanes>(tile, Wt, to.packed, O, to.Q, to.z + ((n * to.Q * s.T + t) * H + i) * W, s.T * H * W, W);
  }
  if (to.pooled == nullptr) return;
  const T quarter = T(0.25) / std::sqrt(T(s.C));
  const T* second = rows == 2 ? tiles + O * Wt : tiles;
  for (int64_t o = 0; o < O; ++o) {
    T* out = to.pooled + ((n * O + o) * s.T + t) * H2 * W2 + i2 * W2;
    pool_rows(tiles + o * Wt, second + o * Wt, out, W, quarter);
  }
}

// Calls Kernel::template row<K>(args...) with the window K as a compile-time constant: the row
// kernels are specialised for the odd windows up to kMaxKernelSize.
template <class Kernel, class... Args>
DCF_INLINE void by_window(int K, const Args&... args) {
  switch (K) {
    case 1: return Kernel::template row<1>(args...);
    case 3: return Kernel::template row<3>(args...);
    case 5: return Kernel::template row<5>(args...);
    case 7: return Kernel::template row<7>(args...);
    case 9: return Kernel::template row<9>(args...);
    case 11: return Kernel::template row<11>(args...);
  }
}

// The row kernels, by window, for by_window.
template <class T, int Lanes>
struct ForwardRow {
  template <int K>
  static DCF_INLINE void row(const T* xp, T* y, const Shape& s, int64_t item) { forward_row<T, K, Lanes>(xp, y, s, item); }
};
template <class T>
struct BackwardRow {
  template <int K>
  static DCF_INLINE void row(const T* gp, const T* xp, T* gx, const Shape& s, int64_t item) {
    backward_row<T, K>(gp, xp, gx, s, item);
  }
};
template <class T, int Lanes>
struct ConvRows {
  template <int K>
  static DCF_INLINE void row(const T* xp, const ConvTargets<T>& to, const Shape& s, int64_t item) {
    conv_rows<T, K, Lanes>(xp, to, s, item);
  }
};

// The row kernels of one instruction set, the forward's register blocks REGISTER_BYTES wide.
#define DCF_ROW_KERNELS_FOR(T, SUFFIX, REGISTER_BYTES, ISA)                                        \
  ISA void forward_rows_##SUFFIX(const T* xp, T* y, const Shape& s, int64_t item) {                \
    by_window<ForwardRow<T, REGISTER_BYTES / int(sizeof(T))>>(s.K, xp, y, s, item);                \
  }                                                                                                \
  ISA void backward_rows_##SUFFIX(const T* gp, const T* xp, T* gx, const Shape& s, int64_t item) {  \
    by_window<BackwardRow<T>>(s.K, gp, xp, gx, s, item);                                           \
  }                                                                                                \
  ISA void conv_rows_##SUFFIX(const T* xp, const ConvTargets<T>& to, const Shape& s, int64_t item) { \
    by_window<ConvRows<T, REGISTER_BYTES / int(sizeof(T))>>(s.K, xp, to, s, item);                 \
  }

// The instruction set the row kernels use: the widest the CPU has, at most the one named by
// DCF_CPU_ISA ("avx2" or "baseline"), so that the narrower kernels are tested on any x86 CPU.
enum class Isa { kBaseline, kAvx2, kAvx512 };
DCF_UNUSED Isa kernel_isa() {
#if DCF_X86
  const char* cap = std::getenv("DCF_CPU_ISA");
  const bool baseline = cap && std::strcmp(cap, "baseline") == 0, avx2 = cap && std::strcmp(cap, "avx2") == 0;
  const bool fma = __builtin_cpu_supports("fma");
  if (!baseline && !avx2 && fma && __builtin_cpu_supports("avx512f")) return Isa::kAvx512;
  if (!baseline && fma && __builtin_cpu_supports("avx2")) return Isa::kAvx2;
#endif
  return Isa::kBaseline;
}

// kernel_isa() of this process, read once (every row kernel and dcf_correlation_isa use it).
DCF_UNUSED Isa selected_isa() {
  static const Isa isa = kernel_isa();
  return isa;
}

DCF_UNUSED const char* isa_name(Isa isa) {
  return isa == Isa::kAvx512 ? "avx512" : isa == Isa::kAvx2 ? "avx2" : "baseline";
}

template <class F>
F for_isa(F avx512, F avx2, F baseline) {
  switch (selected_isa()) {
    case Isa::kAvx512: return avx512;
    case Isa::kAvx2: return avx2;
    default: return baseline;
  }
}

// forward_rows_SUFFIX, backward_rows_SUFFIX and conv_rows_SUFFIX: the row kernels for
// selected_isa(), chosen on the first call.
#define DCF_ROW_KERNELS(T, SUFFIX)                                                                  \
  DCF_ROW_KERNELS_FOR(T, avx512_##SUFFIX, 64, DCF_AVX512)                                          \
  DCF_ROW_KERNELS_FOR(T, avx2_##SUFFIX, 32, DCF_AVX2)                                              \
  DCF_ROW_KERNELS_FOR(T, baseline_##SUFFIX, 16, )                                                  \
  DCF_UNUSED void forward_rows_##SUFFIX(const T* xp, T* y, const Shape& s, int64_t item) {         \
    static const auto rows = for_isa(forward_rows_avx512_##SUFFIX, forward_rows_avx2_##SUFFIX,     \
                                     forward_rows_baseline_##SUFFIX);                             \
    rows(xp, y, s, item);                                                                         \
  }                                                                                               \
  DCF_UNUSED void backward_rows_##SUFFIX(const T* gp, const T* xp, T* gx, const Shape& s,          \
                                         int64_t item) {                                          \
    static const auto rows = for_isa(backward_rows_avx512_##SUFFIX, backward_rows_avx2_##SUFFIX,   \
                                     backward_rows_baseline_##SUFFIX);                            \
    rows(gp, xp, gx, s, item);                                                                    \
  }                                                                                               \
  DCF_UNUSED void conv_rows_##SUFFIX(const T* xp, const ConvTargets<T>& to, const Shape& s,        \
                                     int64_t item) {                                              \
    static const auto rows = for_isa(conv_rows_avx512_##SUFFIX, conv_rows_avx2_##SUFFIX,           \
                                     conv_rows_baseline_##SUFFIX);                                \
    rows(xp, to, s, item);                                                                        \
  }
DCF_ROW_KERNELS(float, f32)
DCF_ROW_KERNELS(double, f64)

bool valid(const Shape& s) {
  return s.N >= 0 && s.C >= 1 && s.T >= 0 && s.H >= 0 && s.W >= 0 && s.K >= 1 && s.K <= kMaxKernelSize &&
         s.K % 2 == 1 && s.L >= 1;
}

// Scratch for the padded copies of one pass. Up to kKeptScratchBytes per buffer it is kept per
// calling thread between calls: re-allocating (and page-faulting) it on every call costs as much
// as the arithmetic at small shapes. A larger one, needed only when a single batch element's
// padded copy exceeds that, is allocated for the call and freed on return, so that no thread keeps
// the largest input it ever saw. 64 MiB holds one X3D-L stage-2 element (44 MB of padded grad_y)
// and makes a pass long enough (tens of ms at K=5, L=2) that its two thread synchronisations stay
// negligible even where other processes share the cores; 16 MiB passes cost up to 1.8x there.
// (kKeptScratchBytes, defined above, bounds conv_rows' tiles the same way.)

template <class T>
std::vector<T>* kept_scratch() {
  thread_local std::vector<T> buffers[2];
  return buffers;
}

template <class T>
class Scratch {
 public:
  Scratch(size_t slot, size_t count) {
    if (count * sizeof(T) <= kKeptScratchBytes) {
      std::vector<T>& kept = kept_scratch<T>()[slot];
      if (kept.size() < count) kept.resize(count);
      data_ = kept.data();
    } else {
      owned_.reset(new T[count]);  // not value-initialised: pad_row writes every element
      data_ = owned_.get();
    }
  }
  T* data() const { return data_; }

 private:
  std::unique_ptr<T[]> owned_;
  T* data_;
};

// Batch elements per pass: as many as keep a padded copy of `channels` channels within
// kKeptScratchBytes, at least one.
template <class T>
int64_t elements_per_pass(const Shape& s, int64_t channels) {
  const int64_t element_bytes = s.T * s.H * channels * s.padded_width() * int64_t(sizeof(T));
  return std::clamp<int64_t>(int64_t(kKeptScratchBytes) / element_bytes, 1, s.N);
}

template <class T, class Parallel>
int forward(const T* x, T* y, const Shape& s, const Parallel& parallel_for,
            void (*rows)(const T*, T*, const Shape&, int64_t)) {
  if (!valid(s)) return 2;
  const int64_t element_rows = s.T * s.H, Wp = s.padded_width();
  if (s.N * element_rows * s.W == 0) return 0;
  selected_isa();  // read DCF_CPU_ISA on the calling thread, not on a worker of the pool
  const int64_t step = elements_per_pass<T>(s, s.C);
  const Scratch<T> x_scratch(0, size_t(step * element_rows * s.C * Wp));
  T* xp = x_scratch.data();
  for (int64_t n0 = 0; n0 < s.N; n0 += step) {
    Shape pass = s;
    pass.N = std::min(step, s.N - n0);
    const T* xn = x + n0 * s.C * element_rows * s.W;
    T* yn = y + n0 * s.out_channels() * element_rows * s.W;
    const int64_t pass_rows = pass.N * element_rows;
    parallel_for(pass_rows, [&](int64_t row) { pad_row(xn, xp, row, s.C, s.T, s.H, s.W, Wp, s.pad()); });
    parallel_for(pass_rows, [&](int64_t item) { rows(xp, yn, pass, item); });
  }
  return 0;
}

// The correlation of x and the 1x1x1 convolution of its volume by w (Q, O), in one pass
// (conv_rows); `pooled`, where not null, receives the volume's first pyramid level.
template <class T, class Parallel>
int correlation_conv(const T* x, const T* w, int64_t Q, T* z, T* pooled, const Shape& s, const Parallel& parallel_for,
                     void (*rows)(const T*, const ConvTargets<T>&, const Shape&, int64_t)) {
  if (!valid(s) || Q < 1) return 2;
  const int64_t element_rows = s.T * s.H, Wp = s.padded_width(), H2 = (s.H + 1) / 2, W2 = (s.W + 1) / 2;
  if (s.N * element_rows * s.W == 0) return 0;
  selected_isa();
  const std::vector<T> packed = pack_weight(w, Q, s.out_channels(), T(1) / std::sqrt(T(s.C)));
  const int64_t step = elements_per_pass<T>(s, s.C);
  const Scratch<T> x_scratch(0, size_t(step * element_rows * s.C * Wp));
  T* xp = x_scratch.data();
  for (int64_t n0 = 0; n0 < s.N; n0 += step) {
    Shape pass = s;
    pass.N = std::min(step, s.N - n0);
    const ConvTargets<T> to{packed.data(), Q, z + n0 * Q * element_rows * s.W,
                            pooled ? pooled + n0 * s.out_channels() * s.T * H2 * W2 : nullptr};
    parallel_for(pass.N * element_rows,
                 [&](int64_t row) { pad_row(x + n0 * s.C * element_rows * s.W, xp, row, s.C, s.T, s.H, s.W, Wp, s.pad()); });
    parallel_for(pass.N * s.T * H2, [&](int64_t item) { rows(xp, to, pass, item); });
  }
  return 0;
}

template <class T, class Parallel>
int backward(const T* g, const T* x, T* gx, const Shape& s, const Parallel& parallel_for,
             void (*rows)(const T*, const T*, T*, const Shape&, int64_t)) {
  if (!valid(s)) return 2;
  const int64_t element_rows = s.T * s.H, Wp = s.padded_width(), O = s.out_channels();
  if (s.N * element_rows * s.W == 0) return 0;
  selected_isa();
  const int64_t step = elements_per_pass<T>(s, std::max(s.C, O));
  const Scratch<T> x_scratch(0, size_t(step * element_rows * s.C * Wp)),
      g_scratch(1, size_t(step * element_rows * O * Wp));
  T* xp = x_scratch.data();
  T* gp = g_scratch.data();
  for (int64_t n0 = 0; n0 < s.N; n0 += step) {
    Shape pass = s;
    pass.N = std::min(step, s.N - n0);
    const T* xn = x + n0 * s.C * element_rows * s.W;
    const T* gn = g + n0 * O * element_rows * s.W;
    T* gxn = gx + n0 * s.C * element_rows * s.W;
    const int64_t pass_rows = pass.N * element_rows;
    parallel_for(2 * pass_rows, [&](int64_t k) {
      if (k < pass_rows) {
        pad_row(xn, xp, k, s.C, s.T, s.H, s.W, Wp, s.pad());
      } else {
        pad_row(gn, gp, k - pass_rows, O, s.T, s.H, s.W, Wp, s.pad());
      }
    });
    parallel_for(pass_rows, [&](int64_t item) { rows(gp, xp, gxn, pass, item); });
  }
  return 0;
}

// One step of the spatial pyramid (DESIGN.md section 2; dcf.models.dcf_net.pool_pyramid): each
// H x W plane of `planes` averaged over 2x2 windows to ceil(H/2) x ceil(W/2), a window cut by an
// odd edge averaging the values it holds (an odd last row is its own pair, an odd last column a
// pair of one). Memory-bound: one pass over the volume, a plane per work item, the row pair summed
// first so the compiler vectorises the sum.
template <class T, class Parallel>
void pyramid_step(const T* src, T* dst, int64_t planes, int64_t H, int64_t W, const Parallel& parallel_for) {
  const int64_t H2 = (H + 1) / 2, W2 = (W + 1) / 2;
  parallel_for(planes, [&](int64_t p) {
    const T* plane = src + p * H * W;
    T* out = dst + p * H2 * W2;
    for (int64_t i = 0; i < H2; ++i) {
      const T* r0 = plane + 2 * i * W;
      pool_rows(r0, 2 * i + 1 < H ? r0 + W : r0, out + i * W2, W, T(0.25));
    }
  });
}

// No exception crosses the C boundary: allocation failure becomes status 3.
template <class F>
int guarded(const F& f) {
  try {
    return f();
  } catch (const std::bad_alloc&) {
    return 3;
  } catch (...) {
    return 4;
  }
}

}  // namespace
