"""The ``onnx`` reference evaluator with a Python implementation of ``dcf::DCFCorrelation``: it
runs custom-node files on any CPU (the ``onnx-reference`` backend of :mod:`dcf.inference.backends`).

It is slow (NumPy convolutions) and exists so that the custom-node graph, whose production runtime
is TensorRT with the plugin, can be checked on any machine.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
import torch
from onnx.reference import ReferenceEvaluator
from onnx.reference.op_run import OpRun

from dcf.export.names import CORRELATION_DOMAIN, OUTPUT_NAME
from dcf.ops.reference import correlation_reference


class DCFCorrelation(OpRun):
    """``dcf::DCFCorrelation`` for :class:`onnx.reference.ReferenceEvaluator` (the class name is
    the op_type): :func:`dcf.ops.correlation_reference` on the node's input."""

    op_domain = CORRELATION_DOMAIN

    def _run(
        self,
        x: np.ndarray,
        kernel_size: int | None = None,
        temporal_range: int | None = None,
        plugin_version: str | None = None,  # TensorRT's, ignored here
        plugin_namespace: str | None = None,
    ) -> Any:
        if kernel_size is None or temporal_range is None:
            raise ValueError("DCFCorrelation: the kernel_size and temporal_range attributes are required")
        y = correlation_reference(
            torch.from_numpy(np.ascontiguousarray(x)), int(kernel_size), int(temporal_range)
        )
        return (y.numpy(),)


def reference_evaluator(model: onnx.ModelProto) -> ReferenceEvaluator:
    """A reference evaluator that knows the custom node."""
    return ReferenceEvaluator(model, new_ops=[DCFCorrelation])


def reference_runner(model: onnx.ModelProto) -> Callable[[np.ndarray], np.ndarray]:
    """Logits of a float32 batch from an exported model, in the reference evaluator."""
    evaluator = reference_evaluator(model)
    input_name = model.graph.input[0].name

    def run(x: np.ndarray) -> np.ndarray:
        # Its Sigmoid evaluates both branches of a np.where; the overflow (inf, then inf/inf) it
        # warns about is in the discarded branch. Outputs are checked for being finite downstream.
        with np.errstate(over="ignore", invalid="ignore"):
            outputs = evaluator.run([OUTPUT_NAME], {input_name: x})
        assert isinstance(outputs, list)  # a dict only when asked for intermediate values
        return np.asarray(outputs[0])

    return run
