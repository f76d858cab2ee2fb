"""One interface over the inference backends: PyTorch (checkpoints), ONNX Runtime (portable ONNX
files, CPU or CUDA provider) and TensorRT (engines with the plugin).

A predictor maps a float32 batch of clips (N, 3, T, S, S), preprocessed by the model's own input
spec, to logits (N, classes). It is called from one inference thread at a time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from dcf.checkpoint import DEMO
from dcf.data.spec import InputSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelInfo:
    """What the API reports about the served model."""

    name: str
    architecture: str
    classes: tuple[str, ...]
    input_spec: InputSpec
    backend: str
    device: str
    precision: str


class Predictor(Protocol):
    info: ModelInfo

    def __call__(self, clips: np.ndarray) -> np.ndarray:
        """Logits (N, classes) of float32 clips (N, 3, T, S, S)."""
        ...


class TorchPredictor:
    def __init__(self, source: str, device: str, threads: int, name: str | None) -> None:
        import torch

        from dcf.checkpoint import checkpoint_of, load_checkpoint

        if threads:
            torch.set_num_threads(threads)
        self._torch = torch
        self._device = torch.device(device)
        self.model = load_checkpoint(source).to(self._device)
        self.info = _info(checkpoint_of(self.model), source, name, "torch", device, "fp32")

    def __call__(self, clips: np.ndarray) -> np.ndarray:
        with self._torch.inference_mode():
            return self.model(self._torch.from_numpy(clips).to(self._device)).float().cpu().numpy()


class OnnxRuntimePredictor:
    def __init__(self, source: str, device: str, threads: int, name: str | None) -> None:
        import onnxruntime as ort

        from dcf.export.metadata import load_onnx, read_onnx_metadata
        from dcf.export.names import INPUT_NAME

        metadata = read_onnx_metadata(load_onnx(source))
        if metadata.flavour != "portable":
            raise ValueError(
                f"{source} holds dcf::DCFCorrelation custom nodes, which ONNX Runtime cannot run: serve it "
                "with TensorRT (build an engine with 'dcf export tensorrt') or export with --portable"
            )
        providers = ["CPUExecutionProvider"]
        if device == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise ImportError(
                    "the CUDA execution provider is not available: install onnxruntime-gpu (instead of onnxruntime)"
                )
            providers.insert(0, "CUDAExecutionProvider")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(source, options, providers=providers)
        self._input = INPUT_NAME
        self.info = _info(metadata, source, name, "onnxruntime", device, metadata.precision)

    def __call__(self, clips: np.ndarray) -> np.ndarray:
        return np.asarray(self._session.run(None, {self._input: clips})[0])


class TensorRTPredictor:
    def __init__(self, source: str, plugin: str | None, name: str | None) -> None:
        from dcf.export.tensorrt import engine_runner

        self._run, metadata = engine_runner(source, plugin)
        self.info = _info(metadata, source, name, "tensorrt", "cuda", metadata.precision)

    def __call__(self, clips: np.ndarray) -> np.ndarray:
        return self._run(clips)


def load_predictor(
    source: str,
    backend: str = "auto",
    *,
    device: str = "cpu",
    threads: int = 0,
    plugin: str | None = None,
    name: str | None = None,
) -> Predictor:
    """The predictor for ``source``: a checkpoint (or ``"demo"``), an ONNX file or an engine.

    Raises:
        FileNotFoundError: If ``source`` does not exist.
        ValueError: If the backend cannot serve that kind of file.
        ImportError: If the backend's runtime is not installed.
    """
    suffix = Path(source).suffix.lower()
    if backend == "auto":
        backend = {".onnx": "onnxruntime", ".plan": "tensorrt", ".engine": "tensorrt"}.get(suffix, "torch")
    if source != DEMO and not Path(source).is_file():
        raise FileNotFoundError(f"model not found: {source}")
    expected = {"onnxruntime": (".onnx",), "tensorrt": (".plan", ".engine"), "torch": (".safetensors",)}
    if backend not in expected:
        raise ValueError(f"unknown backend {backend!r}; expected auto, torch, onnxruntime or tensorrt")
    if source != DEMO and suffix not in expected[backend]:
        raise ValueError(f"the {backend} backend serves {' or '.join(expected[backend])} files, not {source}")
    if backend == "tensorrt" and device != "cuda":
        raise ValueError("the tensorrt backend runs on a GPU: pass --device cuda")
    log.info("loading %s with the %s backend on %s", source, backend, device)
    if backend == "torch":
        return TorchPredictor(source, device, threads, name)
    if backend == "onnxruntime":
        return OnnxRuntimePredictor(source, device, threads, name)
    return TensorRTPredictor(source, plugin, name)


class _Described(Protocol):
    """A checkpoint config or exported-model metadata: what the API reports comes from either."""

    @property
    def architecture(self) -> str: ...
    @property
    def classes(self) -> tuple[str, ...]: ...
    @property
    def input_spec(self) -> InputSpec: ...


def _info(
    model: _Described, source: str, name: str | None, backend: str, device: str, precision: str
) -> ModelInfo:
    return ModelInfo(
        name=name or Path(source).name.split(".")[0],  # "demo" for DEMO
        architecture=model.architecture,
        classes=model.classes,
        input_spec=model.input_spec,
        backend=backend,
        device=device,
        precision=precision,
    )
