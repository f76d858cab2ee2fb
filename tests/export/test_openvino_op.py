"""The correlation in OpenVINO: the C++ extension (compiled against the installed OpenVINO on first
use) against the pure-PyTorch reference op by op, and its fallback when it cannot be built."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from dcf.export.names import CORRELATION_DOMAIN, CORRELATION_OP
from dcf.ops.reference import correlation_reference

openvino = pytest.importorskip("openvino", reason="needs the openvino extra (in the test extra)")
from dcf.export import openvino_op  # noqa: E402  (imports openvino)

compiler = pytest.mark.skipif(
    shutil.which("c++") is None and shutil.which("g++") is None,
    reason="no C++ compiler to build the extension",
)


def correlation_file(tmp: Path, elem_type: int, kernel_size: int, temporal_range: int) -> Path:
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
        [helper.make_tensor_value_info("x", elem_type, [None] * 5)],
        [helper.make_tensor_value_info("y", elem_type, None)],
    )
    opsets = [helper.make_opsetid("", 18), helper.make_opsetid(CORRELATION_DOMAIN, 1)]
    path = tmp / f"correlation_{elem_type}_{kernel_size}_{temporal_range}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=opsets), str(path))
    return path


def run(path: Path, x: np.ndarray, threads: int = 2) -> np.ndarray:
    core = openvino_op.openvino_core()
    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads}
    compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
    return np.array(compiled.create_infer_request().infer({"x": x}).to_tuple()[0])


@compiler
def test_the_extension_builds_against_this_openvino() -> None:
    path = openvino_op.compiled_extension()
    assert path is not None and path.is_file() and path.parent.parent == openvino_op.cache_dir()


@compiler
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(
    ("shape", "kernel_size", "temporal_range"),
    [((2, 5, 4, 7, 9), 3, 1), ((1, 12, 6, 10, 8), 5, 2), ((1, 4, 5, 6, 6), 11, 3), ((1, 3, 4, 9, 8), 13, 1)],
)
def test_the_extension_matches_the_reference_in_float32(
    tmp_path: Path, shape: tuple[int, ...], kernel_size: int, temporal_range: int, threads: int
) -> None:
    """Windows up to 11 on the kernel, 13 on the direct loop."""
    assert openvino_op.compiled_extension() is not None
    x = np.random.default_rng(sum(shape)).standard_normal(shape, dtype=np.float32)
    y = run(correlation_file(tmp_path, TensorProto.FLOAT, kernel_size, temporal_range), x, threads)
    expected = correlation_reference(torch.from_numpy(x).double(), kernel_size, temporal_range).numpy()
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=0, atol=1e-5 * np.abs(expected).max())


@compiler
def test_the_extension_in_float16_is_float32_rounded_once(tmp_path: Path) -> None:
    assert openvino_op.compiled_extension() is not None
    x = np.random.default_rng(3).standard_normal((2, 8, 5, 9, 7)).astype(np.float16)
    y = run(correlation_file(tmp_path, TensorProto.FLOAT16, 5, 2), x)
    expected = correlation_reference(torch.from_numpy(x).double(), 5, 2).numpy()
    np.testing.assert_allclose(
        y.astype(np.float64), expected, rtol=2**-11, atol=1e-5 * np.abs(expected).max()
    )


def test_the_python_operation_when_the_extension_cannot_be_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A compiler that fails: one warning with its output, nothing cached, and the Python
    operation gives the same volume."""
    monkeypatch.setenv("DCF_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("CXX", str(shutil.which("false")))
    monkeypatch.setattr(shutil, "which", lambda name: str(Path("/bin/false")) if name else None)
    with caplog.at_level(logging.WARNING):
        assert openvino_op.compiled_extension.__wrapped__() is None
    assert "compiling the OpenVINO correlation extension failed" in caplog.text
    assert not list((tmp_path / "cache").rglob("*.so"))
    monkeypatch.setattr(openvino_op, "compiled_extension", lambda: None)
    x = np.random.default_rng(5).standard_normal((1, 6, 4, 8, 8), dtype=np.float32)
    y = run(correlation_file(tmp_path, TensorProto.FLOAT, 5, 2), x)
    expected = correlation_reference(torch.from_numpy(x).double(), 5, 2).numpy()
    np.testing.assert_allclose(y, expected, rtol=0, atol=1e-5 * np.abs(expected).max())
