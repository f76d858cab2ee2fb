"""PyTorch DCF model -> ONNX, with one ``dcf::DCFCorrelation`` node per correlation or, portable,
with those nodes written in standard ops (:mod:`dcf.export.portable`)."""

from __future__ import annotations

import ast
import contextlib
import copy
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import onnx
import onnxscript
import torch
from torch import Tensor, nn

import dcf.ops  # noqa: F401  (registers torch.ops.dcf.correlation)
from dcf._io import atomic_write_bytes
from dcf.checkpoint import checkpoint_of
from dcf.data.spec import InputSpec
from dcf.export.metadata import Flavour, ModelMetadata, Precision, set_onnx_metadata
from dcf.export.names import (
    CORRELATION_DOMAIN,
    CORRELATION_OP,
    CORRELATION_OP_VERSION,
    INPUT_NAME,
    MAX_FRAMES,
    MAX_SIZE,
    OUTPUT_NAME,
    PLUGIN_NAMESPACE,
    PLUGIN_VERSION,
    SIZE_STRIDE,
)
from dcf.export.portable import make_portable

log = logging.getLogger(__name__)

DEFAULT_OPSET = 18
_MAX_BATCH = 4096
_NAME_SCOPES = "pkg.torch.onnx.name_scopes"  # node metadata: the module path of the call


def _correlation_schema() -> onnx.defs.OpSchema:
    """``dcf::DCFCorrelation`` for ONNX (DESIGN.md section 3): the exporter builds the node from it
    and ``onnx.checker`` checks the node against it."""
    schema = onnx.defs.OpSchema
    return schema(
        CORRELATION_OP,
        CORRELATION_DOMAIN,
        CORRELATION_OP_VERSION,
        doc="Dense correlation volume (N, C, T, H, W) -> (N, K*K*2L, T, H, W): dcf.ops.correlation_reference",
        inputs=[schema.FormalParameter("x", "T", "features (N, C, T, H, W)")],
        outputs=[schema.FormalParameter("y", "T", "correlations (N, K*K*2L, T, H, W)")],
        type_constraints=[("T", ["tensor(float)", "tensor(float16)"], "float32 or float16")],
        attributes=[
            schema.Attribute("kernel_size", schema.AttrType.INT, "odd window size K"),
            schema.Attribute("temporal_range", schema.AttrType.INT, "neighbours L on each side"),
            # Read by TensorRT's ONNX parser to find the plugin (its fallback for unknown ops).
            schema.Attribute(
                "plugin_version", schema.AttrType.STRING, "the TensorRT plugin's version", required=False
            ),
            schema.Attribute(
                "plugin_namespace", schema.AttrType.STRING, "the TensorRT plugin's namespace", required=False
            ),
        ],
    )


def _register_correlation_schema() -> None:
    try:
        onnx.defs.get_schema(CORRELATION_OP, CORRELATION_OP_VERSION, CORRELATION_DOMAIN)
    except onnx.defs.SchemaError:
        onnx.defs.register_schema(_correlation_schema())


def _translate_correlation(x: Any, kernel_size: int, temporal_range: int) -> Any:
    """``torch.ops.dcf.correlation`` in ONNX: one ``dcf::DCFCorrelation`` node, however the model
    calls the op (the :class:`~dcf.models.layers.Correlation` module or the op itself)."""
    domain = onnxscript.values.Opset(CORRELATION_DOMAIN, CORRELATION_OP_VERSION)
    node = onnxscript.values.Op(domain, CORRELATION_OP)
    return node(
        x,
        kernel_size=kernel_size,
        temporal_range=temporal_range,
        plugin_version=PLUGIN_VERSION,
        plugin_namespace=PLUGIN_NAMESPACE,
    )


