"""ONNX graphs for testing one op in a runtime."""

from __future__ import annotations

import onnx
from onnx import helper

from dcf.export.names import CORRELATION_DOMAIN, CORRELATION_OP


def correlation_model(
    elem_type: int, kernel_size: int, temporal_range: int, rank: int = 5
) -> onnx.ModelProto:
    """One ``dcf::DCFCorrelation`` node from input ``x`` (``rank`` dynamic axes) to output ``y``."""
    node = helper.make_node(
        CORRELATION_OP,
        ["x"],
        ["y"],
        domain=CORRELATION_DOMAIN,
        kernel_size=kernel_size,
        temporal_range=temporal_range,
    )
    graph = helper.make_graph(
        [node],
        "correlation",
        [helper.make_tensor_value_info("x", elem_type, [None] * rank)],
        [helper.make_tensor_value_info("y", elem_type, None)],
    )
    opsets = [helper.make_opsetid("", 18), helper.make_opsetid(CORRELATION_DOMAIN, 1)]
    return helper.make_model(graph, opset_imports=opsets)
