"""Small exportable checkpoints whose DCF blocks matter: batch-norm scales and statistics are
randomised, so a wrong correlation changes the logits (a fresh DCF block is the identity)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from dcf.checkpoint import CheckpointConfig, load_checkpoint, save_checkpoint
from dcf.data.spec import InputSpec

TINY = {
    "x3d_xs": {"widths": [8, 16, 24, 32], "stem_width": 8, "head_width": 64},
    "x3d_xs_dcf": {"widths": [8, 16, 24, 32], "stem_width": 8, "head_width": 64},
    # Wide enough that its DCF blocks take both forms of conv2 (DCFBlock._conv2): stage outputs of
    # 128, 128 and 256 channels against volumes of 100, 200 and 250 concatenate, sum, concatenate.
    "r2plus1d_r50_dcf": {"depths": [1, 1, 1, 1], "widths": [32, 32, 64, 64], "stem_width": 8},
}


def randomise_norms(model: nn.Module, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm3d):
                c = module.num_features
                module.weight.copy_(torch.rand(c, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(c, generator=generator) * 0.1)
                module.running_mean.copy_(torch.randn(c, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(c, generator=generator) + 0.5)


def tiny_checkpoint(
    tmp: Path,
    architecture: str,
    frames: int = 4,
    size: int = 32,
    classes: int = 5,
    seed: int = 0,
    **kwargs: Any,
) -> nn.Module:
    """A saved and reloaded tiny checkpoint (so it carries labels and an input spec)."""
    config = CheckpointConfig(
        architecture,
        tuple(f"class {i}" for i in range(classes)),
        InputSpec.for_crop(frames, size),
        model_kwargs={**TINY[architecture], **kwargs},
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = config.build()
    randomise_norms(model, seed)
    path = tmp / f"{architecture}.safetensors"
    save_checkpoint(path, model, config)
    return load_checkpoint(path)
