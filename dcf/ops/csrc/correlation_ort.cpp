// ONNX Runtime custom-op library: dcf::DCFCorrelation (DESIGN.md sections 1 and 2) on ONNX
// Runtime's CPU execution provider, on the compiled CPU kernel (correlation_kernel.h), so ONNX
// Runtime runs custom-node ONNX files. Loaded with SessionOptions.register_custom_ops_library
// (dcf/export/onnxruntime_op.py). Windows up to the kernel's 11 (larger ones: the portable export,
// or OpenVINO, whose op falls back to PyTorch).
//
// The kernel's rows run on ONNX Runtime's own intra-op thread pool (KernelContext_ParallelFor):
// no second pool spins against it. float32 inputs are computed in place; float16 inputs (the
// fp16 export) are computed in float32 and rounded once.
//
// Only the C API is used, through the function table ONNX Runtime hands over: the library does
// not link against onnxruntime, and one build serves every ONNX Runtime from 1.17 (the first with
// KernelContext_ParallelFor) on. It compiles against onnxruntime_c_api.h (setup.py says where from).
#include <onnxruntime_c_api.h>

#if ORT_API_VERSION < 17
#error "the dcf op library needs onnxruntime_c_api.h from ONNX Runtime 1.17 or later"
#endif

#include <atomic>
#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstring>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "correlation_kernel.h"

