"""Names shared by the exporter, the TensorRT plugin and the server (DESIGN.md section 3)."""

CORRELATION_DOMAIN = "dcf"  # ONNX domain of the custom node
CORRELATION_OP = "DCFCorrelation"  # ONNX op_type == TensorRT plugin name
CORRELATION_OP_VERSION = 1  # ONNX opset version of the domain; the plugin version is its string

INPUT_NAME = "video"  # (batch, 3, frames, height, width), float32, normalised with the input spec
OUTPUT_NAME = "logits"  # (batch, classes), float32
