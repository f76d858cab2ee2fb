"""One protocol over the inference backends, and one loader.

A backend maps a float32 batch of clips (N, 3, T, S, S), preprocessed by the model's own input
spec, to float32 logits (N, classes), and describes the model it runs (:class:`ModelInfo`). It is
called from one thread at a time. The server, ``dcf predict``, ``dcf export verify`` and the load
benchmark get theirs from :func:`load_backend` (the ONNX benchmark times raw
:func:`onnxruntime_session` graphs, and the Triton export shares the portable-file check):

================  ==================================  =========================================
backend           runs                                where
================  ==================================  =========================================
torch             checkpoints (.safetensors, demo)    CPU or CUDA
onnxruntime       portable ONNX files; custom-node    CPU, or CUDA with onnxruntime-gpu
                  files on CPU (the op library)       (portable files)
openvino          any exported ONNX file; checkpoints CPU (Intel and AMD); float32 unless asked
                  (exported at start-up)
onnx-reference    any exported ONNX file              CPU; slow, checks custom-node files
tensorrt          engines (.plan) with the plugin     CUDA
================  ==================================  =========================================
"""

from __future__ import annotations

import importlib.util
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from dcf.checkpoint import DEMO
from dcf.data.spec import InputSpec

if TYPE_CHECKING:
    from dcf.export.metadata import ModelMetadata

log = logging.getLogger(__name__)

BackendName = Literal["torch", "onnxruntime", "openvino", "onnx-reference", "tensorrt"]
Device = Literal["cpu", "cuda"]
# Precision of the weights and compute of a run (inputs and outputs are float32 in all); bf16 and
# fp16 compute are OpenVINO's options. An export's weights are fp32 or fp16 (export/metadata.py).
ComputePrecision = Literal["fp32", "bf16", "fp16"]
# What dcf serve and dcf predict offer: onnx-reference checks custom-node files (dcf export verify)
# and is far too slow to serve.
ServedBackend = Literal["auto", "torch", "onnxruntime", "openvino", "tensorrt"]

SUFFIXES: dict[BackendName, tuple[str, ...]] = {
    "torch": (".safetensors",),
    "onnxruntime": (".onnx",),
    "openvino": (".onnx", ".safetensors"),  # a checkpoint: exported at start-up
    "onnx-reference": (".onnx",),
    "tensorrt": (".plan", ".engine"),
}


@dataclass(frozen=True)
class ModelInfo:
    """What a backend runs: the model's contract and how it is run."""

    name: str  # reported by the API; the file's stem unless given
    architecture: str
    classes: tuple[str, ...]
    input_spec: InputSpec
    backend: BackendName
    device: Device
    precision: ComputePrecision
    dynamic_frames: bool = True  # accepts other frame counts than input_spec.num_frames
    dynamic_size: bool = True  # accepts other heights and widths than input_spec.crop_size


class Backend(Protocol):
    info: ModelInfo

    def __call__(self, clips: np.ndarray) -> np.ndarray:
        """Logits (N, classes) of float32 clips (N, 3, T, S, S)."""
        ...


