"""ONNX -> TensorRT engine, with the ``DCFCorrelation`` plugin library loaded.

Written for the TensorRT 10 and 11 Python APIs. Precision comes from the ONNX file (export it with
``--precision fp16`` for a half-precision engine): the network is strongly typed, which TensorRT 11
requires (it removed the FP16 builder flag and weak typing) and TensorRT 10 supports. An engine is
tied to the TensorRT version and GPU it was built with, so a JSON sidecar (``model.plan.json``)
records those next to the model's labels and input spec; :func:`read_engine_metadata` and
:func:`check_engine_runtime` let a server refuse a mismatched engine.

TensorRT cannot be installed on this project's build machines: this module was written against
the API documentation and headers and has not been run here (see the README).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dcf._io import atomic_write_bytes
from dcf.export.metadata import ModelMetadata, read_onnx_metadata
from dcf.export.names import (
    CORRELATION_OP,
    INPUT_NAME,
    MAX_FRAMES,
    MAX_SIZE,
    OUTPUT_NAME,
    PLUGIN_NAMESPACE,
    PLUGIN_VERSION,
    SIZE_STRIDE,
)

log = logging.getLogger(__name__)

MIN_TENSORRT_MAJOR = 10  # IPluginV3 and strongly typed networks
SIDECAR_FORMAT = "dcf-tensorrt-engine"

INSTALL_HINT = (
    "TensorRT's Python package is not importable here. Building or running engines needs an NVIDIA GPU "
    "with its driver and TensorRT 10 or 11 for your CUDA version, e.g. 'pip install tensorrt-cu12' "
    "(or use NVIDIA's TensorRT container). Without TensorRT, run the portable ONNX model "
    "('dcf export onnx --portable') in ONNX Runtime instead."
)


class TensorRTUnavailable(ImportError):
    """TensorRT (or a new enough one) cannot be imported."""


def import_tensorrt() -> Any:
    try:
        import tensorrt as trt
    except ImportError:
        raise TensorRTUnavailable(INSTALL_HINT) from None
    major = int(str(trt.__version__).split(".")[0])
    if major < MIN_TENSORRT_MAJOR:
        raise TensorRTUnavailable(
            f"TensorRT {trt.__version__} is too old: the DCFCorrelation plugin is an IPluginV3, which needs "
            f"TensorRT {MIN_TENSORRT_MAJOR} or newer"
        )
    return trt


@functools.cache
def trt_logger(trt: Any) -> Any:
    """The process's one ``trt.Logger``: TensorRT keeps a single logger pointer and warns when a
    second one is handed to it."""
    return trt.Logger(trt.Logger.WARNING)


def check_plugin_path(library: str | Path) -> Path:
    library = Path(library)
    if not library.is_file():
        raise FileNotFoundError(
            f"plugin library not found: {library} (build it from trt_plugins/, see the README)"
        )
    return library


def load_plugin(trt: Any, library: Path) -> str:
    """Registers the plugin library's creators; returns the DCFCorrelation plugin version.

    The library exports ``getCreators`` and ``setLoggerFinder`` (see ``trt_plugins/``), the entry
    points of ``IPluginRegistry::loadLibrary``.
    """
    library = check_plugin_path(library).resolve()  # TensorRT dlopens it: no search path involved
    registry = trt.get_plugin_registry()
    creator = registry.get_creator(CORRELATION_OP, PLUGIN_VERSION, PLUGIN_NAMESPACE)
    if creator is None:  # not loaded yet in this process
        if registry.load_library(str(library)) is None:
            raise ValueError(f"TensorRT could not load the plugin library {library}")
        creator = registry.get_creator(CORRELATION_OP, PLUGIN_VERSION, PLUGIN_NAMESPACE)
    if creator is None:
        raise ValueError(f"{library} does not register the {CORRELATION_OP} plugin, version {PLUGIN_VERSION}")
    return str(creator.plugin_version)


@dataclass(frozen=True)
class ShapeRange:
    """min / opt / max of one input axis, for the optimisation profile."""

    min: int
    opt: int
    max: int

    @classmethod
    def parse(cls, text: str, what: str) -> ShapeRange:
        """``"8"`` (fixed) or ``"1:4:16"``."""
        try:
            values = [int(v) for v in text.split(":")]
        except ValueError:
            values = []
        if len(values) == 1:
            values *= 3
        if len(values) != 3 or not 1 <= values[0] <= values[1] <= values[2]:
            raise ValueError(f"{what}: expected N or MIN:OPT:MAX with 1 <= MIN <= OPT <= MAX, got {text!r}")
        return cls(*values)


def engine_ranges(
    metadata: ModelMetadata, frames: ShapeRange | None, size: ShapeRange | None
) -> tuple[ShapeRange, ShapeRange]:
    """The frames and height/width ranges of the engine's profile: as given, or from the ONNX
    file's dynamic axes (frames 2..2T, sizes 64..2S in multiples of 32, tuned at T and S), or fixed
    at the input spec's T and S.

    Raises:
        ValueError: A range for an axis the file fixes, or sizes the exported graph cannot take.
    """
    spec = metadata.input_spec
    t, s = spec.num_frames, spec.crop_size
    if frames is not None and not metadata.dynamic_frames and frames != ShapeRange(t, t, t):
        raise ValueError(
            f"the ONNX file takes exactly {t} frames; re-export it with --dynamic-frames to use --frames"
        )
    if size is not None and not metadata.dynamic_size and size != ShapeRange(s, s, s):
        raise ValueError(
            f"the ONNX file takes exactly {s}x{s} pixels; re-export it with --dynamic-size to use --size"
        )
    if frames is None:
        frames = ShapeRange(2, t, max(2 * t, t + 4)) if metadata.dynamic_frames else ShapeRange(t, t, t)
    if size is None:
        size = ShapeRange(2 * SIZE_STRIDE, s, 2 * s) if metadata.dynamic_size else ShapeRange(s, s, s)
    # The engine is fed what the model's input spec says (T frames, S x S crops): the ranges hold them.
    if not frames.min <= t <= frames.max or (
        metadata.dynamic_frames and (frames.min < 2 or frames.max > MAX_FRAMES)
    ):
        raise ValueError(
            f"--frames must lie in 2..{MAX_FRAMES} and include the model's {t} frames, got {frames}"
        )
    sizes = (size.min, size.opt, size.max)
    if not size.min <= s <= size.max or (
        metadata.dynamic_size
        and (size.min < 2 * SIZE_STRIDE or size.max > MAX_SIZE or any(v % SIZE_STRIDE for v in sizes))
    ):
        raise ValueError(
            f"--size must include the model's crop {s} and, for this graph, be multiples of {SIZE_STRIDE} "
            f"in {2 * SIZE_STRIDE}..{MAX_SIZE}, got {size}"
        )
    return frames, size


def sidecar_path(plan: str | Path) -> Path:
    return Path(f"{plan}.json")


def build_engine(
    onnx_path: str | Path,
    out: str | Path,
    *,
    plugin: str | Path | None,
    batch: ShapeRange = ShapeRange(1, 1, 8),
    frames: ShapeRange | None = None,
    size: ShapeRange | None = None,
    timing_cache: str | Path | None = None,
    workspace_gib: float = 4.0,
) -> dict[str, Any]:
    """Builds a serialized engine from an exported ONNX file; returns the sidecar it wrote.

    Raises:
        TensorRTUnavailable: Where TensorRT is not installed.
        ValueError: For a bad option combination, a parse error or a failed build.
    """
    metadata = read_onnx_metadata(onnx_path)
    if metadata.flavour == "custom" and plugin is None:
        raise ValueError(
            f"{onnx_path} has {CORRELATION_OP} nodes: pass --plugin with the plugin library built from "
            "trt_plugins/ (or export with --portable to build without it)"
        )
    frames, size = engine_ranges(metadata, frames, size)
    plugin = check_plugin_path(plugin) if plugin is not None else None
    trt = import_tensorrt()
    logger = trt_logger(trt)
    plugin_version = load_plugin(trt, plugin) if plugin is not None else None

    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ValueError(f"TensorRT's ONNX parser rejected {onnx_path}: {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * 2**30))
    if metadata.precision == "fp32":
        config.clear_flag(trt.BuilderFlag.TF32)  # float32 means float32: verify holds it to 1e-4
    profile = builder.create_optimization_profile()
    profile.set_shape(
        INPUT_NAME,
        (batch.min, 3, frames.min, size.min, size.min),
        (batch.opt, 3, frames.opt, size.opt, size.opt),
        (batch.max, 3, frames.max, size.max, size.max),
    )
    config.add_optimization_profile(profile)
    cache_bytes = Path(timing_cache).read_bytes() if timing_cache and Path(timing_cache).is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    if cache is None or not config.set_timing_cache(cache, False):
        raise ValueError(
            f"TensorRT refused the timing cache {timing_cache} (made by another TensorRT or GPU?): "
            "delete it, or pass another --timing-cache path"
        )

    log.info("building the TensorRT %s engine (%s); this takes minutes", trt.__version__, metadata.precision)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ValueError("TensorRT could not build the engine; its log above says why")
    out = Path(out)
    atomic_write_bytes(out, bytes(memoryview(serialized)))
    built_cache = config.get_timing_cache() if timing_cache else None
    if timing_cache and built_cache is not None:
        atomic_write_bytes(Path(timing_cache), bytes(memoryview(built_cache.serialize())))
    # What the engine accepts, which may be narrower than what the ONNX file did.
    accepted = dataclasses.replace(
        metadata, dynamic_frames=frames.min != frames.max, dynamic_size=size.min != size.max
    )
    sidecar = {
        "format": SIDECAR_FORMAT,
        "model": accepted.to_dict(),
        "tensorrt_version": str(trt.__version__),
        "plugin": None if plugin is None else {"name": CORRELATION_OP, "version": plugin_version},
        "profile": {"batch": vars(batch), "frames": vars(frames), "height": vars(size), "width": vars(size)},
        "input": INPUT_NAME,
        "output": OUTPUT_NAME,
    }
    atomic_write_bytes(sidecar_path(out), json.dumps(sidecar, indent=2).encode())
    return sidecar


def read_engine_metadata(plan: str | Path) -> tuple[ModelMetadata, dict[str, Any]]:
    """The model metadata and the full sidecar of an engine built by :func:`build_engine`."""
    path = sidecar_path(plan)
    if not path.is_file():
        raise FileNotFoundError(
            f"{plan} has no metadata sidecar {path.name}: build it with 'dcf export tensorrt'"
        )
    sidecar = json.loads(path.read_text())
    if sidecar.get("format") != SIDECAR_FORMAT:
        raise ValueError(f"{path} is not a DCF engine sidecar")
    return ModelMetadata.from_dict(sidecar["model"], str(path)), sidecar


def check_engine_runtime(sidecar: dict[str, Any], trt_version: str, plugin_version: str | None) -> None:
    """Refuses an engine built with another TensorRT or plugin version than the ones loaded."""
    if sidecar["tensorrt_version"] != trt_version:
        raise ValueError(
            f"the engine was built with TensorRT {sidecar['tensorrt_version']} but TensorRT {trt_version} "
            "is loaded: rebuild it with 'dcf export tensorrt' on this machine"
        )
    wanted = sidecar["plugin"]["version"] if sidecar["plugin"] else None
    if wanted is not None and wanted != plugin_version:
        raise ValueError(
            f"the engine needs {CORRELATION_OP} plugin version {wanted}, the library has {plugin_version}"
        )


def engine_context(plan: str | Path, plugin: str | Path | None) -> tuple[Any, ModelMetadata, Any]:
    """A built engine deserialized on the current CUDA device: its execution context, the model's
    metadata and the engine's shape profile (from the sidecar), after checking that the loaded
    TensorRT and plugin are the ones it was built with. The ``tensorrt`` backend of
    :mod:`dcf.inference.backends` runs it."""
    import torch

    metadata, sidecar = read_engine_metadata(plan)
    if sidecar["plugin"] and plugin is None:
        raise ValueError(f"{plan} uses the {CORRELATION_OP} plugin: pass --plugin")
    plugin = check_plugin_path(plugin) if plugin is not None else None
    trt = import_tensorrt()
    if not torch.cuda.is_available():
        raise TensorRTUnavailable("running a TensorRT engine needs a CUDA GPU, and PyTorch sees none")
    plugin_version = load_plugin(trt, plugin) if plugin is not None else None
    check_engine_runtime(sidecar, str(trt.__version__), plugin_version)
    engine = trt.Runtime(trt_logger(trt)).deserialize_cuda_engine(Path(plan).read_bytes())
    if engine is None:
        raise ValueError(f"TensorRT could not deserialize {plan}")
    context = engine.create_execution_context()
    if context is None:
        raise ValueError(f"TensorRT could not create an execution context for {plan} (out of GPU memory?)")
    return context, metadata, sidecar["profile"]
