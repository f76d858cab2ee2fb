"""Parameter and multiply-add counts, measured by running the model on meta tensors (no compute)."""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (buffers such as BN running stats excluded)."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-adds of one forward pass: convolutions, linear layers and the correlation op.

    This is the "FLOPs" of the paper's Table 3 (and of X3D), which counts a multiply-add once.
    The model is moved to the meta device, so nothing is computed and no memory is used.
    """
    on_meta = all(p.device.type == "meta" for p in model.parameters())
    meta = model if on_meta else copy.deepcopy(model).to("meta")
    with FlopCounterMode(display=False) as counter:
        meta(torch.empty(input_shape, device="meta"))
    return counter.get_total_flops() // 2  # the counter counts a multiply-add as 2 FLOPs
