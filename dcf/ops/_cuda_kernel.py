"""ctypes binding of the CUDA kernel (``trt_plugins/correlationPlugin/correlationKernel.cu``), the
same kernel the TensorRT plugin runs, for ``dcf.ops.correlation`` on CUDA tensors.

Build it with CMake (it needs the CUDA toolkit, not TensorRT)::

    cmake -S trt_plugins -B trt_plugins/build && cmake --build trt_plugins/build -j

The library is looked up at ``$DCF_CUDA_LIBRARY``, then ``trt_plugins/build/`` of the source tree
(an editable install), then next to this module. Where it is missing, CUDA tensors take the
pure-PyTorch path (the reference) and one warning says how to build it. ``DCF_CUDA_KERNEL=0``
forces that path.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

ABI_VERSION = 1  # must match dcf_correlation_cuda_abi_version in correlationCApi.cpp
LIBRARY = "libdcf_correlation_cuda.so"
# The launcher's limits (correlationSupported in correlationKernel.cu) beyond the op's own contract
# (odd K, L >= 1, C >= 1), which check_correlation_args enforces before any backend is chosen.
MAX_KERNEL_SIZE = 9  # kMaxKernelSize in correlationKernel.h
# correlationSupported: h < 65535 * kBlockY, one block of kBlockY = 8 rows per gridDim.y index,
# which CUDA caps at 65535. N and T have no limit (blocks along z loop over N*T), nor has W in
# practice (gridDim.x allows 2^31 - 1 blocks of 32 columns).
MAX_HEIGHT = 65535 * 8 - 1
_DTYPES = {torch.float32: 0, torch.float16: 1}  # the kernel's native types; bfloat16 runs in float32

logger = logging.getLogger(__name__)


def _candidates() -> list[Path]:
    here = Path(__file__).resolve().parent
    paths = [here.parents[1] / "trt_plugins" / "build" / LIBRARY, here / LIBRARY]
    if os.environ.get("DCF_CUDA_LIBRARY"):
        paths.insert(0, Path(os.environ["DCF_CUDA_LIBRARY"]))
    return paths


@functools.cache
def _library() -> ctypes.CDLL | None:
    if os.environ.get("DCF_CUDA_KERNEL", "1") == "0":
        logger.warning(
            "dcf: CUDA correlation kernel disabled by DCF_CUDA_KERNEL=0; using the pure-PyTorch path"
        )
        return None
    path = next((p for p in _candidates() if p.is_file()), None)
    if path is None:
        logger.warning(
            "dcf: CUDA correlation kernel not built (looked for %s); using the pure-PyTorch path on CUDA "
            "tensors (much slower). Build it: cmake -S trt_plugins -B trt_plugins/build && "
            "cmake --build trt_plugins/build -j",
            ", ".join(str(p) for p in _candidates()),
        )
        return None
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as exc:
        logger.warning("dcf: could not load %s (%s); using the pure-PyTorch path on CUDA tensors", path, exc)
        return None
    if lib.dcf_correlation_cuda_abi_version() != ABI_VERSION:
        logger.warning(
            "dcf: %s has another kernel ABI than this package (rebuild it); using the pure-PyTorch path", path
        )
        return None
    i64, i32, ptr = ctypes.c_int64, ctypes.c_int32, ctypes.c_void_p
    lib.dcf_correlation_cuda_forward.argtypes = [i32, ptr, ptr, i64, i64, i64, i64, i64, i32, i32, ptr]
    lib.dcf_correlation_cuda_backward.argtypes = [i32, ptr, ptr, ptr, i64, i64, i64, i64, i64, i32, i32, ptr]
    lib.dcf_correlation_cuda_forward.restype = lib.dcf_correlation_cuda_backward.restype = i32
    logger.debug("dcf: CUDA correlation kernel from %s", path)
    return lib


def available() -> bool:
    return _library() is not None


def shape_supported(shape: Sequence[int], kernel_size: int) -> bool:
    """Whether the launcher takes an input of ``shape`` (N, C, T, H, W) and window ``kernel_size``.

    Args:
        shape: The input's shape, already checked to be a valid correlation input.
        kernel_size: The odd window size K.
    """
    return kernel_size <= MAX_KERNEL_SIZE and shape[3] <= MAX_HEIGHT


def supports(x: Tensor, kernel_size: int) -> bool:
    """A CUDA float32/float16/bfloat16 tensor within the launcher's limits (float64 takes the reference)."""
    return (
        x.device.type == "cuda"
        and x.dtype in (*_DTYPES, torch.bfloat16)
        and shape_supported(x.shape, kernel_size)
    )


def _compute_dtype(x: Tensor) -> torch.dtype:
    return x.dtype if x.dtype in _DTYPES else torch.float32


def _check(status: int, what: str) -> None:
    if status != 0:
        raise RuntimeError(f"dcf: CUDA correlation {what} kernel failed with cudaError {status}")


def forward(x: Tensor, kernel_size: int, temporal_range: int) -> Tensor:
    """Correlation of a CUDA tensor (N, C, T, H, W), on the current stream of its device."""
    lib = _library()
    assert lib is not None
    xc = x.to(_compute_dtype(x)).contiguous()
    n, c, t, h, w = xc.shape
    y = xc.new_empty((n, kernel_size * kernel_size * 2 * temporal_range, t, h, w))
    with torch.cuda.device(x.device):
        stream = torch.cuda.current_stream().cuda_stream
        status = lib.dcf_correlation_cuda_forward(
            _DTYPES[xc.dtype], xc.data_ptr(), y.data_ptr(), n, c, t, h, w, kernel_size, temporal_range, stream
        )
    _check(status, "forward")
    return y.to(x.dtype)


def backward(grad_y: Tensor, x: Tensor, kernel_size: int, temporal_range: int) -> Tensor:
    """Gradient w.r.t. ``x`` given the output gradient, on the current stream of ``x``'s device."""
    lib = _library()
    assert lib is not None
    dtype = _compute_dtype(x)
    xc = x.to(dtype).contiguous()
    gc = grad_y.to(dtype).contiguous()
    n, c, t, h, w = xc.shape
    grad_x = torch.empty_like(xc)
    with torch.cuda.device(x.device):
        stream = torch.cuda.current_stream().cuda_stream
        status = lib.dcf_correlation_cuda_backward(
            _DTYPES[dtype],
            gc.data_ptr(),
            xc.data_ptr(),
            grad_x.data_ptr(),
            n,
            c,
            t,
            h,
            w,
            kernel_size,
            temporal_range,
            stream,
        )
    _check(status, "backward")
    return grad_x.to(x.dtype)
