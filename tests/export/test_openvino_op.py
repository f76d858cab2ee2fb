"""The correlation in OpenVINO: the C++ extension (compiled against the installed OpenVINO on first
use) against the pure-PyTorch reference op by op, the spatial pyramid's poolings and the volume's
convolution fused into it against the model's own pooling and convolution, and its fallback when it
cannot be built."""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto

from dcf.export.names import CORRELATION_DOMAIN, CORRELATION_OP
from dcf.ops import _cpu_kernel
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
    assert openvino_op.fuse_correlations(model) == (int(fuses), 0)
    assert openvino_op.fuse_correlations(model) == (0, 0)
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
    assert openvino_op.fuse_correlations(model) == (1, 0)
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


def mean_pool(volume: np.ndarray) -> np.ndarray:
    """``pool_pyramid``'s meaning written out: each 2x2 window's mean over the values it holds (an
    odd edge's window cut, as rounding up cuts it; any width, down to one column)."""
    n, c, t, h, w = volume.shape
    padded = np.full((n, c, t, h + h % 2, w + w % 2), np.nan)
    padded[..., :h, :w] = volume
    windows = padded.reshape(n, c, t, (h + 1) // 2, 2, (w + 1) // 2, 2)
    return np.nanmean(windows, axis=(4, 6))


def conv_reference(
    x: np.ndarray, weight: np.ndarray, kernel_size: int, temporal_range: int, levels: int
) -> list[np.ndarray]:
    """The convolution of the reference volume (float64, PyTorch's ``conv3d``) and the volume's
    pyramid levels: what the fused operation's outputs mean."""
    volume = correlation_reference(torch.from_numpy(x).double(), kernel_size, temporal_range)
    out = [torch.nn.functional.conv3d(volume, torch.from_numpy(weight).double()).numpy()]
    pooled = volume.numpy()
    for _ in range(levels):
        pooled = mean_pool(pooled)
        out.append(pooled)
    return out


def runtime_layers(compiled: Any) -> list[str]:
    return [
        op.get_rt_info()["layerType"].astype(str) for op in compiled.get_runtime_model().get_ordered_ops()
    ]


@compiler
@pytest.mark.parametrize(
    ("shape", "kernel_size", "temporal_range", "channels", "levels"),
    [
        ((2, 6, 4, 8, 12), 5, 2, 7, 2),  # output channels not a multiple of the register block
        ((1, 12, 5, 10, 40), 5, 2, 24, 2),  # X3D-S stage 2's width and channels, fewer frames
        ((1, 5, 3, 7, 13), 3, 1, 17, 0),  # odd sizes, one channel fewer than the volume, no pyramid
        ((2, 3, 4, 5, 33), 11, 1, 13, 1),  # the widest window; a row of two blocks and a bit
        ((1, 4, 3, 3, 1), 1, 2, 3, 0),  # one column, the smallest window
    ],
)
def test_the_volumes_convolution_fuses_into_the_extension_and_matches_the_reference(
    tmp_path: Path, shape: tuple[int, ...], kernel_size: int, temporal_range: int, channels: int, levels: int
) -> None:
    """The block's 1x1x1 convolution of the volume (fewer output channels than the volume) and the
    pyramid's poolings become one ``DCFCorrelationConv`` (with ``convolutions=False`` the poolings
    only): no convolution or pooling is left in the graph OpenVINO compiles, and every output
    matches the float64 reference on two threads."""
    volume_channels = kernel_size * kernel_size * 2 * temporal_range
    rng = np.random.default_rng(sum(shape) + channels)
    weight = rng.standard_normal((channels, volume_channels, 1, 1, 1), dtype=np.float32)
    path = tmp_path / "conv.onnx"
    model_proto = correlation_model(
        TensorProto.FLOAT,
        kernel_size,
        temporal_range,
        pyramid_levels=levels,
        size=shape[3:],
        ceil_mode=True,
        convolution=weight,
        volume_output=False,
    )
    onnx.save(model_proto, str(path))
    core = openvino_op.openvino_core()
    pyramid_only = openvino_op.fuse_correlations(core.read_model(str(path)), convolutions=False)
    assert pyramid_only == (int(levels > 0), 0)
    model = core.read_model(str(path))
    assert openvino_op.fuse_correlations(model) == (int(levels > 0), 1)
    assert openvino_op.fuse_correlations(model) == (0, 0)
    (node,) = [op for op in model.get_ordered_ops() if op.get_type_name() == openvino_op.CORRELATION_CONV_OP]
    assert node.get_output_size() == 1 + levels
    compiled = core.compile_model(
        model, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 2}
    )
    layers = runtime_layers(compiled)
    assert "Convolution" not in layers and "Pooling" not in layers and layers.count("Reference") == 1, layers
    x = rng.standard_normal(shape, dtype=np.float32)
    outputs = compiled.create_infer_request().infer({"x": x}).to_tuple()
    for actual, reference in zip(
        outputs, conv_reference(x, weight, kernel_size, temporal_range, levels), strict=True
    ):
        assert actual.shape == reference.shape
        np.testing.assert_allclose(actual, reference, rtol=0, atol=1e-5 * np.abs(reference).max())