def load_backend(
    source: str | Path,
    backend: BackendName | Literal["auto"] = "auto",
    *,
    device: Device = "cpu",
    threads: int = 0,
    plugin: str | Path | None = None,
    name: str | None = None,
    precision: ComputePrecision = "fp32",
) -> Backend:
    """The backend for ``source``: a checkpoint (or ``"demo"``), an ONNX file or an engine.

    ``auto`` picks by the file (:func:`auto_backend`): torch for checkpoints, tensorrt for
    engines, and for .onnx OpenVINO on CPU where it is installed (the fastest CPU runtime,
    ``bench/results/cpu_runtimes.md``), else ONNX Runtime. ``openvino`` on a checkpoint exports
    it at start-up and checks the export against the checkpoint (:func:`openvino_from_checkpoint`).
    ``threads`` are the runtime's intra-op threads (0: its default). ``precision`` other than
    fp32 is OpenVINO's (bf16 or fp16 compute); the others run a file at the precision it was
    exported or built in.

    Raises:
        FileNotFoundError: If ``source`` does not exist.
        ValueError: If the backend cannot run that file (a custom-node ONNX file in ONNX Runtime
            on CUDA or without the op library, an engine on CPU, another suffix).
        ImportError: If the backend's runtime is not installed.
    """
    source = str(source)
    suffix = Path(source).suffix.lower()
    if backend == "auto":
        backend, why = auto_backend(source, device)
        log.info("backend auto: %s (%s)", backend, why)
    if backend not in SUFFIXES:
        raise ValueError(f"unknown backend {backend!r}; expected auto or one of {', '.join(SUFFIXES)}")
    if source != DEMO and not Path(source).is_file():
        raise FileNotFoundError(f"model not found: {source}")
    if source != DEMO and suffix not in SUFFIXES[backend]:
        raise ValueError(f"the {backend} backend runs {' or '.join(SUFFIXES[backend])} files, not {source}")
    if backend == "tensorrt" and device != "cuda":
        raise ValueError("the tensorrt backend runs on a GPU: pass --device cuda")
    if backend in ("onnx-reference", "openvino") and device != "cpu":
        raise ValueError(f"the {backend} backend runs on CPU")
    if precision != "fp32" and backend != "openvino":
        raise ValueError(
            f"precision {precision} is OpenVINO's compute option (--backend openvino); the {backend} "
            "backend computes in float32, or in the precision a file was exported or built in"
        )
    name = name or Path(source).name.split(".")[0]  # "demo" for DEMO
    log.info("loading %s with the %s backend on %s", source, backend, device)
    if backend == "torch":
        return TorchBackend(source, name, device, threads)
    if backend == "onnxruntime":
        return OnnxRuntimeBackend(source, name, device, threads)
    if backend == "openvino":
        if suffix == ".onnx":
            return OpenVINOBackend(source, name, threads, precision)
        return openvino_from_checkpoint(source, name, threads, precision)
    if backend == "onnx-reference":
        return OnnxReferenceBackend(source, name)
    return TensorRTBackend(source, name, plugin)


def auto_backend(source: str, device: Device = "cpu") -> tuple[BackendName, str]:
    """The backend ``auto`` picks for ``source`` on ``device``, and why."""
    suffix = Path(source).suffix.lower()
    if suffix in SUFFIXES["tensorrt"]:
        return "tensorrt", "a TensorRT engine"
    if suffix != ".onnx":
        return "torch", "a PyTorch checkpoint"
    if device == "cpu" and importlib.util.find_spec("openvino") is not None:
        return "openvino", "an ONNX file on CPU: OpenVINO is the fastest CPU runtime installed"
    reason = "OpenVINO is not installed" if device == "cpu" else "OpenVINO runs on CPU only"
    return "onnxruntime", f"an ONNX file on {device}; {reason}"


def openvino_from_checkpoint(
    source: str, name: str, threads: int = 0, precision: ComputePrecision = "fp32"
) -> Backend:
    """A checkpoint served in OpenVINO: exported at start-up (custom-node ONNX, batch, frames and
    size dynamic, in a temporary folder gone once compiled), then checked against the checkpoint
    in PyTorch on ``dcf export verify``'s inputs; the check is logged.

    Raises:
        ValueError: If the export's logits are outside the tolerance of its precision.
    """
    import tempfile

    from dcf.export import verify
    from dcf.export.onnx_export import export_onnx, resizable

    reference = TorchBackend(source, name, "cpu", threads)
    spec = reference.info.input_spec
    dynamic_size = resizable(spec)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dcf-openvino-") as folder:
        path = Path(folder) / f"{name}.onnx"
        export_onnx(reference.model, path, dynamic_frames=True, dynamic_size=dynamic_size)
        backend = OpenVINOBackend(str(path), name, threads, precision, shown=source)
    exported = time.perf_counter() - started
    inputs = verify.verification_inputs(spec, dynamic_frames=True, dynamic_size=dynamic_size)
    results = verify.verify(reference, [("openvino", backend)], inputs)
    worst = max(results, key=lambda r: r.max_rel)
    summary = (
        f"{source} exported and compiled for OpenVINO in {exported:.1f} s; logits against PyTorch on "
        f"{len(results)} inputs: max relative error {worst.max_rel:.1e} "
        f"(tolerance {verify.TOLERANCES[worst.precision].max_rel:.0e} for {worst.precision})"
    )
    failed = [r for r in results if not r.passed]
    if failed:
        raise ValueError(
            f"{summary}: FAILED on {failed[0].inputs}; serve the checkpoint with --backend torch"
        )
    log.info("%s: passed", summary)
    return backend


