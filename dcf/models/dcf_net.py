"""DCF networks: a backbone with DCF blocks after chosen stages, linked by the spatial pyramid."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from dcf.models.backbone import VideoBackbone
from dcf.models.layers import Activation, DCFBlock, NormLayer, ReLU
from dcf.ops import _cpu_kernel


@dataclass(frozen=True)
class DCFConfig:
    """Where and how DCF blocks are attached (paper Sec. 3.3; defaults are the paper's)."""

    stages: tuple[int, ...] = (2, 3, 4)  # paper stage numbers; stage2 is the first residual stage
    temporal_ranges: tuple[int, ...] = (2, 2, 1)  # L per block (Sec. 3.3: L = 1 at the last stage)
    kernel_size: int = 5  # K, the spatial window
    pyramid: bool = True  # pass each block's volume, pooled, to every later block
    # Channels into the correlation = stage channels / reduction; None takes the backbone's
    # own (X3D halves, R(2+1)D quarters, Sec. 3.3).
    reduction: int | None = None

    def __post_init__(self) -> None:
        if len(self.stages) != len(self.temporal_ranges):
            raise ValueError(
                f"DCFConfig: one temporal range per stage expected, got stages={self.stages} and "
                f"temporal_ranges={self.temporal_ranges}"
            )
        if list(self.stages) != sorted(set(self.stages)) or (self.stages and self.stages[0] < 2):
            raise ValueError(f"DCFConfig: stages must be increasing stage numbers >= 2, got {self.stages}")


def pool_pyramid(volume: Tensor) -> Tensor:
    """One pyramid step: 2x2 spatial average pool, rounding up like the stride-2 stages (a window
    cut by an odd edge averages the values it holds). At inference on the CPU it runs on the
    compiled kernel (:func:`dcf.ops._cpu_kernel.pyramid_step`, 2.5-6.4x ``avg_pool3d`` on one
    inference's volumes in ``bench.correlation_cpu``); training, GPUs and the exporters see the
    ``avg_pool3d``."""
    if _cpu_kernel.pools(volume):
        return _cpu_kernel.pyramid_step(volume)
    # ceil_mode only matters for odd sizes; asking for it anyway sends ONNX Runtime down a pooling
    # path ~4x slower, so the exported graph carries it only where it changes the result.
    odd = bool(volume.shape[-2] % 2 or volume.shape[-1] % 2)
    return F.avg_pool3d(volume, kernel_size=(1, 2, 2), stride=(1, 2, 2), ceil_mode=odd)


class DCFNet(nn.Module):
    """A backbone with DCF blocks (paper Fig. 2, Algorithm 1).

    After each chosen stage, a :class:`DCFBlock` correlates the stage output and fuses its own
    volume with the volumes of the earlier blocks, each average-pooled 2x2 once per stride-2 stage
    in between. The backbone stays reachable as ``self.backbone`` (e.g. to load pretrained weights).
    """

    def __init__(
        self,
        backbone: VideoBackbone,
        config: DCFConfig = DCFConfig(),
        *,
        norm_layer: NormLayer = nn.BatchNorm3d,
        activation: Activation = ReLU,
    ) -> None:
        super().__init__()
        num_stages = len(backbone.stages)
        if config.stages and config.stages[-1] > num_stages + 1:
            raise ValueError(
                f"DCFConfig: the backbone has stages 2..{num_stages + 1}, got stages={config.stages}"
            )
        self.backbone = backbone
        self.config = config
        self.blocks = nn.ModuleDict()
        pyramid_channels = 0
        for stage, temporal_range in zip(config.stages, config.temporal_ranges, strict=True):
            channels = backbone.stage_channels[stage - 2]
            block = DCFBlock(
                channels,
                channels // (config.reduction or backbone.dcf_reduction),
                kernel_size=config.kernel_size,
                temporal_range=temporal_range,
                pyramid_channels=pyramid_channels,
                norm_layer=norm_layer,
                activation=activation,
            )
            self.blocks[f"stage{stage}"] = block
            if config.pyramid:
                pyramid_channels += block.correlation.out_channels

    def forward(self, x: Tensor) -> Tensor:
        return self._run(x, None)

    def forward_with_volumes(self, x: Tensor) -> tuple[Tensor, dict[int, Tensor]]:
        """The logits and each block's correlation volume ``S`` (N, K*K*2L, T', H', W'), by stage
        number (what the correlation-field picture draws, :mod:`dcf.inference.fields`)."""
        volumes: dict[int, Tensor] = {}
        return self._run(x, volumes), volumes

    def _run(self, x: Tensor, volumes: dict[int, Tensor] | None) -> Tensor:
        x = self.backbone.stem(x)
        pyramid: list[Tensor] = []  # earlier blocks' volumes, at the current resolution
        last = self.config.stages[-1] if self.config.stages else 0
        for number, stage, stride in zip(
            range(2, len(self.backbone.stages) + 2),
            self.backbone.stages,
            self.backbone.stage_strides,
            strict=True,
        ):
            x = stage(x)  # (N, C, T, H, W)
            if number > last:
                continue
            if stride == 2:
                pyramid = [pool_pyramid(v) for v in pyramid]
            if f"stage{number}" in self.blocks:
                block = self.blocks[f"stage{number}"]
                for v in pyramid:
                    if v.shape[-2:] != x.shape[-2:]:
                        raise RuntimeError(
                            f"DCF pyramid: a volume of spatial size {tuple(v.shape[-2:])} met stage "
                            f"{number} features of size {tuple(x.shape[-2:])}"
                        )
                x, volume = block(x, pyramid)
                if volumes is not None:
                    volumes[number] = volume
                if self.config.pyramid:
                    pyramid.append(volume)
        return self.backbone.head(x)
