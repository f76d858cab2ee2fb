"""The correlation as an OpenVINO operation, so OpenVINO runs custom-node ONNX files.

OpenVINO runs the portable graph (:mod:`dcf.export.portable`) too, but there the correlation's
MatMul/Slice/Pad chains and the layout changes around them cost 35-85% on top of the backbone
(issue #15). :class:`DCFCorrelation` is an OpenVINO operation whose ``evaluate`` runs the compiled CPU
kernel (``dcf/ops/csrc/correlation_cpu.cpp``) on OpenVINO's own buffers, and an ONNX frontend
conversion maps each ``dcf::DCFCorrelation`` node onto it: :func:`openvino_core` gives a
``Core`` that reads both kinds of file.

The kernel runs on one thread inside OpenVINO: OpenVINO calls the operation from one of its own
worker threads, and a second (OpenMP) pool there fights OpenVINO's spinning workers for the cores
(R(2+1)D-50's first correlation took 14-20 ms on two threads there
against 5 ms on one, on this project's 2-core machine). Without the compiled
kernel (or for windows above its 11) the op falls back to PyTorch's path, correct and slower.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import openvino
import torch
from openvino.frontend.onnx import ConversionExtension

from dcf.export.names import CORRELATION_DOMAIN, CORRELATION_OP
from dcf.ops import _cpu_kernel

KERNEL_THREADS = 1


class DCFCorrelation(openvino.Op):
    """``y = correlation(x, kernel_size, temporal_range)`` (DESIGN.md section 1); float32, and
    float16 (the fp16 export) computed in float32 and rounded once."""

    def __init__(
        self, inputs: list[Any] | None = None, kernel_size: int = 5, temporal_range: int = 2
    ) -> None:
        # Set before the base constructor: it validates the node, which reads them.
        self.kernel_size, self.temporal_range = int(kernel_size), int(temporal_range)
        super().__init__(self, inputs or [])

    @property
    def out_channels(self) -> int:
        return self.kernel_size * self.kernel_size * 2 * self.temporal_range

    def validate_and_infer_types(self) -> None:
        element = self.get_input_element_type(0)
        if element not in (openvino.Type.f32, openvino.Type.f16, openvino.Type.dynamic):
            raise ValueError(f"{CORRELATION_OP} in OpenVINO runs float32 or float16 inputs, got {element}")
        shape = self.get_input_partial_shape(0)
        if shape.rank.is_static and shape.rank.get_length() != 5:
            raise ValueError(f"{CORRELATION_OP} takes a 5-D input (N, C, T, H, W), got {shape}")
        if shape.rank.is_static:
            out = openvino.PartialShape([shape[0], openvino.Dimension(self.out_channels), *list(shape)[2:]])
        else:
            out = openvino.PartialShape.dynamic(5)
        self.set_output_type(0, element, out)

    def clone_with_new_inputs(self, new_inputs: list[Any]) -> DCFCorrelation:
        return DCFCorrelation(new_inputs, self.kernel_size, self.temporal_range)

    def visit_attributes(self, visitor: Any) -> bool:
        visitor.on_attributes({"kernel_size": self.kernel_size, "temporal_range": self.temporal_range})
        return True

    def has_evaluate(self) -> bool:
        return True

    def evaluate(self, outputs: list[Any], inputs: list[Any]) -> bool:
        x = np.ascontiguousarray(inputs[0].data, dtype=np.float32)
        n, _, t, h, w = x.shape
        outputs[0].shape = [n, self.out_channels, t, h, w]
        out = outputs[0].data
        y = out if out.dtype == np.float32 else np.empty(out.shape, np.float32)
        if _cpu_kernel.available() and self.kernel_size <= _cpu_kernel.MAX_KERNEL_SIZE:
            _cpu_kernel.forward_into(x, y, self.kernel_size, self.temporal_range, KERNEL_THREADS)
        else:
            from dcf.ops import correlation

            with torch.inference_mode():
                y[...] = correlation(torch.from_numpy(x), self.kernel_size, self.temporal_range).numpy()
        if y is not out:
            out[...] = y
        return True


def _convert(node: Any) -> list[Any]:
    """The ONNX frontend's conversion of one ``dcf::DCFCorrelation`` node."""
    op = DCFCorrelation(
        [node.get_input(0)], node.get_attribute("kernel_size"), node.get_attribute("temporal_range")
    )
    return op.outputs()


def openvino_core() -> openvino.Core:
    """An OpenVINO ``Core`` that reads custom-node ONNX files. (No IR: an ONNX file reads and
    compiles in 0.15-0.2 s for X3D-S and 0.25-0.35 s for R(2+1)D-50 here, so IR would not start a server faster.)"""
    core = openvino.Core()
    core.add_extension(ConversionExtension(CORRELATION_OP, CORRELATION_DOMAIN, _convert))
    return core
