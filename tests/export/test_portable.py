"""The portable correlation graph against the op's reference, node by node."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from dcf.export.names import CORRELATION_DOMAIN, CORRELATION_OP
from dcf.export.onnx_reference import reference_evaluator
from dcf.export.portable import make_portable
from dcf.inference.backends import onnxruntime_session
from dcf.ops import correlation_reference

# float32: the MatMul reduction order differs from the reference's; values are O(1).
ATOL, RTOL = 1e-5, 1e-5


def single_node_model(
    kernel_size: int, temporal_range: int, elem_type: int = TensorProto.FLOAT
) -> onnx.ModelProto:
    """A graph of one custom node with dynamic N, T, H, W (C fixed at 6)."""
    channels = kernel_size * kernel_size * 2 * temporal_range
    node = helper.make_node(
        CORRELATION_OP,
        ["x"],
        ["y"],
        domain=CORRELATION_DOMAIN,
        name="corr",
        kernel_size=kernel_size,
        temporal_range=temporal_range,
    )
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", elem_type, ["n", 6, "t", "h", "w"])],
        [helper.make_tensor_value_info("y", elem_type, ["n", channels, "t", "h", "w"])],
    )
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid(CORRELATION_DOMAIN, 1)]
    )


def run_portable(model: onnx.ModelProto, x: np.ndarray, tmp_path) -> np.ndarray:
    path = tmp_path / "portable.onnx"
    onnx.save(make_portable(model), str(path))
    session = onnxruntime_session(path, threads=1)
    return session.run(None, {"x": x})[0]


@pytest.mark.parametrize(("kernel_size", "temporal_range"), [(1, 1), (3, 1), (3, 3), (5, 1), (5, 2), (7, 2)])
def test_portable_matches_reference(kernel_size: int, temporal_range: int, tmp_path) -> None:
    model = single_node_model(kernel_size, temporal_range)
    path = tmp_path / "portable.onnx"
    onnx.save(make_portable(model), str(path))
    session = onnxruntime_session(path, threads=1)
    rng = np.random.default_rng(kernel_size * 10 + temporal_range)
    # One graph, several shapes: batch 3, one frame, frames fewer than L, non-square, H and W
    # smaller than the dilated window.
    for shape in [(3, 6, 5, 9, 11), (1, 6, 1, 7, 7), (2, 6, 2, 12, 5), (1, 6, 6, 3, 2)]:
        x = rng.standard_normal(shape, dtype=np.float32)
        expected = correlation_reference(torch.from_numpy(x), kernel_size, temporal_range).numpy()
        actual = session.run(None, {"x": x})[0]
        np.testing.assert_allclose(actual, expected, atol=ATOL, rtol=RTOL, err_msg=f"shape {shape}")


def test_portable_uses_standard_ops_only() -> None:
    portable = make_portable(single_node_model(5, 2))
    assert {n.domain for n in portable.graph.node} == {""}
    assert CORRELATION_DOMAIN not in {o.domain for o in portable.opset_import}
    assert "MatMul" in {n.op_type for n in portable.graph.node}
    onnx.checker.check_model(portable, full_check=True)


def test_portable_float16(tmp_path) -> None:
    model = single_node_model(5, 2, TensorProto.FLOAT16)
    x = np.random.default_rng(3).standard_normal((2, 6, 4, 8, 8)).astype(np.float16)
    expected = correlation_reference(torch.from_numpy(x).double(), 5, 2).numpy()
    actual = run_portable(model, x, tmp_path)
    assert actual.dtype == np.float16
    np.testing.assert_allclose(actual.astype(np.float64), expected, atol=1e-2, rtol=1e-2)


def test_reference_evaluator_runs_the_custom_node() -> None:
    x = np.random.default_rng(4).standard_normal((2, 6, 3, 6, 7), dtype=np.float32)
    (actual,) = reference_evaluator(single_node_model(3, 2)).run(None, {"x": x})
    expected = correlation_reference(torch.from_numpy(x), 3, 2).numpy()
    np.testing.assert_allclose(actual, expected, atol=ATOL, rtol=RTOL)
