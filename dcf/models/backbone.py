"""The shape every backbone shares: stem -> residual stages -> classification head."""

from __future__ import annotations

from torch import Tensor, nn


class VideoBackbone(nn.Module):
    """``stem`` -> ``stages`` -> ``head`` on clips (N, 3, T, H, W), giving logits (N, classes).

    Subclasses fill the three parts and describe their stages, which is what a DCF network needs to
    attach its blocks: ``stages[0]`` is the paper's *stage2* (spatial stride 4 at its output).
    """

    stem: nn.Module
    stages: nn.ModuleList
    head: nn.Module
    stage_channels: tuple[int, ...]  # output channels of each stage
    stage_strides: tuple[int, ...]  # spatial stride each stage applies to its input (1 or 2)
    dcf_reduction: int  # a DCF block reduces a stage's channels by this before correlating

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)  # (N, C, T, H/4 or H/2, W/...)
        for stage in self.stages:
            x = stage(x)
        return self.head(x)
