"""Shared fixtures: both backends of the correlation op, the exports several modules read (an
export takes 10-20 s on 2 cores: each is made once per pytest-xdist worker that needs it, and no
test changes it), GPU markers, and torch's threads shared out among the workers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from dcf.ops import _cpu_kernel
from tests.support.checkpoints import tiny_checkpoint
from tests.support.cli import run_dcf


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (pyproject.toml's addopts) the workers share the cores: each runs torch
    on its share of them, not on all (N pools of all-core OpenMP threads spin against each other)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        torch.set_num_threads(max(1, torch.get_num_threads() // workers))


@pytest.fixture(params=["kernel", "pure"])
def cpu_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs a test on the compiled CPU kernel and on the pure-PyTorch fallback."""
    if request.param == "kernel":
        if not _cpu_kernel.available():
            pytest.skip("compiled CPU kernel not built")
    else:
        monkeypatch.setattr(_cpu_kernel, "available", lambda: False)
    return str(request.param)


@pytest.fixture(scope="session")
def demo_exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The demo model exported with dynamic frames by ``dcf export onnx`` (a real subprocess), with
    the custom node and portable."""
    tmp = tmp_path_factory.mktemp("demo")
    paths = {"custom": tmp / "demo.onnx", "portable": tmp / "demo.portable.onnx"}
    for flavour, path in paths.items():
        args = ["export", "onnx", "--checkpoint", "demo", "--out", str(path), "--dynamic-frames"]
        result = run_dcf(*args, *(["--portable"] if flavour == "portable" else []))
        assert result.returncode == 0, result.stderr
        assert f"wrote {path}" in result.stdout
    return paths


@pytest.fixture(scope="session")
def tiny_exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny x3d_xs_dcf checkpoint (4 frames, 32 px, 5 classes) and its exports: portable with
    dynamic frames, and with the custom node, static."""
    from dcf.export.onnx_export import export_onnx

    tmp = tmp_path_factory.mktemp("tiny")
    model = tiny_checkpoint(tmp, "x3d_xs_dcf", seed=5)
    paths = {
        "checkpoint": tmp / "x3d_xs_dcf.safetensors",
        "portable": tmp / "tiny.portable.onnx",
        "custom": tmp / "tiny.onnx",
    }
    export_onnx(model, paths["portable"], portable=True, dynamic_frames=True)
    export_onnx(model, paths["custom"])
    return paths


@pytest.fixture(scope="session")
def dynamic_size_exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny x3d_xs_dcf checkpoint (4 frames, 64 px, 5 classes, seed 0) exported with the custom
    node and portable, both with dynamic frames and dynamic height and width."""
    from dcf.export.onnx_export import export_onnx

    tmp = tmp_path_factory.mktemp("dynamic_size")
    model = tiny_checkpoint(tmp, "x3d_xs_dcf", size=64)
    paths = {
        "checkpoint": tmp / "x3d_xs_dcf.safetensors",
        "custom": tmp / "custom.onnx",
        "portable": tmp / "portable.onnx",
    }
    for flavour in ("custom", "portable"):
        export_onnx(
            model, paths[flavour], portable=flavour == "portable", dynamic_frames=True, dynamic_size=True
        )
    return paths


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_gpu = pytest.mark.skip(reason="no CUDA GPU on this machine")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)
