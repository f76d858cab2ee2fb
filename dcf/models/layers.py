"""Building blocks shared by the backbones and the DCF networks."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor, nn

from dcf.ops import correlation

NormLayer = Callable[[int], nn.Module]
Activation = Callable[[], nn.Module]
ReLU: Activation = partial(nn.ReLU, inplace=True)


def round_width(width: float, multiplier: float, divisor: int = 8, min_width: int = 8) -> int:
    """X3D's channel rounding: ``width * multiplier`` to a multiple of ``divisor``."""
    width *= multiplier
    out = max(min_width, int(width + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * width else out


def init_weights(module: nn.Module) -> None:
    """He init for convs, unit norms, small linear heads (applied with ``module.apply``)."""
    if isinstance(module, nn.Conv3d):
        nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm3d, nn.GroupNorm, nn.LayerNorm)):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.01)
        nn.init.zeros_(module.bias)


class SqueezeExcitation(nn.Module):
    """Channel gating from the clip-average of each channel (Hu et al.), as used by X3D."""

    def __init__(self, channels: int, hidden: int, activation: Activation = ReLU) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.fc1 = nn.Conv3d(channels, hidden, 1)
        self.act = activation()
        self.fc2 = nn.Conv3d(hidden, channels, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gate(self.fc2(self.act(self.fc1(self.pool(x)))))


class Correlation(nn.Module):
    """Module form of :func:`dcf.ops.correlation` (no parameters)."""

    def __init__(self, kernel_size: int = 5, temporal_range: int = 2) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.temporal_range = temporal_range

    @property
    def out_channels(self) -> int:
        return self.kernel_size * self.kernel_size * 2 * self.temporal_range

    def forward(self, x: Tensor) -> Tensor:
        return correlation(x, self.kernel_size, self.temporal_range)  # (N, K*K*2L, T, H, W)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, temporal_range={self.temporal_range}"


class DCFBlock(nn.Module):
    """The DCF block (paper Algorithm 1) on a stage output ``F`` with ``channels`` channels.

    ``x = act(bn1(conv1(F)))``; ``S = correlation(x)``; ``F' = act(F + bn2(conv2([S, *pyramid])))``.
    ``bn2`` starts with zero scale, so a fresh block is the identity on ``F >= 0`` (a ReLU output):
    inserting it into a pretrained network does not change what that network computes.
    """

    def __init__(
        self,
        channels: int,
        reduced_channels: int,
        *,
        kernel_size: int = 5,
        temporal_range: int = 2,
        pyramid_channels: int = 0,  # channels of the volumes coming up from earlier blocks
        norm_layer: NormLayer = nn.BatchNorm3d,
        activation: Activation = ReLU,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(channels, reduced_channels, 1, bias=False)
        self.bn1 = norm_layer(reduced_channels)
        self.act1 = activation()
        self.correlation = Correlation(kernel_size, temporal_range)
        self.conv2 = nn.Conv3d(self.correlation.out_channels + pyramid_channels, channels, 1, bias=False)
        self.bn2 = norm_layer(channels)
        self.act2 = activation()
        self.apply(init_weights)
        nn.init.zeros_(self.bn2.weight)  # type: ignore[arg-type]  # norm layers carry a weight

    def forward(self, features: Tensor, pyramid: list[Tensor]) -> tuple[Tensor, Tensor]:
        """Returns the enhanced features and this block's correlation volume ``S``."""
        x = self.act1(self.bn1(self.conv1(features)))  # (N, C/r, T, H, W)
        volume = self.correlation(x)  # (N, K*K*2L, T, H, W)
        # The residual added into the norm's fresh output, not into a new stage-sized tensor: the
        # same values, one allocation fewer (eager R(2+1)D-50+DCF 3% faster at batch 8, issue #15).
        return self.act2(self.bn2(self._conv2([volume, *pyramid])).add_(features)), volume

    @property
    def concatenate_volumes(self) -> bool:
        """How conv2 reads [S, *pyramid] (:meth:`_conv2`): one convolution of the concatenation where
        it is no wider than conv2's output (R(2+1)D-50: 200 channels into 512), else one per volume.
        Chosen by CPU inference measurements; it holds for training and GPUs too (where training
        keeps the concatenation for the backward pass: activation memory of the volumes' size)."""
        return self.conv2.in_channels <= self.conv2.out_channels

    def _conv2(self, parts: list[Tensor]) -> Tensor:
        """``conv2`` of the channel concatenation of ``parts``, in the cheaper of two forms of the
        same values (the same in PyTorch and in each runtime the export runs in):

        * where the concatenation is no wider than the output (``concatenate_volumes``; R(2+1)D-50,
          200 or 250 volume channels into 512 or 1024), one convolution of it: copying the narrow
          volumes costs less than summing wide outputs, and one long matrix product runs faster
          than several short ones;
        * else (X3D, 200 or 250 volume channels into 48 or 96) one 1x1x1 convolution per part with
          its slice of the weight, summed: the volumes are never copied, and the sums are narrow.
        """
        if len(parts) == 1:
            return self.conv2(parts[0])
        if self.concatenate_volumes:
            return self.conv2(torch.cat(parts, dim=1))
        weights = self.conv2.weight.split([part.shape[1] for part in parts], dim=1)
        out = nn.functional.conv3d(parts[0], weights[0])
        for part, weight in zip(parts[1:], weights[1:], strict=True):
            out = out + nn.functional.conv3d(part, weight)
        return out
