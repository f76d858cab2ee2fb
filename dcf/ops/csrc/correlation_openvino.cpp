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
//
// OpenVINO's CPU plugin runs an extension op in the planar layout only, and reorders its output
// once per consumer into the layout each consumer prefers (its convolutions' blocked layouts): a
// volume read by a convolution and by a pooling was transposed twice, the largest single cost DCF
// added there (issue #15). The fusion pass in dcf/export/openvino_op.py therefore hands the op
// what reads its volume:
// * the spatial pyramid (DESIGN.md section 2), AvgPool nodes on the volume: the optional attribute
//   `pyramid_levels` (0 from the ONNX node) makes the op also return the volume pooled 2x2 once,
//   twice, ... as outputs 1..levels;
// * the DCF block's 1x1x1 convolution of the volume, where it has fewer output channels than the
//   volume: DCFCorrelationConv, whose output 0 is that convolution's output, computed row by row
//   from the volume in the cache (correlation_conv), so the volume is never written or reordered.
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

// ceil(d / 2), bounds kept (an unbounded maximum, -1, stays unbounded).
ov::Dimension halved(const ov::Dimension& d) {
  if (d.is_static()) return ov::Dimension((d.get_length() + 1) / 2);
  const int64_t min = d.get_min_length(), max = d.get_max_length();
  return ov::Dimension((min + 1) / 2, max < 0 ? -1 : (max + 1) / 2);
}

}  // namespace

namespace dcf {

// What DCFCorrelation and DCFCorrelationConv share: the window's attributes, the pyramid's
// outputs (1..pyramid_levels: the volume pooled 2x2 once, twice, ...) and the evaluation around
// the kernel (float16 computed in float32 and rounded once; the pyramid's later levels).
class CorrelationOp : public ov::op::Op {
 public:
  bool visit_attributes(ov::AttributeVisitor& visitor) override {
    visitor.on_attribute("kernel_size", kernel_size_);
    visitor.on_attribute("temporal_range", temporal_range_);
    visitor.on_attribute("pyramid_levels", pyramid_levels_);
    return true;
  }

  bool has_evaluate() const override {
    const auto element = get_input_element_type(0);
    return element == ov::element::f32 || element == ov::element::f16;
  }

 protected:
  CorrelationOp() = default;
  CorrelationOp(const ov::OutputVector& inputs, int64_t kernel_size, int64_t temporal_range, int64_t pyramid_levels)
      : Op(inputs), kernel_size_(kernel_size), temporal_range_(temporal_range), pyramid_levels_(pyramid_levels) {}

  int64_t volume_channels() const { return kernel_size_ * kernel_size_ * 2 * temporal_range_; }

  // Checks the attributes and x, and types the outputs: output 0 with `channels` channels, the
  // pyramid's levels with the volume's.
  void infer_outputs(const ov::Dimension& channels) {
    const auto element = get_input_element_type(0);
    NODE_VALIDATION_CHECK(this, element == ov::element::f32 || element == ov::element::f16 || element.is_dynamic(),
                          get_type_name(), " in OpenVINO runs float32 or float16 inputs, got ", element);
    NODE_VALIDATION_CHECK(this, kernel_size_ >= 1 && kernel_size_ % 2 == 1 && kernel_size_ <= 32767,
                          "kernel_size must be a positive odd integer (up to 32767), got ", kernel_size_);
    NODE_VALIDATION_CHECK(this, temporal_range_ >= 1 && temporal_range_ <= INT_MAX / (2 * kernel_size_ * kernel_size_),
                          "temporal_range must be from 1 to ", INT_MAX / (2 * kernel_size_ * kernel_size_), ", got ",
                          temporal_range_);
    NODE_VALIDATION_CHECK(this, pyramid_levels_ >= 0 && pyramid_levels_ <= 16, "pyramid_levels must be from 0 to 16, got ",
                          pyramid_levels_);
    set_output_size(size_t(1 + pyramid_levels_));
    auto shape = get_input_partial_shape(0);
    NODE_VALIDATION_CHECK(this, shape.rank().is_dynamic() || shape.rank().get_length() == 5, get_type_name(),
                          " takes a 5-D input (N, C, T, H, W), got ", shape);
    if (shape.rank().is_dynamic()) {
      for (int64_t level = 0; level <= pyramid_levels_; ++level) set_output_type(size_t(level), element, shape);
      return;
    }
    NODE_VALIDATION_CHECK(this, shape[1].is_dynamic() || shape[1].get_length() >= 1, get_type_name(),
                          " expects at least one channel, got ", shape);
    auto first = shape;
    first[1] = channels;
    set_output_type(0, element, first);
    shape[1] = volume_channels();
    for (int64_t level = 1; level <= pyramid_levels_; ++level) {
      shape[3] = halved(shape[3]), shape[4] = halved(shape[4]);
      set_output_type(size_t(level), element, shape);
    }
  }

