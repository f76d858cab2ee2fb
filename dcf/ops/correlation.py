"""The correlation op, registered as ``torch.ops.dcf.correlation``.

One op with a fake kernel, an autograd formula and a FLOP formula, so that ``torch.compile``,
``torch.export``, the ONNX exporter and ``torch.utils.flop_counter`` all see a single node. Its
meaning is :func:`dcf.ops.reference.correlation_reference` (DESIGN.md section 1).

Backends: the compiled CPU kernel for CPU tensors (K <= 11); the CUDA kernel of the TensorRT plugin
for CUDA tensors (K <= 9, float32/float16/bfloat16); the reference (plain PyTorch ops) elsewhere
and wherever a kernel is not built.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.flop_counter import register_flop_formula

from dcf.ops import _cpu_kernel, _cuda_kernel
from dcf.ops.reference import (
    check_correlation_args,
    correlation_backward_reference,
    correlation_reference,
)


def correlation(x: Tensor, kernel_size: int, temporal_range: int) -> Tensor:
    """Dense correlation volume between each frame and its ``±temporal_range`` neighbours.

    Args:
        x: Features, shape (N, C, T, H, W).
        kernel_size: Odd window size K; displacements run over ``(-K//2..K//2) * |tau|``.
        temporal_range: L >= 1; offsets ``tau`` are ``-L..-1, +1..+L`` in that order.

    Returns:
        Shape (N, K*K*2L, T, H, W); channel ``(tau_index*K + ky)*K + kx`` holds
        ``<x[t, i, j], x[t+tau, i+dy, j+dx]> / sqrt(C)``, zero where the partner lies outside.

    Raises:
        ValueError: For a non-5-D or non-float input, an even ``kernel_size`` or ``temporal_range < 1``.
    """
    check_correlation_args(x, kernel_size, temporal_range)
    return torch.ops.dcf.correlation(x, kernel_size, temporal_range)


def _use_cpu_kernel(x: Tensor, kernel_size: int) -> bool:
    return _cpu_kernel.supports(x, kernel_size) and _cpu_kernel.available()


def _use_cuda_kernel(x: Tensor, kernel_size: int) -> bool:
    return _cuda_kernel.supports(x, kernel_size) and _cuda_kernel.available()


def _output_shape(x: Tensor, kernel_size: int, temporal_range: int) -> tuple[int, ...]:
    n, _, t, h, w = x.shape
    return (n, kernel_size * kernel_size * 2 * temporal_range, t, h, w)


@torch.library.custom_op("dcf::correlation", mutates_args=())
def _correlation(x: Tensor, kernel_size: int, temporal_range: int) -> Tensor:
    check_correlation_args(x, kernel_size, temporal_range)
    if _use_cpu_kernel(x, kernel_size):
        return _cpu_kernel.forward(x, kernel_size, temporal_range)
    if _use_cuda_kernel(x, kernel_size):
        return _cuda_kernel.forward(x, kernel_size, temporal_range)
    return correlation_reference(x, kernel_size, temporal_range)


@_correlation.register_fake
def _correlation_fake(x: Tensor, kernel_size: int, temporal_range: int) -> Tensor:
    check_correlation_args(x, kernel_size, temporal_range)
    return x.new_empty(_output_shape(x, kernel_size, temporal_range))


@torch.library.custom_op("dcf::correlation_backward", mutates_args=())
def _correlation_backward(grad_y: Tensor, x: Tensor, kernel_size: int, temporal_range: int) -> Tensor:
    if _use_cpu_kernel(x, kernel_size):
        return _cpu_kernel.backward(grad_y, x, kernel_size, temporal_range)
    if _use_cuda_kernel(x, kernel_size):
        return _cuda_kernel.backward(grad_y, x, kernel_size, temporal_range)
    return correlation_backward_reference(grad_y, x, kernel_size, temporal_range)


@_correlation_backward.register_fake
def _correlation_backward_fake(grad_y: Tensor, x: Tensor, kernel_size: int, temporal_range: int) -> Tensor:
    return torch.empty_like(x)


def _setup_context(ctx, inputs, output) -> None:
    x, ctx.kernel_size, ctx.temporal_range = inputs
    ctx.save_for_backward(x)


def _backward(ctx, grad_y: Tensor):
    (x,) = ctx.saved_tensors
    grad_x = torch.ops.dcf.correlation_backward(grad_y, x, ctx.kernel_size, ctx.temporal_range)
    return grad_x, None, None


_correlation.register_autograd(_backward, setup_context=_setup_context)


def correlation_macs(x_shape: tuple[int, ...] | torch.Size, kernel_size: int, temporal_range: int) -> int:
    """Multiply-adds of one forward call (the paper's Appendix C): ``N*T*H*W*C*K*K*2L``."""
    n, c, t, h, w = x_shape
    return n * c * t * h * w * kernel_size * kernel_size * 2 * temporal_range


# torch.utils.flop_counter counts a multiply-add as 2 FLOPs (as it does for conv and matmul).
@register_flop_formula(torch.ops.dcf.correlation)
def _correlation_flops(x_shape, kernel_size, temporal_range, *args, **kwargs) -> int:
    return 2 * correlation_macs(x_shape, kernel_size, temporal_range)


# The gradient reaches x through both factors of every product: twice the forward work.
@register_flop_formula(torch.ops.dcf.correlation_backward)
def _correlation_backward_flops(grad_shape, x_shape, kernel_size, temporal_range, *args, **kwargs) -> int:
    return 4 * correlation_macs(x_shape, kernel_size, temporal_range)