def fused_node(kernel_size: int, temporal_range: int, channels: int, levels: int) -> Any:
    """A ``DCFCorrelationConv`` node of the C++ extension, on a dynamic input, to evaluate directly."""
    assert openvino_op.compiled_extension() is not None
    x = openvino.opset13.parameter(openvino.PartialShape.dynamic(5), openvino.Type.f32)
    weight = openvino.opset13.parameter([channels, kernel_size * kernel_size * 2 * temporal_range, 1, 1, 1])
    attributes = {"kernel_size": kernel_size, "temporal_range": temporal_range, "pyramid_levels": levels}
    factory = openvino_op._node_factory(str(openvino_op.compiled_extension()))
    return factory.create(openvino_op.CORRELATION_CONV_OP, [x.output(0), weight.output(0)], attributes)


@compiler
@pytest.mark.parametrize(("kernel_size", "temporal_range", "channels"), [(5, 2, 7), (3, 1, 13)])
def test_the_fused_convolution_writes_every_width_right(
    kernel_size: int, temporal_range: int, channels: int
) -> None:
    """Every row width from 1 to 37 (register blocks of two vectors, one vector, a masked part of
    one; the pooled row's odd last column): z and the first pyramid level against the reference,
    the outputs filled with NaN first so that an element never written shows."""
    node = fused_node(kernel_size, temporal_range, channels, 1)
    rng = np.random.default_rng(channels)
    weight = rng.standard_normal(
        (channels, kernel_size * kernel_size * 2 * temporal_range, 1, 1, 1), dtype=np.float32
    )
    for width in range(1, 38):
        x = rng.standard_normal((2, 3, 3, 5, width), dtype=np.float32)
        expected = conv_reference(x, weight, kernel_size, temporal_range, 1)
        outputs = [openvino.Tensor(np.full(e.shape, np.nan, dtype=np.float32)) for e in expected]
        assert node.evaluate(outputs, [openvino.Tensor(x), openvino.Tensor(weight)])
        for actual, reference in zip(outputs, expected, strict=True):
            np.testing.assert_allclose(
                actual.data, reference, rtol=0, atol=1e-5 * np.abs(reference).max(), err_msg=f"W={width}"
            )


@compiler
@pytest.mark.skipif(
    not _cpu_kernel.available() or _cpu_kernel.instruction_set() == "baseline",
    reason="the compiled kernel is not built, or this CPU runs its baseline kernels only",
)
@pytest.mark.parametrize("isa", ["avx2", "baseline"])
def test_the_fused_convolution_on_narrower_instruction_sets(isa: str) -> None:
    """The fused kernel's register blocks differ per instruction set: its tests again, in a child
    pytest with the kernels capped (the cap is read once per process)."""
    if isa == "avx2" and _cpu_kernel.instruction_set() != "avx512":
        pytest.skip("this CPU's widest kernel is avx2: the main run covers it")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0", __file__, "-k",
         "fused_convolution_writes or volumes_convolution_fuses"],
        env={**os.environ, "DCF_CPU_ISA": isa}, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:]
    assert " passed" in result.stdout and "failed" not in result.stdout


