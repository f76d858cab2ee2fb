"""ONNX export of each model family: nodes, metadata, and parity with PyTorch on fresh inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from dcf import __version__
from dcf.checkpoint import load_checkpoint
from dcf.export.metadata import ModelMetadata, read_onnx_metadata
from dcf.export.names import CORRELATION_DOMAIN, CORRELATION_OP, INPUT_NAME, OUTPUT_NAME
from dcf.export.onnx_export import export_onnx
from dcf.inference.backends import load_backend
from dcf.models import build_model
from tests.support.checkpoints import tiny_checkpoint

# Logits of float32 exports agree with PyTorch to within summation order.
ATOL, RTOL = 1e-4, 1e-4


def logits(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


@pytest.fixture(scope="module", params=["x3d_xs_dcf", "r2plus1d_r50_dcf"])
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """One tiny checkpoint per family (4 frames, 64 px), exported both ways with dynamic frames and
    size; x3d_xs_dcf's are conftest's ``dynamic_size_exports``, shared with the TensorRT tests. The
    model is loaded here, once per module, so a test that changes it changes no other module's."""
    if request.param == "x3d_xs_dcf":
        shared: dict[str, Path] = request.getfixturevalue("dynamic_size_exports")
        return load_checkpoint(shared["checkpoint"]), shared
    tmp = tmp_path_factory.mktemp(request.param)
    model = tiny_checkpoint(tmp, request.param, size=64)
    paths = {}
    for flavour in ("custom", "portable"):
        paths[flavour] = tmp / f"{flavour}.onnx"
        export_onnx(
            model, paths[flavour], portable=flavour == "portable", dynamic_frames=True, dynamic_size=True
        )
    return model, paths


def test_one_custom_node_per_correlation(exported) -> None:
    model, paths = exported
    proto = onnx.load(str(paths["custom"]))
    nodes = [n for n in proto.graph.node if n.domain == CORRELATION_DOMAIN]
    blocks = model.config.stages
    assert [n.name for n in nodes] == [f"blocks.stage{s}.correlation" for s in blocks]
    for node, temporal_range in zip(nodes, model.config.temporal_ranges, strict=True):
        assert node.op_type == CORRELATION_OP == "DCFCorrelation"  # the TensorRT plugin's name
        attrs = {a.name: a for a in node.attribute}
        assert set(attrs) == {"kernel_size", "temporal_range", "plugin_version", "plugin_namespace"}
        assert attrs["kernel_size"].type == onnx.AttributeProto.INT and attrs["kernel_size"].i == 5
        assert attrs["temporal_range"].type == onnx.AttributeProto.INT
        assert attrs["temporal_range"].i == temporal_range
    assert {(o.domain, o.version) for o in proto.opset_import} >= {("", 18), (CORRELATION_DOMAIN, 1)}
    onnx.checker.check_model(proto, full_check=True)


def _convolution_weights_are_initializers(proto: onnx.ModelProto, model: torch.nn.Module) -> None:
    # Each DCF block's conv2 reads [S, *pyramid] in the form the block chose
    # (DCFBlock._conv2): one convolution of a channel concatenation where that is no wider than the
    # output, else one convolution per volume, whose weight parts the export folds to initializers
    # (TensorRT wants constant convolution weights).
    initializers = {tensor.name for tensor in proto.graph.initializer}
    convs = [node for node in proto.graph.node if node.op_type == "Conv"]
    assert convs and all(node.input[1] in initializers for node in convs)
    assert not [node for node in proto.graph.node if node.op_type == "Split"]
    channel_concats = [  # (shape arithmetic concatenates along axis 0; volumes do along 1)
        node
        for node in proto.graph.node
        if node.op_type == "Concat" and any(a.name == "axis" and a.i == 1 for a in node.attribute)
    ]
    with_pyramid = [  # blocks whose conv2 reads more than their own volume
        block for block in model.blocks.values() if block.conv2.in_channels > block.correlation.out_channels
    ]
    assert len(channel_concats) == sum(block.concatenate_volumes for block in with_pyramid)
    consumers = {name: node for node in proto.graph.node for name in node.input}
    assert all(consumers[concat.output[0]].op_type == "Conv" for concat in channel_concats)


