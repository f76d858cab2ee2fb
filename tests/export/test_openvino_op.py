"""The correlation in OpenVINO: the C++ extension (compiled against the installed OpenVINO on first
use) against the pure-PyTorch reference op by op, the spatial pyramid's poolings fused into it
against the model's own pooling, and its fallback when it cannot be built."""

from __future__ import annotations

import functools
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto

from dcf.export.names import CORRELATION_DOMAIN, CORRELATION_OP
from dcf.ops.reference import correlation_reference
from tests.support.onnx_graphs import correlation_model

openvino = pytest.importorskip("openvino", reason="needs the openvino extra (in the test extra)")
from dcf.export import openvino_op  # noqa: E402  (imports openvino)

compiler = pytest.mark.skipif(
    shutil.which("c++") is None and shutil.which("g++") is None,
    reason="no C++ compiler to build the extension",
)


def correlation_file(tmp: Path, elem_type: int, kernel_size: int, temporal_range: int) -> Path:
    path = tmp / f"correlation_{elem_type}_{kernel_size}_{temporal_range}.onnx"
    onnx.save(correlation_model(elem_type, kernel_size, temporal_range), str(path))
    return path


def correlation_nodes(model: Any) -> list[Any]:
    return [node for node in model.get_ordered_ops() if node.get_type_name() == CORRELATION_OP]


def run(path: Path, x: np.ndarray, threads: int = 2, operation: str = "C++") -> np.ndarray:
    """``x`` through the file in OpenVINO, checking which operation the node became: the C++
    extension's (type version ``dcf``) or the Python one."""
    core = openvino_op.openvino_core()
    model = core.read_model(str(path))
    (node,) = correlation_nodes(model)
    assert (node.get_type_info().version_id == CORRELATION_DOMAIN) == (operation == "C++"), (
        node.get_type_info()
    )
    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads}
    compiled = core.compile_model(model, "CPU", config)
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
def test_the_extensions_float16_evaluate_is_float32_rounded_once(tmp_path: Path) -> None:
    """Called directly: OpenVINO's CPU plugin hands the op float32 behind Converts."""
    assert openvino_op.compiled_extension() is not None
    x = np.random.default_rng(3).standard_normal((2, 8, 5, 9, 7)).astype(np.float16)
    model = openvino_op.openvino_core().read_model(str(correlation_file(tmp_path, TensorProto.FLOAT16, 5, 2)))
    (node,) = correlation_nodes(model)
    out = openvino.Tensor(openvino.Type.f16, openvino.Shape([2, 100, 5, 9, 7]))
    assert node.evaluate([out], [openvino.Tensor(x)])
    expected = correlation_reference(torch.from_numpy(x).double(), 5, 2).numpy()
    np.testing.assert_allclose(
        out.data.astype(np.float64), expected, rtol=2**-11, atol=1e-5 * np.abs(expected).max()
    )


def pyramid_reference(
    x: np.ndarray, kernel_size: int, temporal_range: int, levels: int, ceil_mode: bool = True
) -> list[np.ndarray]:
    """The volume and its pyramid levels in float64, pooled by PyTorch's ``avg_pool3d``: rounding
    up is ``pool_pyramid``'s meaning (whose CPU path runs the same compiled step as the extension,
    so it is no independent reference)."""
    out = [correlation_reference(torch.from_numpy(x).double(), kernel_size, temporal_range)]
    for _ in range(levels):
        out.append(torch.nn.functional.avg_pool3d(out[-1], (1, 2, 2), (1, 2, 2), ceil_mode=ceil_mode))
    return [volume.numpy() for volume in out]


@compiler
@pytest.mark.parametrize(
    ("size", "ceil_mode", "fuses"),
    [
        ((8, 12), False, True),  # even sizes, as X3D and R(2+1)D have at their usual crops
        ((7, 9), True, True),  # odd: rounded up, each cut window the mean of what it holds
        ((13, 5), True, True),
        ((7, 9), False, False),  # odd and rounded down: not pool_pyramid's meaning
        (None, False, False),  # height and width unknown: rounding down might drop a row
    ],
)
def test_the_pyramid_fuses_into_the_extension_and_matches_the_models_pooling(
    tmp_path: Path, size: tuple[int, int] | None, ceil_mode: bool, fuses: bool
) -> None:
    """Two pooling levels become outputs 1 and 2 of the C++ operation: no AvgPool is left in the
    graph OpenVINO compiles, and every output matches the reference volume pooled with
    ``pool_pyramid``'s meaning, at a batch of two and on two threads. Poolings of another meaning are left
    to OpenVINO, and a second pass fuses nothing more."""
    path = tmp_path / "pyramid.onnx"
    onnx.save(
        correlation_model(TensorProto.FLOAT, 5, 2, pyramid_levels=2, size=size, ceil_mode=ceil_mode),
        str(path),
    )
    core = openvino_op.openvino_core()
    model = core.read_model(str(path))
    assert openvino_op.fuse_pyramid(model) == int(fuses)
    assert openvino_op.fuse_pyramid(model) == 0
    (node,) = correlation_nodes(model)
    assert node.get_output_size() == (3 if fuses else 1)
    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 2}
    compiled = core.compile_model(model, "CPU", config)
    layers = [
        op.get_rt_info()["layerType"].astype(str) for op in compiled.get_runtime_model().get_ordered_ops()
    ]
    assert layers.count("Pooling") == (0 if fuses else 2) and layers.count("Reference") == 1, layers
    x = np.random.default_rng(9).standard_normal((2, 6, 4, *(size or (8, 12))), dtype=np.float32)
    outputs = compiled.create_infer_request().infer({"x": x}).to_tuple()
    expected = pyramid_reference(x, 5, 2, 2, fuses or ceil_mode)
    for actual, reference in zip(outputs, expected, strict=True):
        assert actual.shape == reference.shape
        np.testing.assert_allclose(actual, reference, rtol=0, atol=1e-5 * np.abs(reference).max())