namespace {

constexpr uint32_t kApiVersion = 17;
constexpr char kDomain[] = "dcf";  // dcf/export/names.py: CORRELATION_DOMAIN, CORRELATION_OP
constexpr char kOp[] = "DCFCorrelation";

// Set by the first RegisterCustomOps, before any kernel exists; the same table on every call.
std::atomic<const OrtApi*> g_api{nullptr};

const OrtApi& api() { return *g_api.load(std::memory_order_acquire); }

OrtStatus* error(OrtErrorCode code, const std::string& message) noexcept {
  try {
    return api().CreateStatus(code, ("dcf::DCFCorrelation: " + message).c_str());
  } catch (...) {
    return api().CreateStatus(code, "dcf::DCFCorrelation: failed (out of memory for the message)");
  }
}

// IEEE half <-> float, round to nearest even (the fp16 export's input and output; no _Float16, so
// that older compilers build the library too).
float half_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exponent = (h >> 10) & 0x1fu, mantissa = h & 0x3ffu, bits;
  if (exponent == 0x1f) {
    bits = sign | 0x7f800000u | (mantissa << 13);  // infinity, NaN
  } else if (exponent != 0) {
    bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    bits = sign;
  } else {  // subnormal: normalise
    int shifts = 0;
    while (!(mantissa & 0x400u)) mantissa <<= 1, ++shifts;
    bits = sign | (uint32_t(113 - shifts) << 23) | ((mantissa & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

uint16_t float_to_half(float f) {
  uint32_t x;
  std::memcpy(&x, &f, sizeof x);
  const uint16_t sign = uint16_t((x >> 16) & 0x8000u);
  x &= 0x7fffffffu;
  if (x >= 0x7f800000u) return sign | 0x7c00u | (x > 0x7f800000u ? 0x200u : 0u);  // infinity, NaN
  if (x >= 0x477ff000u) return sign | 0x7c00u;  // rounds past 65504
  if (x < 0x38800000u) {  // below 2^-14: a subnormal half, or zero
    if (x < 0x33000000u) return sign;  // below 2^-25
    const uint32_t shift = 126 - (x >> 23), mantissa = (x & 0x7fffffu) | 0x800000u;
    uint32_t h = mantissa >> shift;
    const uint32_t rest = mantissa & ((1u << shift) - 1), halfway = 1u << (shift - 1);
    if (rest > halfway || (rest == halfway && (h & 1))) ++h;
    return uint16_t(sign | h);
  }
  uint32_t h = (x >> 13) - (112u << 10);  // exponent rebiased from 127 to 15
  const uint32_t rest = x & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1))) ++h;
  return uint16_t(sign | h);
}

// Runs the kernel's parallel loops on the session's intra-op threads.
struct OrtParallel {
  const OrtKernelContext* context;
  template <class Body>
  void operator()(int64_t count, const Body& body) const {
    auto call = [](void* data, size_t item) { (*static_cast<const Body*>(data))(int64_t(item)); };
    if (OrtStatus* status = api().KernelContext_ParallelFor(context, call, size_t(count), 0,
                                                             const_cast<Body*>(&body))) {
      const std::string message = api().GetErrorMessage(status);
      api().ReleaseStatus(status);
      throw std::runtime_error("ParallelFor failed: " + message);
    }
  }
};

struct Kernel {
  int64_t kernel_size = 0, temporal_range = 0;
  ONNXTensorElementDataType type = ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
};

// The custom op is a C struct of callbacks; one per element type (ONNX Runtime picks by the
// input's type).
struct CorrelationOp : OrtCustomOp {
  ONNXTensorElementDataType type;
};

#define DCF_TRY(expr)                      \
  do {                                     \
    if (OrtStatus* status_ = (expr)) return status_; \
  } while (0)

OrtStatus* attribute(const OrtKernelInfo* info, const char* name, int64_t* value) {
  if (OrtStatus* status = api().KernelInfoGetAttribute_int64(info, name, value)) {
    api().ReleaseStatus(status);
    return error(ORT_INVALID_ARGUMENT, std::string("the node has no int attribute ") + name);
  }
  return nullptr;
}

OrtStatus* make_kernel(const CorrelationOp& op, const OrtKernelInfo* info, void** out) {
  Kernel kernel;
  kernel.type = op.type;
  DCF_TRY(attribute(info, "kernel_size", &kernel.kernel_size));
  DCF_TRY(attribute(info, "temporal_range", &kernel.temporal_range));
  const int64_t k = kernel.kernel_size, l = kernel.temporal_range;
  if (k < 1 || k % 2 == 0 || k > kMaxKernelSize) {
    return error(ORT_INVALID_ARGUMENT,
                 "kernel_size must be odd and at most 11 in ONNX Runtime, got " + std::to_string(k) +
                     " (larger windows: export with --portable, or run the file with --backend openvino)");
  }
  if (l < 1 || l > INT_MAX / (2 * k * k)) {  // the output's channels and the padding fit an int
    return error(ORT_INVALID_ARGUMENT, "temporal_range must be from 1 to " + std::to_string(INT_MAX / (2 * k * k)) +
                                           ", got " + std::to_string(l));
  }
  *out = new Kernel(kernel);
  return nullptr;
}

OrtStatus* ORT_API_CALL create_kernel(const OrtCustomOp* op, const OrtApi*, const OrtKernelInfo* info,
                                      void** out) noexcept {
  try {
    return make_kernel(*static_cast<const CorrelationOp*>(op), info, out);
  } catch (...) {
    return error(ORT_FAIL, "out of memory creating the kernel");
  }
}

// Runs body(begin, end) over [0, count) in chunks on the session's threads.
template <class Body>
void in_chunks(const OrtParallel& parallel, int64_t count, const Body& body) {
  constexpr int64_t kChunkElements = int64_t(1) << 16;
  parallel((count + kChunkElements - 1) / kChunkElements, [&](int64_t chunk) {
    const int64_t begin = chunk * kChunkElements;
    body(begin, std::min(count, begin + kChunkElements));
  });
}

OrtStatus* compute(const Kernel& kernel, OrtKernelContext* context) {
  const OrtValue* input = nullptr;
  DCF_TRY(api().KernelContext_GetInput(context, 0, &input));
  OrtTensorTypeAndShapeInfo* info = nullptr;
  DCF_TRY(api().GetTensorTypeAndShape(input, &info));
  size_t rank = 0;
  OrtStatus* status = api().GetDimensionsCount(info, &rank);
  int64_t dims[5] = {};
  if (!status && rank == 5) status = api().GetDimensions(info, dims, 5);
  api().ReleaseTensorTypeAndShapeInfo(info);
  if (status) return status;
  if (rank != 5) return error(ORT_INVALID_ARGUMENT, "expects a 5-D input (N, C, T, H, W), got rank " + std::to_string(rank));
  const Shape shape{dims[0], dims[1], dims[2], dims[3], dims[4], int(kernel.kernel_size), int(kernel.temporal_range)};
  if (shape.C < 1) return error(ORT_INVALID_ARGUMENT, "expects at least one channel");
  const int64_t out_dims[5] = {dims[0], shape.out_channels(), dims[2], dims[3], dims[4]};
  OrtValue* output = nullptr;
  DCF_TRY(api().KernelContext_GetOutput(context, 0, out_dims, 5, &output));
  void* x = nullptr;  // read only (GetTensorData is newer than API 17)
  void* y = nullptr;
  DCF_TRY(api().GetTensorMutableData(const_cast<OrtValue*>(input), &x));
  DCF_TRY(api().GetTensorMutableData(output, &y));
  const OrtParallel parallel{context};
  int result = 0;
  if (kernel.type == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) {
    result = forward<float>(static_cast<const float*>(x), static_cast<float*>(y), shape, parallel, forward_rows_f32);
  } else {  // float16: computed in float32 buffers, converted on the session's threads
    const int64_t in_count = dims[0] * dims[1] * dims[2] * dims[3] * dims[4];
    const int64_t out_count = in_count / dims[1] * shape.out_channels();
    std::vector<float> xf(static_cast<size_t>(in_count)), yf(static_cast<size_t>(out_count));
    const auto* xh = static_cast<const uint16_t*>(x);
    in_chunks(parallel, in_count, [&](int64_t begin, int64_t end) {
      for (int64_t k = begin; k < end; ++k) xf[size_t(k)] = half_to_float(xh[k]);
    });
    result = forward<float>(xf.data(), yf.data(), shape, parallel, forward_rows_f32);
    auto* yh = static_cast<uint16_t*>(y);
    in_chunks(parallel, out_count, [&](int64_t begin, int64_t end) {
      for (int64_t k = begin; k < end; ++k) yh[k] = float_to_half(yf[size_t(k)]);
    });
  }
  if (result != 0) return error(ORT_FAIL, "kernel failed with status " + std::to_string(result));
  return nullptr;
}

OrtStatus* ORT_API_CALL compute_kernel(void* kernel, OrtKernelContext* context) noexcept {
  try {
    return compute(*static_cast<const Kernel*>(kernel), context);
  } catch (const std::bad_alloc&) {
    return error(ORT_FAIL, "out of memory for the kernel's buffers");
  } catch (const std::exception& e) {
    return error(ORT_FAIL, e.what());
  } catch (...) {
    return error(ORT_FAIL, "failed");
  }
}

void ORT_API_CALL destroy_kernel(void* kernel) { delete static_cast<Kernel*>(kernel); }

ONNXTensorElementDataType ORT_API_CALL element_type(const OrtCustomOp* op, size_t) {
  return static_cast<const CorrelationOp*>(op)->type;
}

CorrelationOp make_op(ONNXTensorElementDataType type) {
  CorrelationOp op{};
  op.type = type;
  op.version = kApiVersion;  // ONNX Runtime reads only the fields of this version
  op.GetName = [](const OrtCustomOp*) { return kOp; };
  op.GetExecutionProviderType = [](const OrtCustomOp*) -> const char* { return nullptr; };  // CPU
  op.GetInputType = element_type;
  op.GetInputTypeCount = [](const OrtCustomOp*) -> size_t { return 1; };
  op.GetOutputType = element_type;
  op.GetOutputTypeCount = [](const OrtCustomOp*) -> size_t { return 1; };
  op.GetInputCharacteristic = [](const OrtCustomOp*, size_t) { return INPUT_OUTPUT_REQUIRED; };
  op.GetOutputCharacteristic = [](const OrtCustomOp*, size_t) { return INPUT_OUTPUT_REQUIRED; };
  op.GetInputMemoryType = [](const OrtCustomOp*, size_t) { return OrtMemTypeDefault; };
  op.GetVariadicInputMinArity = [](const OrtCustomOp*) { return 1; };
  op.GetVariadicInputHomogeneity = [](const OrtCustomOp*) { return 1; };
  op.GetVariadicOutputMinArity = [](const OrtCustomOp*) { return 1; };
  op.GetVariadicOutputHomogeneity = [](const OrtCustomOp*) { return 1; };
  op.CreateKernelV2 = create_kernel;
  op.KernelComputeV2 = compute_kernel;
  op.KernelDestroy = destroy_kernel;
  op.GetStartVersion = [](const OrtCustomOp*) { return 1; };
  op.GetEndVersion = [](const OrtCustomOp*) { return INT_MAX; };
  return op;
}

CorrelationOp g_ops[] = {make_op(ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT), make_op(ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16)};

}  // namespace

