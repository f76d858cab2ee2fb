// The compiled CPU kernel's plain C ABI, loaded with ctypes (dcf/ops/_cpu_kernel.py) by the PyTorch
// op and the OpenVINO op: the library needs no PyTorch headers and builds in seconds.
#include "correlation_kernel.h"

#define DCF_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

constexpr int kAbiVersion = 7;

// Runs body(item) for item in [0, count) on `threads` OpenMP threads. Built with -fopenmp and
// loaded after PyTorch, the library shares PyTorch's OpenMP runtime (same soname), so its threads
// are PyTorch's intra-op threads: no second pool competing for the cores.
struct OpenMP {
  int threads;
  template <class Body>
  void operator()(int64_t count, const Body& body) const {
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int64_t item = 0; item < count; ++item) body(item);
  }
};

}  // namespace

DCF_EXPORT int dcf_correlation_abi_version() { return kAbiVersion; }

// The instruction set the row kernels run: "avx512", "avx2" or "baseline" (selected_isa()).
DCF_EXPORT const char* dcf_correlation_isa() { return isa_name(selected_isa()); }

// Bytes of scratch the calling thread keeps between calls (at most 2 * kKeptScratchBytes per
// dtype), for tests and memory diagnostics.
DCF_EXPORT int64_t dcf_correlation_scratch_bytes() {
  const std::vector<float>* f32 = kept_scratch<float>();
  const std::vector<double>* f64 = kept_scratch<double>();
  return int64_t(sizeof(float) * (f32[0].capacity() + f32[1].capacity()) +
                 sizeof(double) * (f64[0].capacity() + f64[1].capacity()));
}

// All entry points return 0 on success, 2 for invalid arguments (K must be odd and <= 11, sizes
// not negative), 3 if the scratch buffer could not be allocated, 4 for any other failure.
DCF_EXPORT int dcf_correlation_forward_f32(const float* x, float* y, int64_t N, int64_t C, int64_t T,
                                           int64_t H, int64_t W, int K, int L, int threads) {
  return guarded([&] { return forward<float>(x, y, Shape{N, C, T, H, W, K, L}, OpenMP{threads}, forward_rows_f32); });
}
DCF_EXPORT int dcf_correlation_forward_f64(const double* x, double* y, int64_t N, int64_t C, int64_t T,
                                           int64_t H, int64_t W, int K, int L, int threads) {
  return guarded([&] { return forward<double>(x, y, Shape{N, C, T, H, W, K, L}, OpenMP{threads}, forward_rows_f64); });
}
DCF_EXPORT int dcf_correlation_backward_f32(const float* grad_y, const float* x, float* grad_x, int64_t N,
                                            int64_t C, int64_t T, int64_t H, int64_t W, int K, int L,
                                            int threads) {
  return guarded([&] {
    return backward<float>(grad_y, x, grad_x, Shape{N, C, T, H, W, K, L}, OpenMP{threads}, backward_rows_f32);
  });
}
DCF_EXPORT int dcf_correlation_backward_f64(const double* grad_y, const double* x, double* grad_x,
                                            int64_t N, int64_t C, int64_t T, int64_t H, int64_t W, int K,
                                            int L, int threads) {
  return guarded([&] {
    return backward<double>(grad_y, x, grad_x, Shape{N, C, T, H, W, K, L}, OpenMP{threads}, backward_rows_f64);
  });
}

// One step of the spatial pyramid: x (planes, H, W) -> y (planes, ceil(H/2), ceil(W/2)), the 2x2
// average of dcf.models.dcf_net.pool_pyramid (pyramid_step).
DCF_EXPORT int dcf_pyramid_step_f32(const float* x, float* y, int64_t planes, int64_t H, int64_t W, int threads) {
  if (planes < 0 || H < 0 || W < 0) return 2;
  return guarded([&] { return pyramid_step<float>(x, y, planes, H, W, OpenMP{threads}), 0; });
}
DCF_EXPORT int dcf_pyramid_step_f64(const double* x, double* y, int64_t planes, int64_t H, int64_t W, int threads) {
  if (planes < 0 || H < 0 || W < 0) return 2;
  return guarded([&] { return pyramid_step<double>(x, y, planes, H, W, OpenMP{threads}), 0; });
}