def test_convolution_weights_are_initializers(exported) -> None:
    # (The custom flavour: the portable correlation is itself built with Concat.)
    model, paths = exported
    _convolution_weights_are_initializers(onnx.load(str(paths["custom"])), model)
    if model.backbone.dcf_reduction == 4:  # the tiny R(2+1)D: both forms, so parity covers both
        assert [block.concatenate_volumes for block in model.blocks.values()] == [True, False, True]


def test_the_volumes_are_concatenated_only_where_narrower_than_the_output() -> None:
    forms = {
        name: [block.concatenate_volumes for block in build_model(name, num_classes=3).blocks.values()]
        for name in ("x3d_s_dcf", "r2plus1d_r50_dcf")
    }
    assert forms == {"x3d_s_dcf": [False] * 3, "r2plus1d_r50_dcf": [True] * 3}


class _DirectCall(torch.nn.Module):
    """Calls the registered op itself, not through the Correlation module."""

    def __init__(self, kernel_size: int, temporal_range: int) -> None:
        super().__init__()
        self.kernel_size, self.temporal_range = kernel_size, temporal_range

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # twice: two nodes from one module
        once = torch.ops.dcf.correlation(x, self.kernel_size, self.temporal_range)
        return once + torch.ops.dcf.correlation(0.5 * x, self.kernel_size, self.temporal_range)


def test_a_model_calling_the_op_directly_exports(tmp_path: Path) -> None:
    """The exporter translates torch.ops.dcf.correlation, wherever it is called from and however
    often; the nodes keep unique names, which the portable rewrite builds its tensor names from."""
    model = tiny_checkpoint(tmp_path, "x3d_xs_dcf", seed=3)
    for block in model.blocks.values():
        block.correlation = _DirectCall(block.correlation.kernel_size, block.correlation.temporal_range)
    paths = {flavour: tmp_path / f"{flavour}.onnx" for flavour in ("custom", "portable")}
    for flavour, path in paths.items():
        export_onnx(model, path, portable=flavour == "portable")
    nodes = [n for n in onnx.load(str(paths["custom"])).graph.node if n.domain == CORRELATION_DOMAIN]
    names = [f"blocks.stage{s}.correlation{suffix}" for s in model.config.stages for suffix in ("", "_1")]
    assert [n.name for n in nodes] == names
    x = np.random.default_rng(4).standard_normal((2, 3, 4, 32, 32), dtype=np.float32)  # not the trace's
    expected = logits(model, x)
    for backend, path in (("onnx-reference", paths["custom"]), ("onnxruntime", paths["portable"])):
        actual = load_backend(path, backend)(x)
        np.testing.assert_allclose(actual, expected, atol=ATOL * np.abs(expected).max(), rtol=RTOL)


def test_portable_has_no_custom_nodes(exported) -> None:
    _, paths = exported
    proto = onnx.load(str(paths["portable"]))
    assert {n.domain for n in proto.graph.node} == {""}
    onnx.checker.check_model(proto, full_check=True)


def test_dynamic_axes_are_named(exported) -> None:
    _, paths = exported
    proto = onnx.load(str(paths["portable"]))
    (video,) = proto.graph.input
    (out,) = proto.graph.output
    assert (video.name, out.name) == (INPUT_NAME, OUTPUT_NAME)
    dims = [d.dim_param or d.dim_value for d in video.type.tensor_type.shape.dim]
    assert dims[0] == "batch" and dims[1] == 3 and dims[2] == "frames"
    assert all(isinstance(d, str) for d in dims[3:])


