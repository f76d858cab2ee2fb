"""Backbones, DCF networks and the model registry."""

from dcf.models import zoo as _zoo  # noqa: F401  (registers the models)
from dcf.models.complexity import count_macs, count_parameters
from dcf.models.dcf_net import DCFConfig, DCFNet
from dcf.models.layers import Correlation, DCFBlock
from dcf.models.r2plus1d import R2Plus1D
from dcf.models.registry import ModelEntry, build_model, get_model_entry, list_models
from dcf.models.x3d import X3D

__all__ = [
    "X3D",
    "Correlation",
    "DCFBlock",
    "DCFConfig",
    "DCFNet",
    "ModelEntry",
    "R2Plus1D",
    "build_model",
    "count_macs",
    "count_parameters",
    "get_model_entry",
    "list_models",
]