class TorchBackend:
    """A checkpoint in PyTorch (float32)."""

    def __init__(self, source: str, name: str, device: Device = "cpu", threads: int = 0) -> None:
        import torch

        from dcf.checkpoint import checkpoint_of, load_checkpoint

        if threads:
            torch.set_num_threads(threads)
        self._torch = torch
        self._device = torch.device(device)
        self.model = load_checkpoint(source).to(self._device)
        config = checkpoint_of(self.model)
        self.info = ModelInfo(
            name, config.architecture, config.classes, config.input_spec, "torch", device, "fp32"
        )

    def __call__(self, clips: np.ndarray) -> np.ndarray:
        with self._torch.inference_mode():
            return self.model(self._torch.from_numpy(clips).to(self._device)).float().cpu().numpy()


def onnxruntime_session(
    path: str | Path, threads: int = 0, device: Device = "cpu", custom_ops: bool = False
) -> Any:
    """An ONNX Runtime session: ``threads`` intra-op threads (0: ONNX Runtime's choice), one
    inter-op thread, the CUDA execution provider first on ``device="cuda"``; ``custom_ops``
    registers the ``dcf::DCFCorrelation`` op library (:mod:`dcf.export.onnxruntime_op`).

    Raises:
        ImportError: For ``cuda`` without onnxruntime-gpu.
        RuntimeError: For ``custom_ops`` where the op library is not built.
    """
    import onnxruntime as ort

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
    if custom_ops:
        from dcf.export import onnxruntime_op

        onnxruntime_op.register(options)
    return ort.InferenceSession(str(path), options, providers=providers)


class OnnxRuntimeBackend:
    """An exported ONNX file in ONNX Runtime: portable files on CPU or CUDA, custom-node files on
    CPU through the op library built from the compiled CPU kernel (:mod:`dcf.export.onnxruntime_op`)."""

    def __init__(self, source: str, name: str, device: Device = "cpu", threads: int = 0) -> None:
        from dcf.export import onnxruntime_op
        from dcf.export.metadata import read_onnx_metadata, require_portable
        from dcf.export.names import INPUT_NAME

        metadata = read_onnx_metadata(source)
        custom = metadata.flavour == "custom"
        if custom and (device != "cpu" or onnxruntime_op.library() is None):
            require_portable(
                metadata,
                source,
                "ONNX Runtime on CUDA"
                if device != "cpu"
                else f"ONNX Runtime without its dcf op library ({onnxruntime_op.missing_reason()})",
                "run it with TensorRT ('dcf export tensorrt')"
                if device != "cpu"
                else "run it with --backend openvino (the openvino extra)",
            )
        self._session = onnxruntime_session(source, threads, device, custom_ops=custom)
        self._input = INPUT_NAME
        self.info = _exported_info(metadata, name, "onnxruntime", device)

    def __call__(self, clips: np.ndarray) -> np.ndarray:
        return np.asarray(self._session.run(None, {self._input: clips})[0])


class OpenVINOBackend:
    """An exported ONNX file in OpenVINO on the CPU (the ``openvino`` extra). Both flavours run:
    custom-node files through the compiled CPU kernel (:mod:`dcf.export.openvino_op`: a C++
    extension built against the installed OpenVINO on first use, the faster),
    portable files in standard ops. Float32 compute unless asked otherwise, and set explicitly:
    OpenVINO's default on processors with bfloat16 units is bfloat16 (about 4e-3 relative error on
    the logits instead of about 4e-7). ``info.precision`` is what OpenVINO compiled, read back (it
    computes fp16 requests in bfloat16 on processors without fp16 arithmetic)."""

    def __init__(
        self,
        source: str,
        name: str,
        threads: int = 0,
        precision: ComputePrecision = "fp32",
        shown: str | None = None,  # the model as logs name it (the checkpoint of a start-up export)
    ) -> None:
        from dcf.export.metadata import read_onnx_metadata
        from dcf.export.names import INPUT_NAME

        try:
            import openvino  # noqa: F401  (the extra's presence, with a message that says how)
        except ImportError:
            raise ImportError("the openvino backend needs OpenVINO: pip install 'dcf[openvino]'") from None
        from dcf.export.openvino_op import fuse_correlations, openvino_core

        metadata = read_onnx_metadata(source)
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": _OPENVINO_PRECISIONS[precision]}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        custom_nodes = metadata.flavour == "custom"
        core = openvino_core(custom_nodes=custom_nodes)
        model = core.read_model(source)
        if custom_nodes and any(fused := fuse_correlations(model)):
            log.info(
                "OpenVINO: fused into the correlations of %s: %d pyramids' poolings, %d convolutions of "
                "the volume",
                shown or source,
                fused.pyramids,
                fused.convolutions,
            )
        compiled = core.compile_model(model, "CPU", config)
        hint = compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
        compiled_as = next((p for p, value in _OPENVINO_PRECISIONS.items() if value == hint), None)
        if compiled_as is None:
            raise RuntimeError(f"OpenVINO compiled {shown or source} in an unknown precision {hint!r}")
        if compiled_as != precision:
            log.warning(
                "OpenVINO computes %s in %s on this processor (%s asked)",
                shown or source,
                compiled_as,
                precision,
            )
        self._request = compiled.create_infer_request()  # one: a backend is called from one thread
        self._input = INPUT_NAME
        # The coarser of the file's weights and the compute (fp16 weights computed in f32: fp16).
        coarser = compiled_as if compiled_as != "fp32" else metadata.precision
        self.info = replace(_exported_info(metadata, name, "openvino", "cpu"), precision=coarser)

    def __call__(self, clips: np.ndarray) -> np.ndarray:
        outputs = self._request.infer({self._input: np.ascontiguousarray(clips, dtype=np.float32)})
        return np.array(outputs.to_tuple()[0], dtype=np.float32)  # a copy: the request reuses its buffer


