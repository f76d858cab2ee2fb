"""The registered models: X3D-XS/S/M/L and R(2+1)D-50/101, each plain and with DCF (``_dcf``)."""

from __future__ import annotations

from functools import partial
from typing import Any

from dcf.models.backbone import VideoBackbone
from dcf.models.dcf_net import DCFConfig, DCFNet
from dcf.models.r2plus1d import R2Plus1D
from dcf.models.registry import register_model
from dcf.models.x3d import X3D

# name -> (backbone class, constructor overrides, frames, crop, title)
_BACKBONES: dict[str, tuple[type[VideoBackbone], dict[str, Any], int, int, str]] = {
    "x3d_xs": (X3D, {}, 4, 160, "X3D-XS"),
    "x3d_s": (X3D, {}, 13, 160, "X3D-S"),
    "x3d_m": (X3D, {}, 16, 224, "X3D-M"),
    "x3d_l": (X3D, {"depths": (5, 10, 25, 15)}, 16, 312, "X3D-L"),
    "r2plus1d_r50": (R2Plus1D, {"depths": (3, 4, 6, 3)}, 8, 224, "R(2+1)D ResNet-50"),
    "r2plus1d_r101": (R2Plus1D, {"depths": (3, 4, 23, 3)}, 8, 224, "R(2+1)D ResNet-101"),
}


# The paper's Table 3 (174 classes, at each model's clip size): name -> (parameters, multiply-adds).
PAPER_TABLE3: dict[str, tuple[float, float]] = {
    "x3d_s": (3.3e6, 2.0e9),
    "x3d_s_dcf": (3.4e6, 2.2e9),
    "x3d_m": (3.3e6, 4.7e9),
    "x3d_m_dcf": (3.4e6, 5.2e9),
    "r2plus1d_r50": (23.9e6, 32.7e9),
    "r2plus1d_r50_dcf": (24.6e6, 35.9e9),
}


def _build_backbone(cls: type[VideoBackbone], preset: dict[str, Any], **kwargs: Any) -> VideoBackbone:
    return cls(**{**preset, **kwargs})


def _build_dcf(
    cls: type[VideoBackbone], preset: dict[str, Any], *, dcf: DCFConfig | None = None, **kwargs: Any
) -> DCFNet:
    layers = {k: kwargs[k] for k in ("norm_layer", "activation") if k in kwargs}
    return DCFNet(_build_backbone(cls, preset, **kwargs), dcf or DCFConfig(), **layers)


for _name, (_cls, _preset, _frames, _crop, _title) in _BACKBONES.items():
    register_model(
        _name,
        partial(_build_backbone, _cls, _preset),
        num_frames=_frames,
        crop_size=_crop,
        description=f"{_title}",
    )
    register_model(
        f"{_name}_dcf",
        partial(_build_dcf, _cls, _preset),
        num_frames=_frames,
        crop_size=_crop,
        description=f"{_title} + DCF",
    )
