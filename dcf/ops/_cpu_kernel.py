"""ctypes binding of the compiled CPU kernel (``csrc/correlation_cpu.cpp``).

The library is built at install time as an optional extension (``setup.py``). Where it is missing,
or ``DCF_CPU_KERNEL=0`` is set, :func:`available` is false, one warning says why, and the op falls
back to the pure-PyTorch path (the reference), which is correct but about 20x slower.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import logging
import os

import numpy as np
import torch
from torch import Tensor

ABI_VERSION = 7  # must match kAbiVersion in csrc/correlation_cpu.cpp
_MODULE = "dcf.ops._correlation_cpu"
_DTYPES = {torch.float32: "f32", torch.float64: "f64"}

logger = logging.getLogger(__name__)


@functools.cache
def _library() -> ctypes.CDLL | None:
    if os.environ.get("DCF_CPU_KERNEL", "1") == "0":
        logger.warning(
            "dcf: compiled CPU correlation kernel disabled by DCF_CPU_KERNEL=0; "
            "using the pure-PyTorch path (slower)"
        )
        return None
    spec = importlib.util.find_spec(_MODULE)
    if spec is None or spec.origin is None:
        logger.warning(
            "dcf: compiled CPU correlation kernel not built (no C++ compiler at install "
            "time?); using the pure-PyTorch path (slower). Reinstall with g++ available "
            "to build it."
        )
        return None
    try:
        lib = ctypes.CDLL(spec.origin)
    except OSError as exc:
        logger.warning("dcf: could not load %s (%s); using the pure-PyTorch path (slower)", spec.origin, exc)
        return None
    version = lib.dcf_correlation_abi_version()
    if version != ABI_VERSION:
        logger.warning(
            "dcf: %s has kernel ABI %d, this package expects %d (stale build? reinstall); "
            "using the pure-PyTorch path (slower)",
            spec.origin,
            version,
            ABI_VERSION,
        )
        return None
    cap = os.environ.get("DCF_CPU_ISA")
    if cap and cap not in ("avx2", "baseline"):
        logger.warning("dcf: DCF_CPU_ISA=%s is not avx2 or baseline: the kernel ignores it", cap)
    i64, cint, ptr = ctypes.c_int64, ctypes.c_int, ctypes.c_void_p
    for suffix in _DTYPES.values():
        forward = getattr(lib, f"dcf_correlation_forward_{suffix}")
        forward.argtypes = [ptr, ptr, i64, i64, i64, i64, i64, cint, cint, cint]
        backward = getattr(lib, f"dcf_correlation_backward_{suffix}")
        backward.argtypes = [ptr, ptr, ptr, i64, i64, i64, i64, i64, cint, cint, cint]
        pool = getattr(lib, f"dcf_pyramid_step_{suffix}")
        pool.argtypes = [ptr, ptr, i64, i64, i64, cint]
        forward.restype = backward.restype = pool.restype = cint
    lib.dcf_correlation_isa.restype = ctypes.c_char_p
    return lib


def available() -> bool:
    """Whether the compiled kernel is loaded and enabled."""
    return _library() is not None


def instruction_set() -> str | None:
    """The instruction set the compiled kernel runs on this CPU (``avx512``, ``avx2`` or
    ``baseline``; ``DCF_CPU_ISA=avx2`` or ``baseline`` caps it), or ``None`` without the kernel."""
    lib = _library()
    return None if lib is None else lib.dcf_correlation_isa().decode()


MAX_KERNEL_SIZE = 11  # the kernel is specialised for K in 1, 3, ..., 11


def supports(x: Tensor, kernel_size: int) -> bool:
    """Whether the compiled kernel can run on ``x``: a CPU float tensor and a window up to 11."""
    return (
        x.device.type == "cpu"
        and x.dtype in (*_DTYPES, torch.float16, torch.bfloat16)
        and kernel_size <= MAX_KERNEL_SIZE
    )


def _compute_dtype(x: Tensor) -> torch.dtype:
    # Half types accumulate in float32, then round once.
    return x.dtype if x.dtype in _DTYPES else torch.float32


def _check(status: int, what: str) -> None:
    if status != 0:
        raise RuntimeError(f"dcf: CPU correlation {what} kernel failed with status {status}")


def forward(x: Tensor, kernel_size: int, temporal_range: int) -> Tensor:
    """Correlation of a CPU tensor (N, C, T, H, W) with the compiled kernel."""
    lib = _library()
    assert lib is not None
    xc = x.to(_compute_dtype(x)).contiguous()
    n, c, t, h, w = xc.shape
    y = xc.new_empty((n, kernel_size * kernel_size * 2 * temporal_range, t, h, w))
    fn = getattr(lib, f"dcf_correlation_forward_{_DTYPES[xc.dtype]}")
    _check(
        fn(xc.data_ptr(), y.data_ptr(), n, c, t, h, w, kernel_size, temporal_range, torch.get_num_threads()),
        "forward",
    )
    return y.to(x.dtype)


def forward_into(x: np.ndarray, y: np.ndarray, kernel_size: int, temporal_range: int, threads: int) -> None:
    """The forward of a contiguous float32 array ``x`` (N, C, T, H, W) written into ``y``
    (N, K*K*2L, T, H, W), another runtime's buffer, on ``threads`` threads (the OpenVINO op)."""
    lib = _library()
    assert lib is not None
    if x.dtype != np.float32 or y.dtype != np.float32 or not (x.flags.c_contiguous and y.flags.c_contiguous):
        raise ValueError("the CPU correlation kernel takes contiguous float32 arrays")
    n, c, t, h, w = x.shape
    if y.shape != (n, kernel_size * kernel_size * 2 * temporal_range, t, h, w):
        raise ValueError(f"correlation output buffer of shape {y.shape} for an input of shape {x.shape}")
    _check(
        lib.dcf_correlation_forward_f32(
            x.ctypes.data, y.ctypes.data, n, c, t, h, w, kernel_size, temporal_range, threads
        ),
        "forward",
    )