  // Evaluates through `first(x, shape, y0, y1)`, which computes output 0 into y0 and, given a
  // y1, the pyramid's first level; the levels after it are pooled here. Outputs are float32
  // buffers (the outputs themselves for a float32 x).
  template <class First>
  bool evaluate_outputs(ov::TensorVector& outputs, const ov::TensorVector& inputs, int64_t channels,
                        const First& first) const {
    const ov::Shape in = inputs[0].get_shape();
    const Shape shape{int64_t(in[0]), int64_t(in[1]), int64_t(in[2]), int64_t(in[3]), int64_t(in[4]),
                      int(kernel_size_), int(temporal_range_)};
    if (shape.C < 1 || outputs.size() != size_t(1 + pyramid_levels_)) return false;
    std::vector<ov::Shape> shapes{{in[0], size_t(channels), in[2], in[3], in[4]}};
    for (int64_t level = 1; level <= pyramid_levels_; ++level) {
      ov::Shape pooled = level == 1 ? ov::Shape{in[0], size_t(volume_channels()), in[2], in[3], in[4]} : shapes.back();
      pooled[3] = (pooled[3] + 1) / 2, pooled[4] = (pooled[4] + 1) / 2;
      shapes.push_back(pooled);
    }
    const bool f32 = inputs[0].get_element_type() == ov::element::f32;
    std::vector<std::vector<float>> owned(f32 ? 0 : shapes.size());
    std::vector<float*> y(shapes.size());
    for (size_t k = 0; k < shapes.size(); ++k) {
      outputs[k].set_shape(shapes[k]);
      if (f32) {
        y[k] = outputs[k].data<float>();
      } else {
        owned[k].resize(ov::shape_size(shapes[k]));
        y[k] = owned[k].data();
      }
    }
    std::vector<float> xf;  // float16: the input converted on OpenVINO's threads
    const float* x = f32 ? inputs[0].data<const float>() : nullptr;
    if (!f32) {
      const size_t count = inputs[0].get_size();
      xf.resize(count);
      const auto* xh = inputs[0].data<const ov::float16>();
      tbb::parallel_for(size_t(0), count, [&](size_t k) { xf[k] = float(xh[k]); });
      x = xf.data();
    }
    // Isolated: a thread waiting in the loop takes no other task, which could reach another
    // evaluate and reuse this thread's scratch while it is in use.
    if (!tbb::this_task_arena::isolate([&] { return first(x, shape, y[0], pyramid_levels_ ? y[1] : nullptr); })) {
      return false;
    }
    for (size_t k = 2; k < shapes.size(); ++k) {
      const ov::Shape& from = shapes[k - 1];
      tbb::this_task_arena::isolate(
          [&] { pyramid_step(y[k - 1], y[k], int64_t(from[0] * from[1] * from[2]), int64_t(from[3]), int64_t(from[4]), Tbb{}); });
    }
    if (!f32) {
      for (size_t k = 0; k < shapes.size(); ++k) {
        auto* yh = outputs[k].data<ov::float16>();
        tbb::parallel_for(size_t(0), owned[k].size(), [&](size_t e) { yh[e] = ov::float16(owned[k][e]); });
      }
    }
    return true;
  }

  int64_t kernel_size_ = 5;
  int64_t temporal_range_ = 2;
  int64_t pyramid_levels_ = 0;
};

// The correlation: output 0 the volume (N, K*K*2L, T, H, W).
class DCFCorrelation : public CorrelationOp {
 public:
  OPENVINO_OP("DCFCorrelation", "dcf");

  DCFCorrelation() = default;
  DCFCorrelation(const ov::Output<ov::Node>& x, int64_t kernel_size, int64_t temporal_range, int64_t pyramid_levels = 0)
      : CorrelationOp({x}, kernel_size, temporal_range, pyramid_levels) {
    constructor_validate_and_infer_types();
  }

  void validate_and_infer_types() override {
    NODE_VALIDATION_CHECK(this, get_input_size() == 1, "DCFCorrelation takes one input, got ", get_input_size());
    infer_outputs(volume_channels());
  }