# OpenVINO's names of the compute precisions (its INFERENCE_PRECISION_HINT values).
_OPENVINO_PRECISIONS: dict[ComputePrecision, str] = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}


class OnnxReferenceBackend:
    """Any exported ONNX file in the ``onnx`` reference evaluator, with a Python
    ``dcf::DCFCorrelation`` (:mod:`dcf.export.onnx_reference`): slow, for checking custom-node files
    on machines without TensorRT."""

    def __init__(self, source: str, name: str) -> None:
        from dcf.export.metadata import load_onnx, read_onnx_metadata
        from dcf.export.onnx_reference import reference_runner

        model = load_onnx(source)
        self._run = reference_runner(model)
        self.info = _exported_info(read_onnx_metadata(model), name, "onnx-reference", "cpu")

    def __call__(self, clips: np.ndarray) -> np.ndarray:
        return self._run(clips)


class TensorRTBackend:
    """An engine built by ``dcf export tensorrt``, on the current CUDA device, with the plugin
    library it needs (PyTorch tensors as its buffers)."""

    def __init__(self, source: str, name: str, plugin: str | Path | None) -> None:
        import torch

        from dcf.export.tensorrt import engine_context

        self._context, metadata, self._profile = engine_context(source, plugin)
        self.info = _exported_info(metadata, name, "tensorrt", "cuda")
        self._stream = torch.cuda.Stream()  # its own stream: the legacy default one syncs with all

    def __call__(self, clips: np.ndarray) -> np.ndarray:
        import torch

        from dcf.export.names import INPUT_NAME, OUTPUT_NAME

        context = self._context
        with torch.cuda.stream(self._stream):
            video = torch.from_numpy(np.ascontiguousarray(clips, dtype=np.float32)).cuda(non_blocking=True)
            if not context.set_input_shape(INPUT_NAME, tuple(video.shape)):
                raise ValueError(
                    f"input shape {tuple(video.shape)} is outside the engine's profile {self._profile}"
                )
            shape = tuple(context.get_tensor_shape(OUTPUT_NAME))
            logits = torch.empty(shape, dtype=torch.float32, device="cuda")
            for tensor, buffer in ((INPUT_NAME, video), (OUTPUT_NAME, logits)):
                if not context.set_tensor_address(tensor, buffer.data_ptr()):
                    raise RuntimeError(f"TensorRT refused the address of {tensor!r}")
            if not context.execute_async_v3(self._stream.cuda_stream):
                raise RuntimeError("TensorRT failed to run the engine")
            result = logits.cpu()  # on this stream: waits for the engine
        self._stream.synchronize()
        return result.numpy()


def _exported_info(metadata: ModelMetadata, name: str, backend: BackendName, device: Device) -> ModelInfo:
    """The info of an exported model, from the metadata it carries."""
    return ModelInfo(
        name=name,
        architecture=metadata.architecture,
        classes=metadata.classes,
        input_spec=metadata.input_spec,
        backend=backend,
        device=device,
        precision=metadata.precision,
        dynamic_frames=metadata.dynamic_frames,
        dynamic_size=metadata.dynamic_size,
    )