def backward(grad_y: Tensor, x: Tensor, kernel_size: int, temporal_range: int) -> Tensor:
    """Gradient w.r.t. ``x`` of the correlation, given the output gradient ``grad_y``."""
    lib = _library()
    assert lib is not None
    dtype = _compute_dtype(x)
    xc = x.to(dtype).contiguous()
    gc = grad_y.to(dtype).contiguous()
    n, c, t, h, w = xc.shape
    grad_x = torch.empty_like(xc)
    fn = getattr(lib, f"dcf_correlation_backward_{_DTYPES[dtype]}")
    _check(
        fn(
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
            torch.get_num_threads(),
        ),
        "backward",
    )
    return grad_x.to(x.dtype)


def pools(volume: Tensor) -> bool:
    """Whether :func:`pyramid_step` takes ``volume``: a plain CPU float32 or float64 tensor outside
    autograd, with the kernel loaded. Tracing, exporting and compiling see the ``avg_pool3d`` of
    :func:`dcf.models.dcf_net.pool_pyramid` instead (their tensors are fakes or subclasses)."""
    return (
        type(volume) is Tensor
        and volume.device.type == "cpu"
        and volume.dtype in _DTYPES
        and not volume.requires_grad
        and not torch.jit.is_tracing()
        and not torch.compiler.is_compiling()
        and available()
    )


def pyramid_step(volume: Tensor) -> Tensor:
    """One step of the spatial pyramid on (N, O, T, H, W): each plane averaged over 2x2 windows to
    ceil(H/2) x ceil(W/2), a window cut by an odd edge averaging the values it holds; the meaning
    of ``avg_pool3d(volume, (1, 2, 2), (1, 2, 2), ceil_mode=True)``, in one pass on PyTorch's
    threads (``avg_pool3d`` took about 3% of X3D-S+DCF's time in PyTorch, issue #15)."""
    lib = _library()
    assert lib is not None
    v = volume.contiguous()
    n, o, t, h, w = v.shape
    y = v.new_empty((n, o, t, (h + 1) // 2, (w + 1) // 2))
    fn = getattr(lib, f"dcf_pyramid_step_{_DTYPES[v.dtype]}")
    _check(fn(v.data_ptr(), y.data_ptr(), n * o * t, h, w, torch.get_num_threads()), "pyramid")
    return y
