"""The slow, obviously correct meaning of the correlation op (DESIGN.md section 1).

Every fast path (the compiled CPU kernel, the CUDA kernel, the TensorRT plugin, the portable ONNX
graph) is tested against these functions. They are also the fallback wherever no fast path exists.
Each is a loop of ``2L * K * K`` shifted multiply-and-sum passes, written for clarity, not speed.
Half types are summed in float32 and rounded once at the end, as the kernels do: summed in
float16, a reduction over 64 channels already overflows at feature values of 32.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor


def temporal_offsets(temporal_range: int) -> list[int]:
    """The offsets ``tau`` in output-channel order: ``(-L, ..., -1, +1, ..., +L)``."""
    return [*range(-temporal_range, 0), *range(1, temporal_range + 1)]


def displacements(kernel_size: int, temporal_range: int) -> Iterator[tuple[int, int, int, int]]:
    """Yields ``(channel, tau, dy, dx)`` for every output channel, in channel order.

    ``dy`` and ``dx`` are in feature pixels, already multiplied by the dilation ``|tau|``.
    """
    r = kernel_size // 2
    channel = 0
    for tau in temporal_offsets(temporal_range):
        d = abs(tau)
        for ky in range(kernel_size):
            for kx in range(kernel_size):
                yield channel, tau, (ky - r) * d, (kx - r) * d
                channel += 1


def check_correlation_args(x: Tensor, kernel_size: int, temporal_range: int) -> None:
    """Raises ``ValueError`` with the expected form when the arguments are not valid."""
    if x.dim() != 5:
        raise ValueError(
            f"correlation: expected a 5-D input (N, C, T, H, W), got a {x.dim()}-D tensor "
            f"of shape {tuple(x.shape)}"
        )
    if not x.dtype.is_floating_point:
        raise ValueError(f"correlation: expected a floating-point input, got {x.dtype}")
    if x.shape[1] < 1:
        raise ValueError("correlation: expected at least one channel (C >= 1), got C = 0")
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"correlation: kernel_size must be a positive odd integer, got {kernel_size}")
    if temporal_range < 1:
        raise ValueError(f"correlation: temporal_range must be >= 1, got {temporal_range}")


def shift(x: Tensor, dt: int, dy: int, dx: int) -> Tensor:
    """``out[..., t, i, j] = x[..., t + dt, i + dy, j + dx]``, zero where that is outside ``x``."""
    out = torch.zeros_like(x)
    src, dst = [], []
    for size, step in zip(x.shape[-3:], (dt, dy, dx), strict=True):
        length = max(0, size - abs(step))
        src.append(slice(max(0, step), max(0, step) + length))
        dst.append(slice(max(0, -step), max(0, -step) + length))
    out[..., dst[0], dst[1], dst[2]] = x[..., src[0], src[1], src[2]]
    return out


def _accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the sums run in: float32 for float16 and bfloat16, else ``dtype`` itself."""
    return torch.promote_types(dtype, torch.float32)


def correlation_reference(x: Tensor, kernel_size: int, temporal_range: int) -> Tensor:
    """Correlation volume of ``x`` (N, C, T, H, W) -> (N, K*K*2L, T, H, W), by definition.

    Half-type inputs are summed in float32; the result has the input's dtype.
    """
    check_correlation_args(x, kernel_size, temporal_range)
    xa = x.to(_accumulation_dtype(x.dtype))
    n, c, t, h, w = x.shape
    channels = kernel_size * kernel_size * 2 * temporal_range
    y = xa.new_zeros((n, channels, t, h, w))
    for o, tau, dy, dx in displacements(kernel_size, temporal_range):
        y[:, o] = (xa * shift(xa, tau, dy, dx)).sum(dim=1)
    return (y * c**-0.5).to(x.dtype)


def correlation_backward_reference(
    grad_y: Tensor, x: Tensor, kernel_size: int, temporal_range: int
) -> Tensor:
    """Gradient of ``correlation_reference`` w.r.t. ``x``, given the gradient of its output.

    Each output channel ``o`` is ``s * sum_c x * shift(x, tau, dy, dx)``, so ``x`` receives
    ``s * g_o * shift(x, tau, dy, dx)`` as the first factor and ``s * shift(g_o * x, -tau, -dy, -dx)``
    as the partner that was looked at. Half types are summed in float32; the result has the dtype
    of ``x``.
    """
    check_correlation_args(x, kernel_size, temporal_range)
    dtype = _accumulation_dtype(x.dtype)
    xa, ga = x.to(dtype), grad_y.to(dtype)
    grad_x = torch.zeros_like(xa)
    for o, tau, dy, dx in displacements(kernel_size, temporal_range):
        g = ga[:, o : o + 1]  # (N, 1, T, H, W), broadcast over channels
        grad_x += g * shift(xa, tau, dy, dx) + shift(g * xa, -tau, -dy, -dx)
    return (grad_x * x.shape[1] ** -0.5).to(x.dtype)
