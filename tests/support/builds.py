"""Builds ``trt_plugins/`` with CMake into a test folder (the README's build, in miniature)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
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
    jobs = str(os.cpu_count() or 2)
    compiled = subprocess.run([cmake, "--build", str(out), "-j", jobs], capture_output=True, text=True)
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    return out


@contextmanager
def cuda_kernel(out: Path) -> Iterator[None]:
    """``dcf.ops.correlation`` on CUDA tensors through the kernel: the library at
    ``$DCF_CUDA_LIBRARY`` if there is one (``tools/gpu_check.sh`` builds it once), else built into
    ``out`` for this machine's GPU (skips where there is none)."""
    import torch

    from dcf.ops import _cuda_kernel

    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU on this machine")
    given = os.environ.get("DCF_CUDA_LIBRARY", "")
    if given and Path(given).is_file():
        library = Path(given)
    else:
        major, minor = torch.cuda.get_device_capability()
        library = build(out, f"{major}{minor}") / _cuda_kernel.LIBRARY
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DCF_CUDA_LIBRARY", str(library))
        _cuda_kernel._library.cache_clear()
        assert _cuda_kernel.available()
        yield
    _cuda_kernel._library.cache_clear()