class _Float16(nn.Module):
    """Half-precision weights and compute behind float32 inputs and outputs."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model.half()

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x.half()).float()


def _exportable(model: nn.Module, precision: Precision) -> nn.Module:
    """A copy of ``model`` in eval mode and the requested precision (the caller's is untouched)."""
    clone = copy.deepcopy(model).eval()
    return _Float16(clone).eval() if precision == "fp16" else clone


def _tidy(model: onnx.ModelProto, root: str = "") -> None:
    """Names each correlation node after the module that called the op (``root`` is the prefix a
    wrapper adds, stripped; a second call from one module gets ``_1``, and so on) and drops
    per-node exporter metadata (stack traces with local paths), so exports are small and
    reproducible."""
    taken: set[str] = set()
    for node in model.graph.node:
        props = {p.key: p.value for p in node.metadata_props}
        if node.domain == CORRELATION_DOMAIN:
            if _NAME_SCOPES in props:
                # The module path, then the op: ['', 'blocks', 'blocks.stage2', ..., 'correlation'].
                scopes = [scope for scope in ast.literal_eval(props[_NAME_SCOPES])[:-1] if scope]
                node.name = scopes[-1].removeprefix(root) if scopes else node.name
            else:
                log.warning("the exporter gave %s no module path: it keeps the exporter's name", node.name)
            name, count = node.name, 0
            while node.name in taken:
                count += 1
                node.name = f"{name}_{count}"
            taken.add(node.name)
        del node.metadata_props[:]


def _fold_weight_splits(model: onnx.ModelProto) -> None:
    """Replaces each ``Split`` of an initializer by the initializers of its parts: the DCF block's
    ``conv2`` weight, split per input volume where the block sums one convolution per volume
    (:meth:`dcf.models.layers.DCFBlock._conv2`), above the size the exporter's constant folding
    takes. Every runtime then sees plain convolution weights (TensorRT wants constant ones)."""
    graph = model.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    folded = []
    for node in graph.node:
        if (
            node.op_type != "Split"
            or node.domain not in ("", "ai.onnx")
            or not node.input
            or not all(node.output)
        ):
            continue
        attributes = {a.name: a for a in node.attribute}
        if "split" in attributes:  # opset 11-12
            sizes = list(attributes["split"].ints)
        elif len(node.input) == 2 and node.input[1] in initializers:  # opset 13 and up
            sizes = onnx.numpy_helper.to_array(initializers[node.input[1]]).tolist()
        else:
            continue  # equal parts, or sizes computed in the graph: not what _conv2 exports
        if node.input[0] not in initializers or len(sizes) != len(node.output):
            continue
        data = onnx.numpy_helper.to_array(initializers[node.input[0]])
        axis = attributes["axis"].i if "axis" in attributes else 0
        bounds = [sum(sizes[:k]) for k in range(len(sizes) + 1)]
        for name, start, stop in zip(node.output, bounds[:-1], bounds[1:], strict=True):
            graph.initializer.append(
                onnx.numpy_helper.from_array(data.take(range(start, stop), axis=axis), name)
            )
        folded.append(node)
    for node in folded:
        graph.node.remove(node)
    used = {name for node in graph.node for name in node.input} | {
        v.name for v in (*graph.input, *graph.output)
    }
    dropped = {name for node in folded for name in node.input} - used  # the whole weights, now unused
    kept = [tensor for tensor in graph.initializer if tensor.name not in dropped]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def resizable(spec: InputSpec) -> bool:
    """Whether a model of this input spec can be exported with dynamic height and width: its crop
    size is a multiple of the network's stride, from twice the stride up."""
    return spec.crop_size % SIZE_STRIDE == 0 and spec.crop_size >= 2 * SIZE_STRIDE


def export_onnx(
    model: nn.Module,
    out: str | Path,
    *,
    portable: bool = False,
    precision: Precision = "fp32",
    dynamic_frames: bool = False,
    dynamic_size: bool = False,
    opset: int = DEFAULT_OPSET,
) -> ModelMetadata:
    """Exports a model loaded by :func:`dcf.load_checkpoint` to ``out`` and returns its metadata.

    The input ``video`` is (batch, 3, frames, height, width) with a dynamic batch axis; frames (2
    and up) and height and width (multiples of 32 from 64 up) are dynamic on request. The file carries the labels,
    input spec, architecture and version (:class:`ModelMetadata`) and passes ``onnx.checker``.

    Raises:
        ValueError: If the model carries no checkpoint config or an option is out of range.
    """
    config = checkpoint_of(model)
    if precision not in ("fp32", "fp16"):
        raise ValueError(f"precision must be 'fp32' or 'fp16', got {precision!r}")
    spec = config.input_spec
    if dynamic_size and not resizable(spec):
        raise ValueError(
            f"--dynamic-size takes heights and widths that are multiples of {SIZE_STRIDE} from {2 * SIZE_STRIDE} "
            f"up, and this model's crop size is {spec.crop_size}"
        )
    flavour: Flavour = "portable" if portable else "custom"
    metadata = ModelMetadata.from_checkpoint(
        config,
        flavour=flavour,
        precision=precision,
        dynamic_frames=dynamic_frames,
        dynamic_size=dynamic_size,
        opset=opset,
    )

    axes: dict[int, object] = {0: torch.export.Dim("batch", min=1, max=_MAX_BATCH)}
    if dynamic_frames:
        axes[2] = torch.export.Dim("frames", min=2, max=MAX_FRAMES)
    size = spec.crop_size
    if dynamic_size:
        # At least 2 blocks: the exporter specialises axes that are 1 in the traced graph.
        axes[3] = SIZE_STRIDE * torch.export.Dim("height_blocks", min=2, max=MAX_SIZE // SIZE_STRIDE)
        axes[4] = SIZE_STRIDE * torch.export.Dim("width_blocks", min=2, max=MAX_SIZE // SIZE_STRIDE)
        size = max(size, 2 * SIZE_STRIDE)
    # Trace with batch 2 from a fixed seed; verification uses other inputs.
    generator = torch.Generator().manual_seed(0)
    example = torch.randn(2, 3, spec.num_frames, size, size, generator=generator)

    _register_correlation_schema()
    log.info("exporting %s (%s, %s) to ONNX opset %d", config.architecture, flavour, precision, opset)
    with warnings.catch_warnings(), _quiet_exporter_logs(), torch.no_grad():
        # PyTorch's exporter trips over its own pytree deprecation; nothing here can act on it.
        warnings.filterwarnings(
            "ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=FutureWarning
        )
        program = torch.onnx.export(
            _exportable(model, precision),
            (example,),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=(axes,),
            custom_translation_table={torch.ops.dcf.correlation.default: _translate_correlation},
            opset_version=opset,
            verbose=False,
        )
    if program is None:  # only None when asked not to return a program
        raise RuntimeError("torch.onnx.export returned no program")
    proto = program.model_proto
    _tidy(proto, root="model." if precision == "fp16" else "")  # _Float16 holds the model as .model
    _fold_weight_splits(proto)
    if portable:
        proto = make_portable(proto)
    proto.doc_string = (
        f"DCF {config.architecture} ({len(config.classes)} classes), exported by dcf {metadata.dcf_version}"
    )
    set_onnx_metadata(proto, metadata)
    onnx.checker.check_model(proto, full_check=True)
    atomic_write_bytes(out, proto.SerializeToString())
    log.info("wrote %s (%.1f MB)", out, Path(out).stat().st_size / 1e6)
    return metadata


# The exporter's internal notices (optional packages such as torchvision, optimiser passes).
_EXPORTER_LOG_LEVELS = {
    "torch.onnx._internal.exporter._registration": logging.ERROR,
    "onnx_ir": logging.WARNING,
    "onnxscript": logging.WARNING,
}


@contextlib.contextmanager
def _quiet_exporter_logs() -> Iterator[None]:
    saved = {name: logging.getLogger(name).level for name in _EXPORTER_LOG_LEVELS}
    for name, level in _EXPORTER_LOG_LEVELS.items():
        logging.getLogger(name).setLevel(level)
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
