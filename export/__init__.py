"""Export of DCF models: ONNX (custom node or portable), TensorRT engines, and verification."""