@pytest.mark.parametrize("flavour", ["custom", "portable"])
def test_parity_on_inputs_other_than_the_trace(exported, flavour: str) -> None:
    model, paths = exported
    run = load_backend(
        paths[flavour], "onnxruntime" if flavour == "portable" else "onnx-reference", threads=1
    )
    rng = np.random.default_rng(123)  # the export traced a (2, 3, 4, 64, 64) batch from torch seed 0
    for shape in [(1, 3, 4, 64, 64), (3, 3, 7, 64, 64), (1, 3, 2, 128, 96)]:
        x = rng.standard_normal(shape, dtype=np.float32)
        expected = logits(model, x)
        np.testing.assert_allclose(run(x), expected, atol=ATOL * np.abs(expected).max(), rtol=RTOL)


def test_custom_and_portable_agree(exported) -> None:
    _, paths = exported
    x = np.random.default_rng(7).standard_normal((2, 3, 5, 64, 64), dtype=np.float32)
    custom = load_backend(paths["custom"], "onnx-reference")
    portable = load_backend(paths["portable"], "onnxruntime")
    np.testing.assert_allclose(custom(x), portable(x), atol=1e-5, rtol=1e-4)


def test_correlation_changes_the_logits(exported) -> None:
    """Guards the parity tests: with the DCF blocks' output zeroed the logits move."""
    model, _ = exported
    x = np.random.default_rng(8).standard_normal((1, 3, 4, 64, 64), dtype=np.float32)
    before = logits(model, x)
    with torch.no_grad():
        for block in model.blocks.values():
            block.conv2.weight.mul_(0)
    assert np.abs(logits(model, x) - before).max() > 1e-3 * np.abs(before).max()


def test_metadata_round_trip(exported) -> None:
    model, paths = exported
    metadata = read_onnx_metadata(paths["portable"])
    config = model.checkpoint_config
    assert metadata.architecture == config.architecture
    assert metadata.classes == config.classes
    assert metadata.input_spec == config.input_spec
    assert metadata.dcf_version == __version__
    assert (metadata.flavour, metadata.precision, metadata.dynamic_frames, metadata.dynamic_size) == (
        "portable",
        "fp32",
        True,
        True,
    )
    assert ModelMetadata.from_onnx_props(metadata.to_onnx_props()) == metadata


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_static_export_and_fp16(tmp_path: Path, seed: int) -> None:
    model = tiny_checkpoint(tmp_path, "x3d_xs_dcf", seed=seed)
    path = tmp_path / "fp16.onnx"
    metadata = export_onnx(model, path, portable=True, precision="fp16")
    proto = onnx.load(str(path))
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, 4, 32, 32]
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # float32 in and out
    assert any(init.data_type == onnx.TensorProto.FLOAT16 for init in proto.graph.initializer)
    assert metadata.precision == "fp16"
    run = load_backend(path, "onnxruntime", threads=1)
    assert (run.info.backend, run.info.precision) == ("onnxruntime", "fp16")
    x = np.random.default_rng(9).standard_normal((2, 3, 4, 32, 32), dtype=np.float32)
    expected = logits(model, x)
    np.testing.assert_allclose(run(x), expected, atol=2e-2 * np.abs(expected).max())


def test_fp16_export_with_the_custom_node(tmp_path: Path) -> None:
    model = tiny_checkpoint(tmp_path, "x3d_xs_dcf")
    export_onnx(model, tmp_path / "fp16.custom.onnx", precision="fp16")
    nodes = [
        n for n in onnx.load(str(tmp_path / "fp16.custom.onnx")).graph.node if n.domain == CORRELATION_DOMAIN
    ]
    assert [n.name for n in nodes] == [f"blocks.stage{s}.correlation" for s in model.config.stages]
    _convolution_weights_are_initializers(onnx.load(str(tmp_path / "fp16.custom.onnx")), model)


def test_export_needs_a_checkpoint_model(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"not loaded with dcf\.load_checkpoint"):
        export_onnx(build_model("x3d_xs_dcf", num_classes=3), tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("size", [40, 32])
def test_dynamic_size_needs_multiples_of_32_from_64(tmp_path: Path, size: int) -> None:
    model = tiny_checkpoint(tmp_path, "x3d_xs_dcf", size=size)
    with pytest.raises(ValueError, match="multiples of 32 from 64"):
        export_onnx(model, tmp_path / "m.onnx", dynamic_size=True)
