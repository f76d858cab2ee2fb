"""ONNX graphs for testing one op in a runtime."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from dcf.export.names import CORRELATION_DOMAIN, CORRELATION_OP


def correlation_model(
    elem_type: int,
    kernel_size: int,
    temporal_range: int,
    rank: int = 5,
    *,
    pyramid_levels: int = 0,
    size: tuple[int, int] | None = None,
    ceil_mode: bool = False,
    convolution: np.ndarray | None = None,
    conv_attributes: dict[str, list[int]] | None = None,
    volume_output: bool = True,
) -> onnx.ModelProto:
    """One ``dcf::DCFCorrelation`` node from input ``x`` (``rank`` dynamic axes, or height and width
    ``size``) to output ``y``; with ``pyramid_levels``, the spatial pyramid's chain of 2x2 average
    poolings of ``y`` as the export writes it (``dcf.models.dcf_net.pool_pyramid``), each level an
    output too (``p1``, ``p2``, ...); with a ``convolution`` weight (an initializer of ``x``'s
    type), a Conv of ``y`` to output ``z``, the first output (the DCF block's conv2, with
    ``conv_attributes`` if given). ``volume_output=False`` leaves ``y`` out of the outputs."""
    nodes = [
        helper.make_node(
            CORRELATION_OP,
            ["x"],
            ["y"],
            domain=CORRELATION_DOMAIN,
            kernel_size=kernel_size,
            temporal_range=temporal_range,
        )
    ]
    outputs = ["y"]
    initializers = []
    if convolution is not None:
        initializers.append(numpy_helper.from_array(convolution, "w"))
        nodes.append(helper.make_node("Conv", ["y", "w"], ["z"], **(conv_attributes or {})))
    for level in range(1, pyramid_levels + 1):
        nodes.append(
            helper.make_node(
                "AveragePool",
                [outputs[-1]],
                [f"p{level}"],
                kernel_shape=[1, 2, 2],
                strides=[1, 2, 2],
                ceil_mode=int(ceil_mode),
                count_include_pad=1,  # as torch.onnx writes avg_pool3d's default
            )
        )
        outputs.append(f"p{level}")
    outputs = (["z"] if convolution is not None else []) + outputs[int(not volume_output) :]
    dims: list[int | None] = [None] * rank if size is None else [None, None, None, *size]
    graph = helper.make_graph(
        nodes,
        "correlation",
        [helper.make_tensor_value_info("x", elem_type, dims)],
        [helper.make_tensor_value_info(name, elem_type, None) for name in outputs],
        initializers,
    )
    opsets = [helper.make_opsetid("", 18), helper.make_opsetid(CORRELATION_DOMAIN, 1)]
    return helper.make_model(graph, opset_imports=opsets)
