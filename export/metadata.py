"""What an exported model says about itself, so that a server needs the file alone.

ONNX files carry it as ``metadata_props`` (string keys under ``dcf.``); TensorRT engines, which
have no such field, carry it in a JSON sidecar next to the plan (see :mod:`dcf.export.tensorrt`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import onnx

from dcf.checkpoint import CheckpointConfig
from dcf.data.spec import InputSpec
from dcf.export.names import CORRELATION_DOMAIN, CORRELATION_OP

FORMAT = "dcf-onnx"
FORMAT_VERSION = 1
_PREFIX = "dcf."

Flavour = Literal["custom", "portable"]  # custom: dcf::DCFCorrelation nodes; portable: standard ops
Precision = Literal["fp32", "fp16"]


@dataclass(frozen=True)
class ModelMetadata:
    """Labels, input contract and provenance of an exported model."""

    architecture: str
    classes: tuple[str, ...]
    input_spec: InputSpec
    dcf_version: str
    flavour: Flavour
    precision: Precision = "fp32"  # of the weights and compute; inputs and outputs stay float32
    dynamic_frames: bool = False  # the frames axis of the input is dynamic (the batch axis always is)
    dynamic_size: bool = False  # height and width are dynamic (multiples of the model's stride)
    opset: int = 18
    model_kwargs: dict[str, Any] | None = None

    @classmethod
    def from_checkpoint(cls, config: CheckpointConfig, **fields: Any) -> ModelMetadata:
        from dcf import __version__

        return cls(
            architecture=config.architecture,
            classes=config.classes,
            input_spec=config.input_spec,
            dcf_version=__version__,
            model_kwargs=config.model_kwargs,
            **fields,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "architecture": self.architecture,
            "classes": list(self.classes),
            "input_spec": self.input_spec.to_dict(),
            "dcf_version": self.dcf_version,
            "flavour": self.flavour,
            "precision": self.precision,
            "dynamic_frames": self.dynamic_frames,
            "dynamic_size": self.dynamic_size,
            "opset": self.opset,
            "model_kwargs": self.model_kwargs or {},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "model") -> ModelMetadata:
        if data.get("format") != FORMAT or data.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{source} carries no DCF metadata of a known version (format={data.get('format')!r}, "
                f"format_version={data.get('format_version')!r}; expected {FORMAT!r} version {FORMAT_VERSION}). "
                "Export it with 'dcf export onnx'."
            )
        try:
            return cls(
                architecture=str(data["architecture"]),
                classes=tuple(str(c) for c in data["classes"]),
                input_spec=InputSpec.from_dict(data["input_spec"]),
                dcf_version=str(data["dcf_version"]),
                flavour=data["flavour"],
                precision=data["precision"],
                dynamic_frames=bool(data["dynamic_frames"]),
                dynamic_size=bool(data["dynamic_size"]),
                opset=int(data["opset"]),
                model_kwargs=dict(data["model_kwargs"]),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{source}: incomplete DCF metadata ({exc!r} missing or malformed)") from None

    def to_onnx_props(self) -> dict[str, str]:
        """``metadata_props`` entries: one key per field, JSON values."""
        return {_PREFIX + key: json.dumps(value) for key, value in self.to_dict().items()}

    @classmethod
    def from_onnx_props(cls, props: dict[str, str], source: str = "model") -> ModelMetadata:
        data = {}
        for key, text in props.items():
            if key.startswith(_PREFIX):
                try:
                    data[key.removeprefix(_PREFIX)] = json.loads(text)
                except json.JSONDecodeError:
                    raise ValueError(f"{source}: metadata {key!r} is not valid JSON") from None
        return cls.from_dict(data, source)


def set_onnx_metadata(model: onnx.ModelProto, metadata: ModelMetadata) -> None:
    """Writes ``metadata`` into ``model.metadata_props`` (replacing earlier DCF entries)."""
    kept = [p for p in model.metadata_props if not p.key.startswith(_PREFIX)]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in metadata.to_onnx_props().items():
        model.metadata_props.add(key=key, value=value)


def read_onnx_metadata(model: str | Path | onnx.ModelProto) -> ModelMetadata:
    """The metadata of an exported ONNX file (or loaded model).

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If it is not an ONNX file or carries no DCF metadata.
    """
    if isinstance(model, onnx.ModelProto):
        proto, source = model, "model"
    else:
        proto, source = load_onnx(model), str(model)
    return ModelMetadata.from_onnx_props({p.key: p.value for p in proto.metadata_props}, source)


def require_portable(metadata: ModelMetadata, source: str | Path, runtime: str, instead: str) -> None:
    """Refuses a custom-node file where ``runtime`` (which has no kernel for the node) would run it.

    Raises:
        ValueError: Naming the two ways out: a portable export, or ``instead``.
    """
    if metadata.flavour != "portable":
        raise ValueError(
            f"{source} holds {CORRELATION_DOMAIN}::{CORRELATION_OP} custom nodes, which {runtime} cannot run: "
            f"export with --portable, or {instead}"
        )


def load_onnx(path: str | Path) -> onnx.ModelProto:
    """``onnx.load`` with the errors a user can act on."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {path}")
    try:
        return onnx.load(str(path))
    except Exception as exc:  # protobuf raises its own DecodeError types
        raise ValueError(f"{path} is not a readable ONNX model: {exc}") from None
