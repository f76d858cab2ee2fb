"""The backend loader: what each backend runs, what it reports, and what it refuses."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from dcf.export.verify import TOLERANCES
from dcf.inference.backends import load_backend
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
    for source, backend in ((files["portable"], "auto"), (files["custom"], "onnx-reference")):
        actual = load_backend(source, backend, threads=1)(x)
        np.testing.assert_allclose(actual, expected, atol=1e-4 * np.abs(expected).max(), rtol=1e-4)


def test_openvino_gives_the_checkpoints_logits_in_float32(files: dict[str, Path]) -> None:
    """Batches and frame counts other than the export traced, within the fp32 tolerance of
    ``dcf export verify``; no socket opened while loading and running (OpenVINO's telemetry
    package serves its tools, not the runtime)."""
    pytest.importorskip("openvino", reason="needs the openvino extra (in the test extra)")
    reference = load_backend(files["checkpoint"])
    rng = np.random.default_rng(8)
    clips = [
        rng.standard_normal(shape, dtype=np.float32)
        for shape in ((1, 3, 4, 32, 32), (3, 3, 4, 32, 32), (2, 3, 7, 32, 32))
    ]
    with watch_sockets() as watch:
        backend = load_backend(files["portable"], "openvino", threads=1)
        answers = [backend(x) for x in clips]
    for x, actual in zip(clips, answers, strict=True):  # each answer its own array, not a reused buffer
        expected = reference(x)
        assert actual.dtype == np.float32 and actual.shape == expected.shape
        assert np.abs(actual - expected).max() / np.abs(expected).max() <= TOLERANCES["fp32"].max_rel
    assert (backend.info.backend, backend.info.device, backend.info.precision) == ("openvino", "cpu", "fp32")
    assert backend.info.classes == reference.info.classes
    if shutil.which("ss"):
        assert not watch.new(f"pid={os.getpid()},"), watch.new(f"pid={os.getpid()},")


def test_info_describes_the_model_and_how_it_runs(files: dict[str, Path]) -> None:
    torch_info = load_backend(files["checkpoint"], name="tiny").info
    portable = load_backend(files["portable"]).info
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
            "auto",
            {},
            ValueError,
            "custom nodes, which ONNX Runtime cannot run: export with --portable",
        ),
        ("portable", "torch", {}, ValueError, r"the torch backend runs \.safetensors files"),
        ("portable", "triton", {}, ValueError, "unknown backend 'triton'; expected auto or one of torch, "),
        ("checkpoint", "tensorrt", {}, ValueError, r"runs \.plan or \.engine files"),
        ("custom", "onnx-reference", {"device": "cuda"}, ValueError, "onnx-reference backend runs on CPU"),
        ("portable", "openvino", {"device": "cuda"}, ValueError, "the openvino backend runs on CPU"),
        (
            "custom",
            "openvino",
            {},
            ValueError,
            "custom nodes, which OpenVINO cannot run: export with --portable",
        ),
    ],
)
def test_what_a_backend_cannot_run_is_refused_in_one_line(
    files: dict[str, Path], source: str, backend: str, options: dict, error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        load_backend(files.get(source, source), backend, **options)


def test_an_engine_needs_a_gpu(tmp_path: Path) -> None:
    plan = tmp_path / "model.plan"
    plan.write_bytes(b"not an engine")
    with pytest.raises(ValueError, match="the tensorrt backend runs on a GPU: pass --device cuda"):
        load_backend(plan)