// The library's entry point, called once per SessionOptions it is registered with. The domains
// live as long as the library (sessions may outlive their options).
extern "C" __attribute__((visibility("default"))) OrtStatus* ORT_API_CALL
RegisterCustomOps(OrtSessionOptions* options, const OrtApiBase* api_base) noexcept {
  const OrtApi* table = api_base->GetApi(kApiVersion);
  if (table == nullptr) {
    char message[160];
    std::snprintf(message, sizeof message, "the dcf op library needs ONNX Runtime 1.17 or later; this is %s",
                  api_base->GetVersionString());
    return api_base->GetApi(1)->CreateStatus(ORT_FAIL, message);
  }
  g_api.store(table, std::memory_order_release);
  try {
    static std::mutex lock;
    static std::vector<OrtCustomOpDomain*> domains;
    const std::lock_guard<std::mutex> guard(lock);
    OrtCustomOpDomain* domain = nullptr;
    DCF_TRY(table->CreateCustomOpDomain(kDomain, &domain));
    domains.push_back(domain);
    for (CorrelationOp& op : g_ops) DCF_TRY(table->CustomOpDomain_Add(domain, &op));
    return table->AddCustomOpDomain(options, domain);
  } catch (...) {
    return error(ORT_FAIL, "out of memory registering the op");
  }
}
