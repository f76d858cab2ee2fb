// ONNX Runtime custom-op library: dcf::DCFCorrelation (DESIGN.md sections 1 and 2) on ONNX
// Runtime's CPU execution provider, on the compiled CPU kernel (correlation_kernel.h), so ONNX
// Runtime runs custom-node ONNX files. Loaded with SessionOptions.register_custom_ops_library
// (dcf/export/onnxruntime_op.py).
//
// The kernel's rows run on ONNX Runtime's own intra-op thread pool (KernelContext_ParallelFor):
// no second pool spins against it. float32 inputs are computed in place; float16 inputs (the
// fp16 export) are computed in float32 and rounded once.
//
// Only the C API is used, through the function table ONNX Runtime hands over: the library does
// not link against onnxruntime, and one build serves every ONNX Runtime from 1.17 (the first with
// KernelContext_ParallelFor) on. It compiles against onnxruntime_c_api.h (setup.py says where from).
#include <onnxruntime_c_api.h>

#include <climits>
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

const OrtApi* g_api = nullptr;

OrtStatus* error(OrtErrorCode code, const std::string& message) {
  return g_api->CreateStatus(code, ("dcf::DCFCorrelation: " + message).c_str());
}

// Runs the kernel's parallel loops on the session's intra-op threads.
struct OrtParallel {
  const OrtKernelContext* context;
  template <class Body>
  void operator()(int64_t count, const Body& body) const {
    auto call = [](void* data, size_t item) { (*static_cast<const Body*>(data))(int64_t(item)); };
    if (OrtStatus* status = g_api->KernelContext_ParallelFor(context, call, size_t(count), 0,
                                                             const_cast<Body*>(&body))) {
      const std::string message = g_api->GetErrorMessage(status);
      g_api->ReleaseStatus(status);
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

OrtStatus* ORT_API_CALL create_kernel(const OrtCustomOp* op, const OrtApi*, const OrtKernelInfo* info,
                                      void** out) {
  auto* kernel = new Kernel;
  kernel->type = static_cast<const CorrelationOp*>(op)->type;
  OrtStatus* status = g_api->KernelInfoGetAttribute_int64(info, "kernel_size", &kernel->kernel_size);
  if (!status) status = g_api->KernelInfoGetAttribute_int64(info, "temporal_range", &kernel->temporal_range);
  if (!status && (kernel->kernel_size < 1 || kernel->kernel_size > 11 || kernel->kernel_size % 2 == 0 ||
                  kernel->temporal_range < 1)) {
    status = error(ORT_INVALID_ARGUMENT, "kernel_size must be odd and at most 11, temporal_range at least 1; got " +
                                             std::to_string(kernel->kernel_size) + " and " +
                                             std::to_string(kernel->temporal_range));
  }
  if (status) {
    delete kernel;
    return status;
  }
  *out = kernel;
  return nullptr;
}

OrtStatus* compute(const Kernel& kernel, OrtKernelContext* context) {
  const OrtValue* input = nullptr;
  DCF_TRY(g_api->KernelContext_GetInput(context, 0, &input));
  OrtTensorTypeAndShapeInfo* info = nullptr;
  DCF_TRY(g_api->GetTensorTypeAndShape(input, &info));
  size_t rank = 0;
  OrtStatus* status = g_api->GetDimensionsCount(info, &rank);
  int64_t dims[5] = {};
  if (!status && rank == 5) status = g_api->GetDimensions(info, dims, 5);
  g_api->ReleaseTensorTypeAndShapeInfo(info);
  if (status) return status;
  if (rank != 5) return error(ORT_INVALID_ARGUMENT, "expects a 5-D input (N, C, T, H, W), got rank " + std::to_string(rank));
  const Shape shape{dims[0], dims[1], dims[2], dims[3], dims[4], int(kernel.kernel_size), int(kernel.temporal_range)};
  if (shape.C < 1) return error(ORT_INVALID_ARGUMENT, "expects at least one channel");
  const int64_t out_dims[5] = {dims[0], shape.out_channels(), dims[2], dims[3], dims[4]};
  OrtValue* output = nullptr;
  DCF_TRY(g_api->KernelContext_GetOutput(context, 0, out_dims, 5, &output));
  void* x = nullptr;  // read only (GetTensorData is newer than API 17)
  void* y = nullptr;
  DCF_TRY(g_api->GetTensorMutableData(const_cast<OrtValue*>(input), &x));
  DCF_TRY(g_api->GetTensorMutableData(output, &y));
  const OrtParallel parallel{context};
  int result = 0;
  if (kernel.type == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) {
    result = forward<float>(static_cast<const float*>(x), static_cast<float*>(y), shape, parallel, forward_rows_f32);
  } else {  // float16: through float32 buffers
    const int64_t in_count = dims[0] * dims[1] * dims[2] * dims[3] * dims[4];
    const int64_t out_count = in_count / dims[1] * shape.out_channels();
    std::vector<float> xf(static_cast<size_t>(in_count)), yf(static_cast<size_t>(out_count));
    const auto* xh = static_cast<const _Float16*>(x);
    for (int64_t k = 0; k < in_count; ++k) xf[size_t(k)] = float(xh[k]);
    result = forward<float>(xf.data(), yf.data(), shape, parallel, forward_rows_f32);
    auto* yh = static_cast<_Float16*>(y);
    for (int64_t k = 0; k < out_count; ++k) yh[k] = _Float16(yf[size_t(k)]);
  }
  if (result != 0) return error(ORT_FAIL, "kernel failed with status " + std::to_string(result));
  return nullptr;
}

OrtStatus* ORT_API_CALL compute_kernel(void* kernel, OrtKernelContext* context) {
  try {
    return compute(*static_cast<const Kernel*>(kernel), context);
  } catch (const std::bad_alloc&) {
    return error(ORT_FAIL, "out of memory for the padded copy of the input");
  } catch (const std::exception& e) {
    return error(ORT_FAIL, e.what());
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
RegisterCustomOps(OrtSessionOptions* options, const OrtApiBase* api_base) {
  static std::mutex lock;
  static std::vector<OrtCustomOpDomain*> domains;
  const std::lock_guard<std::mutex> guard(lock);
  const OrtApi* api = api_base->GetApi(kApiVersion);
  if (api == nullptr) {
    return api_base->GetApi(1)->CreateStatus(
        ORT_FAIL, (std::string("the dcf op library needs ONNX Runtime 1.17 or later; this is ") +
                   api_base->GetVersionString())
                      .c_str());
  }
  g_api = api;
  OrtCustomOpDomain* domain = nullptr;
  DCF_TRY(api->CreateCustomOpDomain(kDomain, &domain));
  domains.push_back(domain);
  for (CorrelationOp& op : g_ops) DCF_TRY(api->CustomOpDomain_Add(domain, &op));
  return api->AddCustomOpDomain(options, domain);
}
