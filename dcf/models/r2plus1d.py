"""R(2+1)D ResNet-50/101 as in the paper's Table 6.

The paper's simplifications of R(2+1)D: the temporal conv is a depthwise 3x1x1 and there is no
temporal downsampling. Each bottleneck is 1x1x1 -> depthwise 3x1x1 -> 1x3x3 -> 1x1x1; the temporal
conv sits right before the spatial one with no norm between them and starts as the identity, so
the network starts out as a frame-wise 2D ResNet and ImageNet ResNet weights map onto it directly.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dcf.models.backbone import VideoBackbone
from dcf.models.layers import Activation, NormLayer, ReLU, init_weights


class R2Plus1DBottleneck(nn.Module):
    """ResNet bottleneck with a depthwise temporal conv before the spatial 3x3."""

    expansion = 4

    def __init__(
        self, in_channels: int, width: int, *, stride: int, norm_layer: NormLayer, activation: Activation
    ) -> None:
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = nn.Conv3d(in_channels, width, 1, bias=False)
        self.bn1 = norm_layer(width)
        self.act1 = activation()
        self.conv_t = nn.Conv3d(width, width, (3, 1, 1), padding=(1, 0, 0), groups=width, bias=False)
        self.conv2 = nn.Conv3d(
            width, width, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False
        )
        self.bn2 = norm_layer(width)
        self.act2 = activation()
        self.conv3 = nn.Conv3d(width, out_channels, 1, bias=False)
        self.bn3 = norm_layer(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv3d(in_channels, out_channels, 1, stride=(1, stride, stride), bias=False),
                norm_layer(out_channels),
            )
        self.act3 = activation()

    def forward(self, x: Tensor) -> Tensor:
        y = self.act1(self.bn1(self.conv1(x)))
        y = self.act2(self.bn2(self.conv2(self.conv_t(y))))
        y = self.bn3(self.conv3(y))
        return self.act3(y + self.shortcut(x))


class R2Plus1DHead(nn.Module):
    """Global average pool -> dropout -> linear."""

    def __init__(self, in_channels: int, num_classes: int, *, dropout: float) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.dropout(self.pool(x).flatten(1)))


class R2Plus1D(VideoBackbone):
    """R(2+1)D ResNet backbone (depths (3, 4, 6, 3) for ResNet-50, (3, 4, 23, 3) for ResNet-101)."""

    def __init__(
        self,
        *,
        num_classes: int = 400,
        depths: tuple[int, ...] = (3, 4, 6, 3),
        widths: tuple[int, ...] = (64, 128, 256, 512),  # bottleneck widths; outputs are 4x
        stem_width: int = 64,
        dropout: float = 0.5,
        norm_layer: NormLayer = nn.BatchNorm3d,
        activation: Activation = ReLU,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv3d(3, stem_width, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False),
            norm_layer(stem_width),
            activation(),
            nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
        )
        stages = []
        in_channels = stem_width
        strides = tuple(1 if i == 0 else 2 for i in range(len(widths)))
        for depth, width, stride in zip(depths, widths, strides, strict=True):
            blocks = []
            for i in range(depth):
                blocks.append(
                    R2Plus1DBottleneck(
                        in_channels,
                        width,
                        stride=stride if i == 0 else 1,
                        norm_layer=norm_layer,
                        activation=activation,
                    )
                )
                in_channels = width * R2Plus1DBottleneck.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.stage_channels = tuple(w * R2Plus1DBottleneck.expansion for w in widths)
        self.dcf_reduction = 4
        self.stage_strides = strides
        self.head = R2Plus1DHead(in_channels, num_classes, dropout=dropout)
        self.apply(init_weights)
        for module in self.modules():
            if isinstance(module, R2Plus1DBottleneck):
                _init_identity_in_time(module.conv_t)


def _init_identity_in_time(conv: nn.Conv3d) -> None:
    """Depthwise temporal kernel (1, 1, k, 1, 1) -> a delta at the centre tap."""
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[:, :, conv.kernel_size[0] // 2] = 1.0
