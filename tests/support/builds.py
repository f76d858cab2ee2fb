"""Builds ``trt_plugins/`` with CMake into a test folder (the README's build, in miniature)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "trt_plugins"


def tensorrt_root() -> Path | None:
    """``$TENSORRT_ROOT`` when it holds TensorRT's headers (``include/NvInfer.h``)."""
    root = os.environ.get("TENSORRT_ROOT")
    return Path(root) if root and (Path(root) / "include" / "NvInfer.h").is_file() else None


def build(out: Path, architectures: str) -> Path:
    """Configures and builds into ``out``; skips (saying why) without cmake or nvcc."""
    cmake, nvcc = shutil.which("cmake"), shutil.which("nvcc")
    if cmake is None or nvcc is None:
        pytest.skip(f"building trt_plugins needs cmake and nvcc (cmake: {cmake}, nvcc: {nvcc})")
    args = [cmake, "-S", str(SOURCE), "-B", str(out), f"-DCMAKE_CUDA_ARCHITECTURES={architectures}"]
    args.append(f"-DCMAKE_CUDA_COMPILER={nvcc}")
    if tensorrt_root() is not None:
        args.append(f"-DTENSORRT_ROOT={tensorrt_root()}")
    configure = subprocess.run(args, capture_output=True, text=True)
    assert configure.returncode == 0, configure.stdout + configure.stderr
    compiled = subprocess.run([cmake, "--build", str(out), "-j", "2"], capture_output=True, text=True)
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    return out
