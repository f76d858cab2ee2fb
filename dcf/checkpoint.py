"""Checkpoints: one safetensors file holding the weights and, in its header, a JSON config.

The config names the architecture and its JSON-able constructor arguments, the class labels, the
input spec and the training recipe, so the file alone rebuilds a ready model. Loading reads
tensors and JSON only: nothing is ever unpickled. Writes are atomic (temp file, then rename).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save
from torch import nn

from dcf._io import atomic_write_bytes
from dcf._json import lists_to_tuples
from dcf.data.spec import InputSpec
from dcf.models import DCFConfig, build_model

FORMAT = "dcf-checkpoint"
FORMAT_VERSION = 1
_META_KEY = "dcf_config"


@dataclass(frozen=True)
class CheckpointConfig:
    """Everything besides the weights that a checkpoint carries."""

    architecture: str  # a name from dcf.list_models()
    classes: tuple[str, ...]  # label of each output, in order
    input_spec: InputSpec
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # JSON-able build_model overrides
    recipe: dict[str, Any] = field(default_factory=dict)  # how it was trained, for the record

    def to_json(self) -> str:
        from dcf import __version__

        return json.dumps(
            {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "dcf_version": __version__,
                "architecture": self.architecture,
                "classes": list(self.classes),
                "input_spec": self.input_spec.to_dict(),
                "model_kwargs": self.model_kwargs,
                "recipe": self.recipe,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> CheckpointConfig:
        data = json.loads(text)
        if data.get("format") != FORMAT or data.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"unsupported checkpoint config (format={data.get('format')!r}, "
                f"version={data.get('format_version')!r}); expected {FORMAT!r} version {FORMAT_VERSION}"
            )
        return cls(
            architecture=data["architecture"],
            classes=tuple(data["classes"]),
            input_spec=InputSpec.from_dict(data["input_spec"]),
            model_kwargs=data.get("model_kwargs", {}),
            recipe=data.get("recipe", {}),
        )

    def build(self) -> nn.Module:
        """A freshly initialised model of this architecture and head size."""
        kwargs = lists_to_tuples(self.model_kwargs)
        if isinstance(kwargs.get("dcf"), dict):
            kwargs["dcf"] = DCFConfig(**lists_to_tuples(kwargs["dcf"]))
        return build_model(self.architecture, num_classes=len(self.classes), **kwargs)


def model_kwargs_to_json(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``build_model`` overrides in JSON form (a :class:`DCFConfig` becomes a dict)."""
    return {k: dataclasses.asdict(v) if isinstance(v, DCFConfig) else v for k, v in kwargs.items()}


def atomic_save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """Writes a safetensors file so that readers see the old file or the new one, never half."""
    atomic_write_bytes(
        path, save({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata=metadata)
    )


def save_checkpoint(path: str | Path, model: nn.Module, config: CheckpointConfig) -> None:
    """Writes ``model``'s weights (parameters and buffers) and ``config`` to ``path``."""
    atomic_save(dict(model.state_dict()), Path(path), {_META_KEY: config.to_json()})


DEMO = "demo"  # names the bundled demo checkpoint wherever a checkpoint path is taken


def resolve_checkpoint(path: str | Path) -> Path:
    """``"demo"`` is the demo checkpoint shipped inside the package; anything else is a file path."""
    return Path(__file__).parent / "assets" / "demo.safetensors" if str(path) == DEMO else Path(path)


def read_checkpoint(path: str | Path) -> tuple[CheckpointConfig, dict[str, torch.Tensor]]:
    """The config and the tensors of a checkpoint file (or of ``"demo"``).

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If it is not a DCF checkpoint (not safetensors, or no DCF config).
    """
    path = resolve_checkpoint(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"{path} is not a valid safetensors file: {exc}") from None
    if _META_KEY not in metadata:
        raise ValueError(f"{path} is a safetensors file without a DCF config (metadata key {_META_KEY!r})")
    return CheckpointConfig.from_json(metadata[_META_KEY]), tensors


def load_checkpoint(path: str | Path) -> nn.Module:
    """The model of a checkpoint, in eval mode, carrying ``classes``, ``input_spec`` and ``checkpoint_config``.

    ``path`` is a ``.safetensors`` checkpoint, or ``"demo"`` for the bundled demo model (a narrow
    X3D-XS with DCF trained on the synthetic motion dataset; see the README).

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If it is not a DCF checkpoint or its weights do not fit its architecture.
    """
    config, tensors = read_checkpoint(path)
    model = config.build()
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{path}: weights do not match {config.architecture}: {exc}") from None
    model.eval()
    # Plain attributes on the module (not parameters or buffers), read back through checkpoint_of.
    setattr(model, "classes", list(config.classes))  # noqa: B010
    setattr(model, "input_spec", config.input_spec)  # noqa: B010
    setattr(model, "checkpoint_config", config)  # noqa: B010
    return model


def checkpoint_of(model: nn.Module) -> CheckpointConfig:
    """The config a model was loaded with by :func:`load_checkpoint`.

    Raises:
        ValueError: If the model did not come from a checkpoint.
    """
    config = getattr(model, "checkpoint_config", None)
    if not isinstance(config, CheckpointConfig):
        raise ValueError(
            "this model was not loaded with dcf.load_checkpoint and carries no labels or input spec"
        )
    return config