  std::shared_ptr<ov::Node> clone_with_new_inputs(const ov::OutputVector& inputs) const override {
    check_new_args_count(this, inputs);
    return std::make_shared<DCFCorrelation>(inputs.at(0), kernel_size_, temporal_range_, pyramid_levels_);
  }

  bool evaluate(ov::TensorVector& outputs, const ov::TensorVector& inputs) const override {
    return evaluate_outputs(outputs, inputs, volume_channels(), [](const float* x, const Shape& s, float* y, float* y1) {
      if (s.K > kMaxKernelSize) {
        direct(x, y, s);
      } else if (forward<float>(x, y, s, Tbb{}, forward_rows_f32) != 0) {
        return false;
      }
      if (y1) pyramid_step(y, y1, s.N * s.out_channels() * s.T, s.H, s.W, Tbb{});
      return true;
    });
  }
};

// The correlation and the 1x1x1 convolution that reads its volume, in one pass
// (correlation_conv in correlation_kernel.h): input 1 the convolution's float32 weight
// (Q, K*K*2L, 1, 1, 1), output 0 the convolution's output (N, Q, T, H, W); the volume itself is
// never written, only its pyramid levels where asked. Made by the fusion pass in
// dcf/export/openvino_op.py, never read from a file.
class DCFCorrelationConv : public CorrelationOp {
 public:
  OPENVINO_OP("DCFCorrelationConv", "dcf");

  DCFCorrelationConv() = default;
  DCFCorrelationConv(const ov::Output<ov::Node>& x, const ov::Output<ov::Node>& weight, int64_t kernel_size,
                     int64_t temporal_range, int64_t pyramid_levels = 0)
      : CorrelationOp({x, weight}, kernel_size, temporal_range, pyramid_levels) {
    constructor_validate_and_infer_types();
  }

  void validate_and_infer_types() override {
    NODE_VALIDATION_CHECK(this, get_input_size() == 2, "DCFCorrelationConv takes two inputs (x, weight), got ",
                          get_input_size());
    NODE_VALIDATION_CHECK(this, kernel_size_ <= kMaxKernelSize, "DCFCorrelationConv runs windows up to ",
                          kMaxKernelSize, ", got ", kernel_size_);
    NODE_VALIDATION_CHECK(this, get_input_element_type(1) == ov::element::f32,
                          "DCFCorrelationConv takes a float32 weight, got ", get_input_element_type(1));
    const auto& weight = get_input_partial_shape(1);
    NODE_VALIDATION_CHECK(this,
                          weight.is_static() && weight.size() == 5 && weight[0].get_length() >= 1 &&
                              weight[1].get_length() == volume_channels() && weight[2] == 1 && weight[3] == 1 &&
                              weight[4] == 1,
                          "DCFCorrelationConv takes a weight (Q, ", volume_channels(), ", 1, 1, 1), got ", weight);
    infer_outputs(weight[0]);
  }

  std::shared_ptr<ov::Node> clone_with_new_inputs(const ov::OutputVector& inputs) const override {
    check_new_args_count(this, inputs);
    return std::make_shared<DCFCorrelationConv>(inputs.at(0), inputs.at(1), kernel_size_, temporal_range_,
                                                pyramid_levels_);
  }

  bool evaluate(ov::TensorVector& outputs, const ov::TensorVector& inputs) const override {
    if (inputs.size() != 2 || inputs[1].get_element_type() != ov::element::f32) return false;
    const ov::Shape weight = inputs[1].get_shape();
    if (weight.size() != 5 || weight[0] < 1 || int64_t(weight[1]) != volume_channels() || ov::shape_size(weight) != weight[0] * weight[1]) {
      return false;
    }
    const float* w = inputs[1].data<const float>();
    const int64_t Q = int64_t(weight[0]);
    return evaluate_outputs(outputs, inputs, Q, [&](const float* x, const Shape& s, float* z, float* y1) {
      return correlation_conv<float>(x, w, Q, z, y1, s, Tbb{}, conv_rows_f32) == 0;
    });
  }
};

}  // namespace dcf

OPENVINO_CREATE_EXTENSIONS(std::vector<ov::Extension::Ptr>(
    {std::make_shared<ov::OpExtension<dcf::DCFCorrelation>>(), std::make_shared<ov::OpExtension<dcf::DCFCorrelationConv>>(),
     std::make_shared<ov::frontend::onnx::OpExtension<dcf::DCFCorrelation>>(
         "DCFCorrelation", "dcf",
         std::map<std::string, std::string>{{"kernel_size", "kernel_size"}, {"temporal_range", "temporal_range"}},
         std::map<std::string, ov::Any>{{"pyramid_levels", int64_t(0)}})}));
