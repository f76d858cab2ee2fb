// OpenVINO extension: dcf::DCFCorrelation (DESIGN.md sections 1 and 2) as an OpenVINO operation on
// the compiled CPU kernel (correlation_kernel.h), and the ONNX frontend's mapping of the custom
// node onto it, so OpenVINO reads custom-node ONNX files. Loaded with Core.add_extension
// (dcf/export/openvino_op.py, which compiles it against the installed OpenVINO's own headers and
// libraries the first time, and otherwise falls back to its Python operation).
//
// The kernel's rows run with oneTBB's parallel_for inside OpenVINO's own task arena: OpenVINO's
// worker threads, not a second pool competing with them for the cores. float16 inputs are
// computed in float32 and rounded once (OpenVINO's CPU plugin hands the op float32 behind
// Converts, so this serves other callers of evaluate). Windows above the kernel's 11 run a direct
// loop (slow, correct).
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/task_arena.h>

#include <climits>
#include <cmath>
#include <map>
#include <memory>
#include <openvino/core/extension.hpp>
#include <openvino/core/op_extension.hpp>
#include <openvino/frontend/onnx/extension/op.hpp>
#include <openvino/op/op.hpp>
#include <string>
#include <vector>

#include "correlation_kernel.h"

namespace {

struct Tbb {
  template <class Body>
  void operator()(int64_t count, const Body& body) const {
    tbb::parallel_for(int64_t(0), count, [&](int64_t item) { body(item); });
  }
};

// The definition, for windows the kernel is not specialised for: y[n, o, t, i, j] = C^-1/2 *
// sum_c x[n, c, t, i, j] * x[n, c, t + tau, i + dy, j + dx], zero outside.
void direct(const float* x, float* y, const Shape& s) {
  const int64_t r = s.K / 2, hw = s.H * s.W, thw = s.T * hw, plane = s.C * thw;
  const float scale = 1.0f / std::sqrt(float(s.C));
  Tbb{}(s.N * s.out_channels(), [&](int64_t item) {
    const int64_t n = item / s.out_channels(), o = item % s.out_channels();
    const int64_t index = o / (s.K * s.K), tau = tau_of(int(index), s.L), d = tau < 0 ? -tau : tau;
    const int64_t dy = (o / s.K % s.K - r) * d, dx = (o % s.K - r) * d;
    float* out = y + (n * s.out_channels() + o) * thw;
    for (int64_t t = 0; t < s.T; ++t)
      for (int64_t i = 0; i < s.H; ++i)
        for (int64_t j = 0; j < s.W; ++j) {
          const int64_t t2 = t + tau, i2 = i + dy, j2 = j + dx;
          float sum = 0;
          if (t2 >= 0 && t2 < s.T && i2 >= 0 && i2 < s.H && j2 >= 0 && j2 < s.W) {
            const float* a = x + n * plane + t * hw + i * s.W + j;
            const float* b = x + n * plane + t2 * hw + i2 * s.W + j2;
            for (int64_t c = 0; c < s.C; ++c) sum += a[c * thw] * b[c * thw];
          }
          out[t * hw + i * s.W + j] = sum * scale;
        }
  });
}

}  // namespace

namespace dcf {

class DCFCorrelation : public ov::op::Op {
 public:
  OPENVINO_OP("DCFCorrelation", "dcf");

  DCFCorrelation() = default;
  DCFCorrelation(const ov::Output<ov::Node>& x, int64_t kernel_size, int64_t temporal_range)
      : Op({x}), kernel_size_(kernel_size), temporal_range_(temporal_range) {
    constructor_validate_and_infer_types();
  }