@compiler
@pytest.mark.parametrize(
    ("case", "channels", "conv_attributes", "volume_output"),
    [
        ("as wide as the volume", 18, None, False),  # writing z would cost what the volume costs
        ("strided", 6, {"strides": [1, 2, 2]}, False),
        ("padded", 6, {"pads": [0, 1, 1, 0, 1, 1]}, False),
        ("volume read twice", 6, None, True),  # the volume is an output too
    ],
)
def test_other_convolutions_of_the_volume_are_left_to_openvino(
    tmp_path: Path,
    case: str,
    channels: int,
    conv_attributes: dict[str, list[int]] | None,
    volume_output: bool,
) -> None:
    """The pyramid still fuses; the convolution stays OpenVINO's and the outputs stay right."""
    weight = np.random.default_rng(channels).standard_normal((channels, 18, 1, 1, 1), dtype=np.float32)
    path = tmp_path / "conv.onnx"
    onnx.save(
        correlation_model(
            TensorProto.FLOAT,
            3,
            1,
            pyramid_levels=1,
            size=(6, 8),
            convolution=weight,
            conv_attributes=conv_attributes,
            volume_output=volume_output,
        ),
        str(path),
    )
    core = openvino_op.openvino_core()
    model = core.read_model(str(path))
    assert openvino_op.fuse_correlations(model) == (1, 0), case
    compiled = core.compile_model(
        model, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 2}
    )
    assert "Convolution" in runtime_layers(compiled), case
    x = np.random.default_rng(11).standard_normal((1, 4, 3, 6, 8), dtype=np.float32)
    z = compiled.create_infer_request().infer({"x": x}).to_tuple()[0]
    volume = torch.from_numpy(pyramid_reference(x, 3, 1, 0)[0])
    expected = torch.nn.functional.conv3d(
        volume,
        torch.from_numpy(weight).double(),
        stride=tuple((conv_attributes or {}).get("strides", [1, 1, 1])),
        padding=tuple((conv_attributes or {}).get("pads", [0] * 6)[3:]),
    ).numpy()
    np.testing.assert_allclose(z, expected, rtol=0, atol=1e-5 * np.abs(expected).max())


@compiler
def test_the_fused_convolutions_float16_evaluate_is_float32_rounded_once(tmp_path: Path) -> None:
    """A float16 file: the weight taken in float32 from its float16 constant, the input converted,
    everything computed in float32 and each output rounded once."""
    rng = np.random.default_rng(12)
    weight = rng.standard_normal((5, 18, 1, 1, 1)).astype(np.float16)
    path = tmp_path / "conv16.onnx"
    onnx.save(
        correlation_model(
            TensorProto.FLOAT16,
            3,
            1,
            pyramid_levels=1,
            size=(9, 7),
            ceil_mode=True,
            convolution=weight,
            volume_output=False,
        ),
        str(path),
    )
    model = openvino_op.openvino_core().read_model(str(path))
    assert openvino_op.fuse_correlations(model) == (1, 1)
    (node,) = [op for op in model.get_ordered_ops() if op.get_type_name() == openvino_op.CORRELATION_CONV_OP]
    x = rng.standard_normal((2, 8, 5, 9, 7)).astype(np.float16)
    outputs = [
        openvino.Tensor(openvino.Type.f16, openvino.Shape(shape))
        for shape in ([2, 5, 5, 9, 7], [2, 18, 5, 5, 4])
    ]
    assert node.evaluate(outputs, [openvino.Tensor(x), openvino.Tensor(weight.astype(np.float32))])
    for actual, expected in zip(outputs, conv_reference(x, weight.astype(np.float32), 3, 1, 1), strict=True):
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
        assert openvino_op.fuse_correlations(openvino_op.openvino_core().read_model(str(path))) == (0, 0)
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