@compiler
def test_the_fused_pyramids_float16_evaluate_pools_in_float32_and_rounds_once(tmp_path: Path) -> None:
    x = np.random.default_rng(10).standard_normal((2, 8, 5, 9, 7)).astype(np.float16)
    path = tmp_path / "pyramid16.onnx"
    onnx.save(
        correlation_model(TensorProto.FLOAT16, 3, 1, pyramid_levels=2, size=(9, 7), ceil_mode=True), str(path)
    )
    model = openvino_op.openvino_core().read_model(str(path))
    assert openvino_op.fuse_pyramid(model) == 1
    (node,) = correlation_nodes(model)
    outputs = [
        openvino.Tensor(openvino.Type.f16, openvino.Shape(shape))
        for shape in ([2, 18, 5, 9, 7], [2, 18, 5, 5, 4], [2, 18, 5, 3, 2])
    ]
    assert node.evaluate(outputs, [openvino.Tensor(x)])
    for actual, expected in zip(outputs, pyramid_reference(x, 3, 1, 2), strict=True):
        np.testing.assert_allclose(
            actual.data.astype(np.float64), expected, rtol=2**-11, atol=1e-5 * np.abs(expected).max()
        )


def failing_compiler(tmp: Path) -> Path:
    script = tmp / "failing-c++"
    script.write_text(
        "#!/bin/sh\n[ \"$1\" = --version ] && { echo fake 1.0; exit 0; }\necho 'fake: error: no' >&2\nexit 1\n"
    )
    script.chmod(0o755)
    return script


@pytest.mark.parametrize("failure", ["compiler", "cache"])
def test_the_python_operation_when_the_extension_cannot_be_built(
    failure: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A compiler that fails (its output in the one warning, nothing cached), or a cache that
    cannot be written: no extension, and a Core that still reads the file, with the Python
    operation, which gives the same volume."""
    cache = tmp_path / "cache"
    if failure == "compiler":
        monkeypatch.setenv("CXX", str(failing_compiler(tmp_path)))
    else:
        cache.write_text("a file where the cache folder should be")
    monkeypatch.setenv("DCF_CACHE_DIR", str(cache))
    monkeypatch.setattr(
        openvino_op, "compiled_extension", functools.cache(openvino_op.compiled_extension.__wrapped__)
    )
    with caplog.at_level(logging.WARNING):
        assert openvino_op.compiled_extension() is None
        x = np.random.default_rng(5).standard_normal((1, 6, 4, 8, 8), dtype=np.float32)
        y = run(correlation_file(tmp_path, TensorProto.FLOAT, 5, 2), x, operation="Python")
        path = tmp_path / "pyramid.onnx"
        onnx.save(correlation_model(TensorProto.FLOAT, 5, 2, pyramid_levels=1, size=(8, 8)), str(path))
        assert openvino_op.fuse_pyramid(openvino_op.openvino_core().read_model(str(path))) == 0
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "runs as a Python operation on one thread" in warning
    assert ("fake: error: no" in warning) if failure == "compiler" else ("Not a directory" in warning)
    if failure == "compiler":
        assert not list(cache.rglob("*.so"))
    expected = correlation_reference(torch.from_numpy(x).double(), 5, 2).numpy()
    np.testing.assert_allclose(y, expected, rtol=0, atol=1e-5 * np.abs(expected).max())


def test_a_cached_extension_that_does_not_load_falls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    broken = tmp_path / "libdcf_openvino.so"
    broken.write_bytes(b"not a shared library")
    monkeypatch.setattr(openvino_op, "compiled_extension", lambda: broken)
    x = np.random.default_rng(6).standard_normal((1, 4, 3, 6, 6), dtype=np.float32)
    with caplog.at_level(logging.WARNING):
        y = run(correlation_file(tmp_path, TensorProto.FLOAT, 3, 1), x, operation="Python")
    assert f"{broken} does not load" in caplog.text
    expected = correlation_reference(torch.from_numpy(x).double(), 3, 1).numpy()
    np.testing.assert_allclose(y, expected, rtol=0, atol=1e-5 * np.abs(expected).max())
