"""Calls into the compiled CPU kernel of the correlation op, for tests that measure it (some run in
a subprocess, which imports this module)."""

from __future__ import annotations

import torch

from dcf.ops import _cpu_kernel


def backward_inputs(shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random x and grad_y for K=5, L=2, and a zeroed (resident) grad_x."""
    return torch.randn(shape), torch.randn(shape[0], 100, *shape[2:]), torch.zeros(shape)


def kernel_backward(x: torch.Tensor, grad_y: torch.Tensor, grad_x: torch.Tensor) -> None:
    """The compiled float32 backward, K=5, L=2, on 2 threads, called from this thread."""
    lib = _cpu_kernel._library()
    assert lib is not None
    status = lib.dcf_correlation_backward_f32(
        grad_y.data_ptr(), x.data_ptr(), grad_x.data_ptr(), *x.shape, 5, 2, 2
    )
    assert status == 0
