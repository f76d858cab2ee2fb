"""X3D (Feichtenhofer, CVPR 2020) as in the paper's Table 7, sizes XS/S/M/L.

Layout follows the reference implementation (PyTorchVideo ``create_x3d``): a (1x3x3 then
depthwise 5x1x1) stem, bottlenecks with a depthwise 3x3x3 conv, squeeze-excitation on every other
block and Swish, and a 1x1x1 -> pool -> 1x1x1 -> linear head.
"""

from __future__ import annotations

from torch import Tensor, nn

from dcf.models.backbone import VideoBackbone
from dcf.models.layers import Activation, NormLayer, ReLU, SqueezeExcitation, init_weights, round_width


class X3DBottleneck(nn.Module):
    """1x1x1 -> depthwise 3x3x3 (spatial stride) -> [SE] -> Swish -> 1x1x1, plus the shortcut."""

    def __init__(
        self,
        in_channels: int,
        inner_channels: int,
        out_channels: int,
        *,
        stride: int,
        use_se: bool,
        norm_layer: NormLayer,
        activation: Activation,
    ) -> None:
        super().__init__()
        self.conv_a = nn.Conv3d(in_channels, inner_channels, 1, bias=False)
        self.bn_a = norm_layer(inner_channels)
        self.act_a = activation()
        self.conv_b = nn.Conv3d(
            inner_channels,
            inner_channels,
            3,
            stride=(1, stride, stride),
            padding=1,
            groups=inner_channels,
            bias=False,
        )
        self.bn_b = norm_layer(inner_channels)
        self.se = (
            SqueezeExcitation(inner_channels, round_width(inner_channels, 1 / 16))
            if use_se
            else nn.Identity()
        )
        self.act_b = nn.SiLU()
        self.conv_c = nn.Conv3d(inner_channels, out_channels, 1, bias=False)
        self.bn_c = norm_layer(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv3d(in_channels, out_channels, 1, stride=(1, stride, stride), bias=False),
                norm_layer(out_channels),
            )
        self.act_out = activation()

    def forward(self, x: Tensor) -> Tensor:
        y = self.act_a(self.bn_a(self.conv_a(x)))
        y = self.act_b(self.se(self.bn_b(self.conv_b(y))))
        y = self.bn_c(self.conv_c(y))
        return self.act_out(y + self.shortcut(x))


class X3DHead(nn.Module):
    """1x1x1 conv + norm -> global pool -> 1x1x1 conv -> dropout -> linear."""

    def __init__(
        self,
        in_channels: int,
        inner_channels: int,
        head_channels: int,
        num_classes: int,
        *,
        dropout: float,
        norm_layer: NormLayer,
        activation: Activation,
    ) -> None:
        super().__init__()
        self.pre_conv = nn.Conv3d(in_channels, inner_channels, 1, bias=False)
        self.pre_norm = norm_layer(inner_channels)
        self.pre_act = activation()
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.post_conv = nn.Conv3d(inner_channels, head_channels, 1, bias=False)
        self.post_act = activation()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(head_channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool(self.pre_act(self.pre_norm(self.pre_conv(x))))  # (N, C, 1, 1, 1)
        x = self.post_act(self.post_conv(x)).flatten(1)
        return self.fc(self.dropout(x))


class X3D(VideoBackbone):
    """X3D backbone; the XS/S/M sizes share one network and differ in clip size, L is deeper."""

    def __init__(
        self,
        *,
        num_classes: int = 400,
        depths: tuple[int, ...] = (3, 5, 11, 7),
        widths: tuple[int, ...] = (24, 48, 96, 192),  # stage output channels
        stem_width: int = 24,
        expansion: float = 2.25,  # bottleneck inner width / output width
        head_width: int = 2048,
        stem_temporal_kernel: int = 5,
        dropout: float = 0.5,
        norm_layer: NormLayer = nn.BatchNorm3d,
        activation: Activation = ReLU,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv3d(3, stem_width, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1), bias=False),
            nn.Conv3d(
                stem_width,
                stem_width,
                (stem_temporal_kernel, 1, 1),
                padding=(stem_temporal_kernel // 2, 0, 0),
                groups=stem_width,
                bias=False,
            ),
            norm_layer(stem_width),
            activation(),
        )
        stages = []
        in_channels = stem_width
        for depth, width in zip(depths, widths, strict=True):
            inner = round(width * expansion)
            blocks = [
                X3DBottleneck(
                    in_channels if i == 0 else width,
                    inner,
                    width,
                    stride=2 if i == 0 else 1,
                    use_se=i % 2 == 0,
                    norm_layer=norm_layer,
                    activation=activation,
                )
                for i in range(depth)
            ]
            stages.append(nn.Sequential(*blocks))
            in_channels = width
        self.stages = nn.ModuleList(stages)
        self.stage_channels = tuple(widths)
        self.dcf_reduction = 2
        self.stage_strides = (2,) * len(widths)
        self.head = X3DHead(
            widths[-1],
            round(widths[-1] * expansion),
            head_width,
            num_classes,
            dropout=dropout,
            norm_layer=norm_layer,
            activation=activation,
        )
        self.apply(init_weights)
