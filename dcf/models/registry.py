"""Model registry: each variant is a small function registered under its public name."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

ModelBuilder = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelEntry:
    """A registered model and the clip it is designed for."""

    name: str
    builder: ModelBuilder
    num_frames: int  # frames per clip at the model's reference setting
    crop_size: int  # square crop side, pixels
    description: str


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    name: str, builder: ModelBuilder, *, num_frames: int, crop_size: int, description: str
) -> None:
    """Registers ``builder`` (called with ``num_classes`` and keyword overrides) under ``name``.

    Raises:
        ValueError: If ``name`` is already registered.
    """
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered")
    _REGISTRY[name] = ModelEntry(name, builder, num_frames, crop_size, description)


def list_models() -> list[str]:
    """Names accepted by :func:`build_model`, sorted."""
    return sorted(_REGISTRY)


def get_model_entry(name: str) -> ModelEntry:
    """The registry entry for ``name``.

    Raises:
        ValueError: For an unknown name, listing close matches and all names.
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, _REGISTRY, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"unknown model {name!r}.{hint} Available: {', '.join(list_models())}") from None


def build_model(name: str, num_classes: int = 400, **kwargs: object) -> nn.Module:
    """Builds a registered model with freshly initialised weights.

    Args:
        name: A name from :func:`list_models`, e.g. ``"x3d_s_dcf"``.
        num_classes: Size of the classification head.
        **kwargs: Passed to the model's constructor (e.g. ``dropout``).
    """
    return get_model_entry(name).builder(num_classes=num_classes, **kwargs)
