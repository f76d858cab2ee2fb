"""Running a DCF model on videos, the same way wherever it runs.

- :mod:`dcf.inference.backends`: one protocol over PyTorch checkpoints, ONNX Runtime, the ONNX
  reference evaluator and TensorRT engines, and one loader for them.
- :mod:`dcf.inference.pipeline`: decode -> sample -> preprocess -> backend -> scores -> labels,
  with the request options declared once and domain errors that callers map as they need
  (``dcf serve`` to HTTP statuses, ``dcf predict`` to lines on the terminal).
"""
