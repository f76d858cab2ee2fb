"""A model repository for NVIDIA Triton Inference Server from an exported model.

Triton serves the network on batches of preprocessed clips; decoding, sampling and preprocessing
stay ours (``dcf serve`` or :func:`dcf.inference.pipeline.prepare`), so a Triton client must send
what the model's input spec describes. The repository holds::

    REPO/NAME/config.pbtxt   platform, tensors, dynamic batching, instance group
    REPO/NAME/1/model.onnx   (portable ONNX, onnxruntime backend) or model.plan (TensorRT backend)
    REPO/NAME/labels.txt     one label per line (Triton's classification extension)
    REPO/NAME/dcf.json       the model's metadata (input spec, architecture, versions)
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Literal

from dcf.export.metadata import ModelMetadata, read_onnx_metadata, require_portable
from dcf.export.names import INPUT_NAME, OUTPUT_NAME

InstanceKind = Literal["gpu", "cpu"]
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def _dims(metadata: ModelMetadata) -> list[int]:
    """Input dims without the batch axis; -1 where the file is dynamic."""
    spec = metadata.input_spec
    frames = -1 if metadata.dynamic_frames else spec.num_frames
    size = -1 if metadata.dynamic_size else spec.crop_size
    return [3, frames, size, size]


def model_config(
    name: str,
    platform: str,
    metadata: ModelMetadata,
    *,
    max_batch: int,
    max_queue_delay_us: int,
    instances: int,
    kind: InstanceKind,
) -> str:
    """``config.pbtxt`` text (Triton's ModelConfig protobuf, text format)."""
    dims = ", ".join(str(d) for d in _dims(metadata))
    preferred = sorted({b for b in (max_batch // 2, max_batch) if b >= 1})
    return f"""\
# DCF {metadata.architecture}, exported by dcf {metadata.dcf_version}. Input: clips preprocessed by the
# model's input spec (dcf.json); video decoding and sampling happen before Triton.
name: "{name}"
platform: "{platform}"
max_batch_size: {max_batch}
input [
  {{
    name: "{INPUT_NAME}"
    data_type: TYPE_FP32
    dims: [ {dims} ]
  }}
]
output [
  {{
    name: "{OUTPUT_NAME}"
    data_type: TYPE_FP32
    dims: [ {len(metadata.classes)} ]
    label_filename: "labels.txt"
  }}
]
dynamic_batching {{
  preferred_batch_size: [ {", ".join(map(str, preferred))} ]
  max_queue_delay_microseconds: {max_queue_delay_us}
}}
instance_group [
  {{
    count: {instances}
    kind: {"KIND_GPU" if kind == "gpu" else "KIND_CPU"}
  }}
]
"""


def write_repository(
    out: str | Path,
    *,
    onnx: str | Path | None = None,
    engine: str | Path | None = None,
    name: str | None = None,
    max_batch: int = 8,
    max_queue_delay_us: int = 5000,
    instances: int = 1,
    kind: InstanceKind = "gpu",
) -> Path:
    """Writes (or replaces) model ``name`` in the repository ``out``; returns the model folder.

    Raises:
        ValueError: For a custom-node ONNX file (Triton's ONNX Runtime backend cannot run it; build
            an engine), both or neither of ``onnx`` and ``engine``, or bad options.
    """
    if (onnx is None) == (engine is None):
        raise ValueError("pass exactly one of --onnx (a portable ONNX file) and --engine (a TensorRT plan)")
    if max_batch < 1 or instances < 1 or max_queue_delay_us < 0:
        raise ValueError("--max-batch and --instances must be >= 1 and --max-queue-delay-us >= 0")
    if onnx is not None:
        source = Path(onnx)
        metadata = read_onnx_metadata(source)
        require_portable(
            metadata, source, "Triton's ONNX Runtime backend", "build a TensorRT engine and pass --engine"
        )
        platform, filename, sidecar = "onnxruntime_onnx", "model.onnx", metadata.to_dict()
    else:
        from dcf.export.tensorrt import read_engine_metadata

        source = Path(engine)  # type: ignore[arg-type]
        if kind != "gpu":
            raise ValueError("a TensorRT engine runs on a GPU: use --kind gpu")
        metadata, sidecar = read_engine_metadata(source)
        platform, filename = "tensorrt_plan", "model.plan"
    name = name or source.name.split(".")[0]
    if not _NAME.match(name):
        raise ValueError(f"model name {name!r}: use letters, digits, '_', '-' and '.'")
    folder = Path(out) / name
    if folder.exists():
        shutil.rmtree(folder)
    (folder / "1").mkdir(parents=True)
    shutil.copyfile(source, folder / "1" / filename)
    (folder / "labels.txt").write_text("".join(f"{label}\n" for label in metadata.classes))
    (folder / "dcf.json").write_text(json.dumps(sidecar, indent=2))
    (folder / "config.pbtxt").write_text(
        model_config(
            name,
            platform,
            metadata,
            max_batch=max_batch,
            max_queue_delay_us=max_queue_delay_us,
            instances=instances,
            kind=kind,
        )
    )
    return folder
