"""The CUDA kernel's source, checked on a machine without a GPU.

* Its per-position bodies, compiled as plain C++ (``tests/ops/cuda_emulation.cpp``), match the
  reference on shapes with every edge: one frame, fewer frames than L, maps smaller than the
  dilated window, K from 1 to 9.
* The kernels compile with nvcc for sm_80 and sm_90 (skipped, saying why, without nvcc).
* ``dcf.ops._cuda_kernel.supports`` knows every limit of the launcher (``correlationSupported``),
  so an input beyond them takes the reference instead of failing in the launch.

Running the kernel itself needs a GPU: tests/ops/test_correlation_cuda.py (marker ``gpu``).
"""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from dcf.ops import _cuda_kernel
from dcf.ops.reference import correlation_backward_reference, correlation_reference

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "trt_plugins" / "correlationPlugin"


@pytest.fixture(scope="module")
def emulation(tmp_path_factory: pytest.TempPathFactory) -> ctypes.CDLL:
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        pytest.skip("no C++ compiler to build the emulation")
    out = tmp_path_factory.mktemp("emulation") / "libemulation.so"
    subprocess.run(
        [compiler, "-std=c++17", "-O2", "-shared", "-fPIC", f"-I{PLUGIN}", str(Path(__file__).with_name("cuda_emulation.cpp")), "-o", str(out)],
        check=True,
    )  # fmt: skip
    lib = ctypes.CDLL(str(out))
    i64, i32, ptr = ctypes.c_int64, ctypes.c_int32, ctypes.c_void_p
    lib.emulate_forward.argtypes = [ptr, ptr, i64, i64, i64, i64, i64, i32, i32]
    lib.emulate_backward.argtypes = [ptr, ptr, ptr, i64, i64, i64, i64, i64, i32, i32]
    return lib


SHAPES = [
    ((2, 5, 4, 7, 9), 5, 2),
    ((1, 3, 1, 6, 6), 5, 2),  # one frame: every temporal partner is outside
    ((1, 4, 2, 5, 3), 3, 3),  # fewer frames than L, width below the window
    ((1, 2, 5, 4, 4), 9, 1),  # the largest window
    ((3, 6, 3, 8, 5), 1, 2),  # K = 1: pure temporal products
    ((1, 7, 6, 11, 10), 7, 2),
]


@pytest.mark.parametrize(("shape", "kernel_size", "temporal_range"), SHAPES)
def test_kernel_bodies_match_the_reference(emulation, shape, kernel_size: int, temporal_range: int) -> None:
    x = torch.randn(shape, generator=torch.Generator().manual_seed(sum(shape)))
    n, c, t, h, w = shape
    channels = kernel_size * kernel_size * 2 * temporal_range
    y = np.full((n, channels, t, h, w), np.nan, np.float32)  # every element must be written
    xs = x.numpy()
    assert (
        emulation.emulate_forward(xs.ctypes.data, y.ctypes.data, n, c, t, h, w, kernel_size, temporal_range)
        == 0
    )
    expected = correlation_reference(x.double(), kernel_size, temporal_range).float().numpy()
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)

    grad_y = torch.randn(n, channels, t, h, w, generator=torch.Generator().manual_seed(1))
    gx = np.full(shape, np.nan, np.float32)
    gys = grad_y.numpy()
    assert (
        emulation.emulate_backward(
            gys.ctypes.data, xs.ctypes.data, gx.ctypes.data, n, c, t, h, w, kernel_size, temporal_range
        )
        == 0
    )
    expected_grad = correlation_backward_reference(grad_y.double(), x.double(), kernel_size, temporal_range)
    np.testing.assert_allclose(gx, expected_grad.float().numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_kernel_compiles_for(arch: str, tmp_path: Path) -> None:
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc not found: the CUDA kernel's compile check needs the CUDA toolkit")
    result = subprocess.run(
        [nvcc, "-std=c++17", "-O3", f"-arch={arch}", "-Xcompiler", "-fPIC", "-Werror", "all-warnings",
         "-c", str(PLUGIN / "correlationKernel.cu"), "-o", str(tmp_path / "kernel.o")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


# correlationSupported's conditions, each either the op's own contract (check_correlation_args) or
# one that _cuda_kernel.supports checks; a new condition in the .cu source fails this list.
LAUNCHER_CONDITIONS = {
    "s.kernelSize >= 1",
    "s.kernelSize <= kMaxKernelSize",  # MAX_KERNEL_SIZE
    "s.kernelSize % 2 == 1",
    "s.temporalRange >= 1",
    "s.n >= 0",
    "s.c >= 1",
    "s.t >= 0",
    "s.h >= 0",
    "s.w >= 0",
    "s.h < 65535 * kBlockY",  # MAX_HEIGHT
}


def test_supports_mirrors_the_launcher_limits() -> None:
    source = (PLUGIN / "correlationKernel.cu").read_text()
    body = re.search(
        r"bool correlationSupported\(CorrelationShape const& s\)\s*\{\s*return (.*?);", source, re.S
    )
    assert body is not None
    assert {" ".join(c.split()) for c in body.group(1).split("&&")} == LAUNCHER_CONDITIONS
    block_rows = re.search(r"constexpr int32_t kBlockY = (\d+);", source)
    assert block_rows is not None and 65535 * int(block_rows.group(1)) - 1 == _cuda_kernel.MAX_HEIGHT
    header = (PLUGIN / "correlationKernel.h").read_text()
    assert f"constexpr int32_t kMaxKernelSize = {_cuda_kernel.MAX_KERNEL_SIZE};" in header


def test_too_tall_input_is_not_supported() -> None:
    # Fake CUDA tensors: the real supports() on the real dtype, device and shape, no GPU or memory.
    with FakeTensorMode():
        tallest = torch.empty(2, 4, 3, _cuda_kernel.MAX_HEIGHT, 8, device="cuda")
        too_tall = torch.empty(2, 4, 3, _cuda_kernel.MAX_HEIGHT + 1, 8, device="cuda")
        half = too_tall.half()
        double = tallest.double()
    assert _cuda_kernel.supports(tallest, 5)
    assert not _cuda_kernel.supports(too_tall, 5)
    assert not _cuda_kernel.supports(half, 5)
    assert not _cuda_kernel.supports(tallest, _cuda_kernel.MAX_KERNEL_SIZE + 2)
    assert not _cuda_kernel.supports(double, 5)
    assert not _cuda_kernel.supports(torch.empty(2, 4, 3, 8, 8), 5)  # a CPU tensor
