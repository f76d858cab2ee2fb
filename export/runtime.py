"""Running exported models on CPU: ONNX Runtime for portable files, and the ``onnx`` reference
evaluator, with a Python implementation of ``dcf::DCFCorrelation``, for custom-node files.

The reference evaluator is slow (NumPy convolutions) and exists so that the custom-node graph,
whose production runtime is TensorRT with the plugin, can be checked on any machine.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx.reference import ReferenceEvaluator
from onnx.reference.op_run import OpRun

from dcf.export.metadata import ModelMetadata, load_onnx, read_onnx_metadata
from dcf.export.names import CORRELATION_DOMAIN, OUTPUT_NAME
from dcf.ops.reference import correlation_reference

Runner = Callable[[np.ndarray], np.ndarray]  # float32 video batch -> float32 logits


class DCFCorrelation(OpRun):
    """``dcf::DCFCorrelation`` for :class:`onnx.reference.ReferenceEvaluator` (the class name is
    the op_type): :func:`dcf.ops.correlation_reference` on the node's input."""

    op_domain = CORRELATION_DOMAIN

    def _run(self, x: np.ndarray, kernel_size: int | None = None, temporal_range: int | None = None) -> Any:
        if kernel_size is None or temporal_range is None:
            raise ValueError("DCFCorrelation: the kernel_size and temporal_range attributes are required")
        y = correlation_reference(
            torch.from_numpy(np.ascontiguousarray(x)), int(kernel_size), int(temporal_range)
        )
        return (y.numpy(),)


def reference_evaluator(model: onnx.ModelProto) -> ReferenceEvaluator:
    """A reference evaluator that knows the custom node."""
    return ReferenceEvaluator(model, new_ops=[DCFCorrelation])


def onnxruntime_session(path: str | Path, threads: int = 0) -> Any:
    """An ONNX Runtime CPU session (``threads`` intra-op threads; 0 lets ONNX Runtime choose)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_runner(path: str | Path, threads: int = 0) -> tuple[Runner, ModelMetadata, str]:
    """A CPU runner for an exported file, its metadata and the runtime's name.

    Portable files run in ONNX Runtime; custom-node files in the reference evaluator (ONNX Runtime
    has no kernel for ``dcf::DCFCorrelation``).
    """
    model = load_onnx(path)
    metadata = read_onnx_metadata(model)
    if metadata.flavour == "portable":
        session = onnxruntime_session(path, threads)
        input_name = session.get_inputs()[0].name
        return (lambda x: session.run(None, {input_name: x})[0]), metadata, "onnxruntime"
    evaluator = reference_evaluator(model)
    input_name = model.graph.input[0].name

    def run(x: np.ndarray) -> np.ndarray:
        # Its Sigmoid evaluates both branches of a np.where; the overflow (inf, then inf/inf) it
        # warns about is in the discarded branch. Outputs are checked for being finite downstream.
        with np.errstate(over="ignore", invalid="ignore"):
            outputs = evaluator.run([OUTPUT_NAME], {input_name: x})
        assert isinstance(outputs, list)  # a dict only when asked for intermediate values
        return np.asarray(outputs[0])

    return run, metadata, "onnx-reference"