  void validate_and_infer_types() override {
    const auto element = get_input_element_type(0);
    NODE_VALIDATION_CHECK(this, element == ov::element::f32 || element == ov::element::f16 || element.is_dynamic(),
                          "DCFCorrelation in OpenVINO runs float32 or float16 inputs, got ", element);
    NODE_VALIDATION_CHECK(this, get_input_size() == 1, "DCFCorrelation takes one input, got ", get_input_size());
    NODE_VALIDATION_CHECK(this, kernel_size_ >= 1 && kernel_size_ % 2 == 1 && kernel_size_ <= 32767,
                          "kernel_size must be a positive odd integer (up to 32767), got ", kernel_size_);
    NODE_VALIDATION_CHECK(this, temporal_range_ >= 1 && temporal_range_ <= INT_MAX / (2 * kernel_size_ * kernel_size_),
                          "temporal_range must be from 1 to ", INT_MAX / (2 * kernel_size_ * kernel_size_), ", got ",
                          temporal_range_);
    auto shape = get_input_partial_shape(0);
    NODE_VALIDATION_CHECK(this, shape.rank().is_dynamic() || shape.rank().get_length() == 5,
                          "DCFCorrelation takes a 5-D input (N, C, T, H, W), got ", shape);
    if (shape.rank().is_static()) {
      NODE_VALIDATION_CHECK(this, shape[1].is_dynamic() || shape[1].get_length() >= 1,
                            "DCFCorrelation expects at least one channel, got ", shape);
      shape[1] = kernel_size_ * kernel_size_ * 2 * temporal_range_;
    }
    set_output_type(0, element, shape);
  }

  std::shared_ptr<ov::Node> clone_with_new_inputs(const ov::OutputVector& inputs) const override {
    check_new_args_count(this, inputs);
    return std::make_shared<DCFCorrelation>(inputs.at(0), kernel_size_, temporal_range_);
  }

  bool visit_attributes(ov::AttributeVisitor& visitor) override {
    visitor.on_attribute("kernel_size", kernel_size_);
    visitor.on_attribute("temporal_range", temporal_range_);
    return true;
  }

  bool has_evaluate() const override {
    const auto element = get_input_element_type(0);
    return element == ov::element::f32 || element == ov::element::f16;
  }

  bool evaluate(ov::TensorVector& outputs, const ov::TensorVector& inputs) const override {
    const ov::Shape in = inputs[0].get_shape();
    const Shape shape{int64_t(in[0]), int64_t(in[1]), int64_t(in[2]), int64_t(in[3]), int64_t(in[4]),
                      int(kernel_size_), int(temporal_range_)};
    outputs[0].set_shape({in[0], size_t(shape.out_channels()), in[2], in[3], in[4]});
    if (shape.C < 1) return false;
    if (inputs[0].get_element_type() == ov::element::f32) return run(inputs[0].data<const float>(), outputs[0].data<float>(), shape);
    // float16: through float32 buffers, converted on OpenVINO's threads
    const size_t in_count = inputs[0].get_size(), out_count = outputs[0].get_size();
    std::vector<float> xf(in_count), yf(out_count);
    const auto* xh = inputs[0].data<const ov::float16>();
    tbb::parallel_for(size_t(0), in_count, [&](size_t k) { xf[k] = float(xh[k]); });
    if (!run(xf.data(), yf.data(), shape)) return false;
    auto* yh = outputs[0].data<ov::float16>();
    tbb::parallel_for(size_t(0), out_count, [&](size_t k) { yh[k] = ov::float16(yf[k]); });
    return true;
  }

 private:
  static bool run(const float* x, float* y, const Shape& shape) {
    if (shape.K > kMaxKernelSize) {
      tbb::this_task_arena::isolate([&] { direct(x, y, shape); });
      return true;
    }
    // Isolated: a thread waiting in the loop takes no other task, which could reach another
    // evaluate and reuse this thread's scratch while it is in use.
    return tbb::this_task_arena::isolate([&] { return forward<float>(x, y, shape, Tbb{}, forward_rows_f32) == 0; });
  }

  int64_t kernel_size_ = 5;
  int64_t temporal_range_ = 2;
};

}  // namespace dcf

OPENVINO_CREATE_EXTENSIONS(std::vector<ov::Extension::Ptr>(
    {std::make_shared<ov::OpExtension<dcf::DCFCorrelation>>(),
     std::make_shared<ov::frontend::onnx::OpExtension<dcf::DCFCorrelation>>(
         "DCFCorrelation", "dcf",
         std::map<std::string, std::string>{{"kernel_size", "kernel_size"}, {"temporal_range", "temporal_range"}})}));
