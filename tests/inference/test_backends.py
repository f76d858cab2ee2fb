"""The backend loader: what each backend runs, what it reports, and what it refuses."""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from dcf.export import onnxruntime_op
from dcf.export.verify import TOLERANCES
from dcf.inference.backends import auto_backend, load_backend
from tests.support.sockets import watch_sockets


@pytest.fixture
def files(tiny_exports: dict[str, Path]) -> dict[str, Path]:
    return tiny_exports


def test_every_cpu_backend_gives_the_checkpoints_logits(files: dict[str, Path]) -> None:
    reference = load_backend(files["checkpoint"])
    x = np.random.default_rng(6).standard_normal((2, 3, 4, 32, 32), dtype=np.float32)
    expected = reference(x)
    with torch.inference_mode():
        assert np.array_equal(expected, reference.model(torch.from_numpy(x)).numpy())
    runs = [(files["portable"], "auto"), (files["custom"], "onnx-reference")]
    if onnxruntime_op.library() is not None:
        runs.append((files["custom"], "onnxruntime"))
    for source, backend in runs:
        actual = load_backend(source, backend, threads=1)(x)
        np.testing.assert_allclose(actual, expected, atol=1e-4 * np.abs(expected).max(), rtol=1e-4)


@pytest.mark.parametrize("flavour", ["portable", "custom"])
def test_openvino_gives_the_checkpoints_logits_in_float32(
    files: dict[str, Path], flavour: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Both flavours (custom nodes on the compiled CPU kernel, the pyramid's poolings fused into
    the first two of the three correlations, and each block's convolution of its volume into all
    three): batches and frame counts other
    than the export traced, within the fp32 tolerance of ``dcf export verify``; no socket opened
    while loading and running (OpenVINO's telemetry package serves its tools, not the runtime)."""
    pytest.importorskip("openvino", reason="needs the openvino extra (in the test extra)")
    reference = load_backend(files["checkpoint"])
    rng = np.random.default_rng(8)
    shapes = [(1, 3, 4, 32, 32), (3, 3, 4, 32, 32)]
    if flavour == "portable":  # the custom-node file is exported with static frames
        shapes.append((2, 3, 7, 32, 32))
    clips = [rng.standard_normal(shape, dtype=np.float32) for shape in shapes]
    with watch_sockets() as watch, caplog.at_level(logging.INFO, logger="dcf.inference.backends"):
        backend = load_backend(files[flavour], "openvino", threads=1)
        answers = [backend(x) for x in clips]
    fused = [m for m in caplog.messages if "fused into the correlations of" in m]
    assert fused == (
        [
            f"OpenVINO: fused into the correlations of {files[flavour]}: 2 pyramids' poolings, 3 convolutions of the volume"
        ]
        if flavour == "custom"
        else []
    )
    for x, actual in zip(clips, answers, strict=True):  # each answer its own array, not a reused buffer
        expected = reference(x)
        assert actual.dtype == np.float32 and actual.shape == expected.shape
        assert np.abs(actual - expected).max() / np.abs(expected).max() <= TOLERANCES["fp32"].max_rel
    assert (backend.info.backend, backend.info.device, backend.info.precision) == ("openvino", "cpu", "fp32")
    assert backend.info.classes == reference.info.classes
    if shutil.which("ss"):
        assert not watch.new(f"pid={os.getpid()},"), watch.new(f"pid={os.getpid()},")


def _has_avx512_core() -> bool:
    """The AVX-512 subsets oneDNN calls avx512_core (F, BW, DQ, VL), from /proc/cpuinfo."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return all(f in flags for f in ("avx512f", "avx512bw", "avx512dq", "avx512vl"))


def test_openvino_reduced_precision_reports_what_it_computes(
    files: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """bf16 and fp16 compute: reported as this processor runs them (OpenVINO's own list of its
    capabilities, and bf16 on any AVX-512 processor: fp16 runs as bf16 without fp16 arithmetic, f32
    without either, with a warning),
    the logits within that precision's tolerance and, when reduced, not float32-exact."""
    openvino = pytest.importorskip("openvino", reason="needs the openvino extra (in the test extra)")
    capabilities = openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    native_bf16 = "bf16" if "BF16" in capabilities else "fp32"
    # Asked for bf16, OpenVINO also computes it on AVX-512 processors whose capabilities leave BF16
    # out (no native bf16 instructions); fp16 then still falls back to f32. Both seen on an Intel
    # Xeon with AVX-512 but no avx512_bf16.
    runs_as = {
        "bf16": "bf16" if "BF16" in capabilities or _has_avx512_core() else "fp32",
        "fp16": "fp16" if "FP16" in capabilities else native_bf16,
    }
    reference = load_backend(files["checkpoint"])
    x = np.random.default_rng(12).standard_normal((2, 3, 4, 32, 32), dtype=np.float32)
    expected = reference(x)
    for asked, precision in runs_as.items():
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="dcf.inference.backends"):
            backend = load_backend(files["custom"], "openvino", threads=1, precision=asked)
        assert backend.info.precision == precision
        assert any(f"in {precision} on this processor ({asked} asked)" in m for m in caplog.messages) == (
            precision != asked
        )
        error = np.abs(backend(x) - expected).max() / np.abs(expected).max()
        assert error <= TOLERANCES[precision].max_rel, (asked, precision, error)
        if precision != "fp32":
            assert error > TOLERANCES["fp32"].max_rel, (asked, precision, error)


def test_openvino_correlation_without_the_compiled_kernel(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Python operation's PyTorch fallback (no compiler for the extension, no compiled kernel
    at install) gives the same logits."""
    pytest.importorskip("openvino", reason="needs the openvino extra (in the test extra)")
    from dcf.export import openvino_op
    from dcf.ops import _cpu_kernel

    monkeypatch.setattr(openvino_op, "compiled_extension", lambda: None)

    x = np.random.default_rng(14).standard_normal((2, 3, 4, 32, 32), dtype=np.float32)
    expected = load_backend(files["checkpoint"])(x)
    monkeypatch.setattr(_cpu_kernel, "available", lambda: False)
    actual = load_backend(files["custom"], "openvino", threads=1)(x)
    assert np.abs(actual - expected).max() / np.abs(expected).max() <= TOLERANCES["fp32"].max_rel


def test_auto_takes_openvino_for_onnx_on_cpu_and_says_so(
    files: dict[str, Path], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("openvino", reason="needs the openvino extra (in the test extra)")
    with caplog.at_level(logging.INFO, logger="dcf.inference.backends"):
        for flavour in ("portable", "custom"):
            assert load_backend(files[flavour], threads=1).info.backend == "openvino"
    assert "backend auto: openvino (an ONNX file on CPU: OpenVINO is the fastest CPU runtime installed)" in (
        caplog.messages
    )
    assert load_backend(files["checkpoint"]).info.backend == "torch"
    assert auto_backend(str(files["portable"]), "cuda") == (
        "onnxruntime",
        "an ONNX file on cuda; OpenVINO runs on CPU only",
    )
    # Without OpenVINO installed (the one unit this stands in for): ONNX Runtime.
    found = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "openvino" else found(n, *a))
    assert auto_backend(str(files["portable"])) == (
        "onnxruntime",
        "an ONNX file on cpu; OpenVINO is not installed",
    )


def test_openvino_serves_a_checkpoint_through_a_checked_export(
    files: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("openvino", reason="needs the openvino extra (in the test extra)")
    reference = load_backend(files["checkpoint"])
    with caplog.at_level(logging.INFO, logger="dcf.inference.backends"):
        backend = load_backend(files["checkpoint"], "openvino", threads=1)
    (logged,) = [m for m in caplog.messages if "exported and compiled for OpenVINO" in m]
    assert "logits against PyTorch on 3 inputs: max relative error" in logged and logged.endswith("passed")
    assert (backend.info.backend, backend.info.dynamic_frames) == ("openvino", True)
    x = np.random.default_rng(13).standard_normal((2, 3, 6, 32, 32), dtype=np.float32)
    expected = reference(x)
    assert np.abs(backend(x) - expected).max() / np.abs(expected).max() <= TOLERANCES["fp32"].max_rel


def test_info_describes_the_model_and_how_it_runs(files: dict[str, Path]) -> None:
    torch_info = load_backend(files["checkpoint"], name="tiny").info
    portable = load_backend(files["portable"], "onnxruntime").info
    custom = load_backend(files["custom"], "onnx-reference").info
    assert (torch_info.name, torch_info.backend, torch_info.device) == ("tiny", "torch", "cpu")
    assert (portable.name, portable.backend, portable.precision) == ("tiny", "onnxruntime", "fp32")
    assert (portable.dynamic_frames, portable.dynamic_size) == (True, False)
    assert (custom.backend, custom.dynamic_frames) == ("onnx-reference", False)
    for info in (portable, custom):
        assert (info.architecture, info.classes, info.input_spec) == (
            torch_info.architecture,
            torch_info.classes,
            torch_info.input_spec,
        )


@pytest.mark.parametrize(
    ("source", "backend", "options", "error", "message"),
    [
        ("missing.onnx", "auto", {}, FileNotFoundError, "model not found: .*missing.onnx"),
        (
            "custom",
            "onnxruntime",
            {"device": "cuda"},
            ValueError,
            "custom nodes, which ONNX Runtime on CUDA cannot run: export with --portable, or run it with "
            "TensorRT",
        ),
        ("portable", "torch", {}, ValueError, r"the torch backend runs \.safetensors files"),
        ("portable", "triton", {}, ValueError, "unknown backend 'triton'; expected auto or one of torch, "),
        ("checkpoint", "tensorrt", {}, ValueError, r"runs \.plan or \.engine files"),
        ("custom", "onnx-reference", {"device": "cuda"}, ValueError, "onnx-reference backend runs on CPU"),
        ("portable", "openvino", {"device": "cuda"}, ValueError, "the openvino backend runs on CPU"),
        (
            "portable",
            "onnxruntime",
            {"precision": "bf16"},
            ValueError,
            "precision bf16 is OpenVINO's compute option",
        ),
    ],
)
def test_what_a_backend_cannot_run_is_refused_in_one_line(
    files: dict[str, Path], source: str, backend: str, options: dict, error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        load_backend(files.get(source, source), backend, **options)


def test_onnxruntime_without_the_op_library_refuses_custom_nodes(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DCF_CPU_KERNEL", "0")
    with pytest.raises(
        ValueError,
        match="ONNX Runtime without its dcf op library \\(DCF_CPU_KERNEL=0 turns the compiled kernels off\\) cannot run",
    ):
        load_backend(files["custom"], "onnxruntime")
    assert load_backend(files["portable"], "onnxruntime").info.backend == "onnxruntime"


def test_an_engine_needs_a_gpu(tmp_path: Path) -> None:
    plan = tmp_path / "model.plan"
    plan.write_bytes(b"not an engine")
    with pytest.raises(ValueError, match="the tensorrt backend runs on a GPU: pass --device cuda"):
        load_backend(plan)
