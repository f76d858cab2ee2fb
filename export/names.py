"""Names shared by the exporter, the TensorRT plugin and the server (DESIGN.md section 3)."""

CORRELATION_DOMAIN = "dcf"  # ONNX domain of the custom node
CORRELATION_OP = "DCFCorrelation"  # ONNX op_type == TensorRT plugin name
CORRELATION_OP_VERSION = 1  # ONNX opset version of the domain
# The TensorRT plugin's version and namespace (kCorrelationPluginVersion in trt_plugins/), written
# into each node for the ONNX parser's plugin fallback; a test reads the plugin's header.
PLUGIN_VERSION = "1"
PLUGIN_NAMESPACE = ""

INPUT_NAME = "video"  # (batch, 3, frames, height, width), float32, normalised with the input spec
OUTPUT_NAME = "logits"  # (batch, classes), float32
SIZE_STRIDE = 32  # total spatial stride of every model in the zoo: dynamic sizes are multiples of it
MAX_FRAMES = 1024  # the largest dynamic frames axis an export takes
MAX_SIZE = 64 * SIZE_STRIDE  # the largest dynamic height or width
