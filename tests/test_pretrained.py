"""``dcf convert``: PyTorchVideo's own X3D (built here with random weights and randomised norms)
against our converted networks, by equal logits; PySlowFast's layout mapped to the same tensors;
what is refused."""

from __future__ import annotations

import pickle
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from dcf.checkpoint import load_checkpoint
from dcf.pretrained import X3D_RECIPES, convert_x3d, read_weights, rename
from tests.support.cli import run_dcf

RTOL = 1e-4  # float32, relative to the largest logit (the bound); seen: about 5e-7


@pytest.fixture(scope="module")
def create_x3d() -> Iterator[object]:
    """PyTorchVideo 0.1.5's X3D builder. Its models package imports torchvision for a detection
    head X3D does not use; torchvision's wheel does not import beside the CPU torch here, so where
    it is missing that import gets an empty stand-in, removed (with pytorchvideo) afterwards."""
    try:
        import torchvision  # noqa: F401

        stubs = {}
    except ImportError:
        names = ("torchvision", "torchvision.ops", "torchvision.transforms")
        stubs = {name: types.ModuleType(name) for name in names}
        stubs["torchvision.ops"].RoIAlign = type("RoIAlign", (), {})  # type: ignore[attr-defined]
        stubs["torchvision"].ops = stubs["torchvision.ops"]  # type: ignore[attr-defined]
    sys.modules.update(stubs)
    try:
        x3d = pytest.importorskip(
            "pytorchvideo.models.x3d", reason="needs pytorchvideo 0.1.5 (.ci/run installs it)"
        )
        yield x3d.create_x3d
    finally:
        for name in [*stubs, *(n for n in sys.modules if n.split(".")[0] == "pytorchvideo")]:
            sys.modules.pop(name, None)


def _randomised(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Every norm's scale, shift and statistics and every bias random (PyTorchVideo zero-initialises
    the last norm of each block: a swapped mapping would not show)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.dtype.is_floating_point or tensor.dim() > 1:
                continue
            if name.endswith(("running_var", "weight")):
                tensor.copy_(torch.rand(tensor.shape, generator=g) + 0.5)
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=g) * 0.1)
    return model.eval()


# X3D-XS, S and M are one network (depth 2.2) with different clips; L is deeper (5.0). L runs at
# X3D-XS's clip: the weights are the same, and both networks then pool over the whole map.
SIZES = {"x3d_xs": (2.2, 4, 160), "x3d_s": (2.2, 13, 160), "x3d_m": (2.2, 16, 224), "x3d_l": (5.0, 4, 160)}


@pytest.mark.parametrize("arch", [f"{a}{d}" for a in SIZES for d in ("", "_dcf")])
def test_pytorchvideo_x3d_gives_equal_logits(create_x3d, arch: str, tmp_path: Path) -> None:
    depth, frames, crop = SIZES[arch.removesuffix("_dcf")]
    source = _randomised(
        create_x3d(
            input_clip_length=frames, input_crop_size=crop, depth_factor=depth, model_num_class=7,
            head_activation=None,  # 0.1.5 ends in a softmax by default; the logits are compared
        ),
        seed=len(arch),
    )  # fmt: skip
    torch.save({"model_state": source.state_dict(), "epoch": 300}, tmp_path / "X3D.pyth")
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"action {i}" for i in range(7)) + "\n")
    result = run_dcf(
        "convert", "--from", "pytorchvideo", str(tmp_path / "X3D.pyth"), "--arch", arch,
        "--out", str(tmp_path / "ours.safetensors"), "--labels", str(labels),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    ours = load_checkpoint(tmp_path / "ours.safetensors")
    x = torch.randn(2, 3, frames, crop, crop, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        expected, actual = source(x), ours(x)
    assert ((actual - expected).abs().max() / expected.abs().max()).item() <= RTOL
    frames, crop, interval, jitter = X3D_RECIPES[arch.removesuffix("_dcf")]
    spec = ours.input_spec
    assert (spec.num_frames, spec.crop_size, spec.interval, spec.sampling) == (
        frames,
        crop,
        interval,
        "interval",
    )
    assert (spec.train_short_side, spec.test_short_side) == (jitter, crop)
    assert ours.classes[6] == "action 6"


# PySlowFast's module names for the same roles (slowfast/models/{video_model_builder,stem_helper,
# resnet_helper,head_helper}.py): the stem's conv_xy is its spatial conv, conv the temporal one.
def _slowfast_layout(pytorchvideo: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    import re

    out = {}
    for name, tensor in pytorchvideo.items():
        name = name.replace("blocks.0.conv.conv_t.", "s1.pathway0_stem.conv_xy.")
        name = name.replace("blocks.0.conv.conv_xy.", "s1.pathway0_stem.conv.")
        name = name.replace("blocks.0.norm.", "s1.pathway0_stem.bn.")
        match = re.match(r"blocks\.([1-4])\.res_blocks\.(\d+)\.(.*)", name)
        if match:
            part = {
                "branch1_conv": "branch1", "branch1_norm": "branch1_bn", "branch2.conv_a": "branch2.a",
                "branch2.norm_a": "branch2.a_bn", "branch2.conv_b": "branch2.b", "branch2.norm_b.0": "branch2.b_bn",
                "branch2.norm_b.1.block.0": "branch2.se.fc1", "branch2.norm_b.1.block.2": "branch2.se.fc2",
                "branch2.conv_c": "branch2.c", "branch2.norm_c": "branch2.c_bn",
            }  # fmt: skip
            module, leaf = match[3].rsplit(".", 1)
            name = f"s{int(match[1]) + 1}.pathway0_res{match[2]}.{part[module]}.{leaf}"
        for ptv, sf in (
            ("pool.pre_conv", "conv_5"),
            ("pool.pre_norm", "conv_5_bn"),
            ("pool.post_conv", "lin_5"),
            ("proj", "projection"),
        ):
            name = name.replace(f"blocks.5.{ptv}.", f"head.{sf}.")
        out[name] = tensor
    return out


def test_slowfast_layout_maps_to_the_same_tensors(create_x3d) -> None:
    source = _randomised(create_x3d(depth_factor=2.2, model_num_class=5, head_activation=None), seed=3)
    state = source.state_dict()
    slowfast = _slowfast_layout(state)
    norm = {f"s2.pathway0_res0.branch1_bn.{k}": torch.rand(24) + 0.5 for k in ("weight", "running_var")}
    norm |= {f"s2.pathway0_res0.branch1_bn.{k}": torch.randn(24) for k in ("bias", "running_mean")}
    slowfast |= norm  # PySlowFast has a norm on the first shortcut too
    from_ptv, unknown_ptv = rename(state, "pytorchvideo")
    from_sf, unknown_sf = rename(slowfast, "slowfast")
    assert unknown_ptv == [] and unknown_sf == []
    assert set(from_sf) == set(from_ptv) | {
        f"stages.0.0.shortcut.1.{k}" for k in ("weight", "bias", "running_mean", "running_var")
    }
    assert all(torch.equal(from_sf[name], tensor) for name, tensor in from_ptv.items())
    model, _ = convert_x3d(slowfast, "slowfast", "x3d_s_dcf")
    assert torch.equal(
        model.state_dict()["backbone.stages.0.0.shortcut.1.running_var"],
        norm["s2.pathway0_res0.branch1_bn.running_var"],
    )


def test_what_is_not_x3d_weights_is_refused(create_x3d, tmp_path: Path) -> None:
    deep = create_x3d(depth_factor=5.0, model_num_class=5, head_activation=None).state_dict()
    with pytest.raises(ValueError, match=r"not x3d_s's .*stages\.0\.3\.conv_a\.weight: not in x3d_s"):
        convert_x3d(deep, "pytorchvideo", "x3d_s")
    with pytest.raises(ValueError, match=r"convert to x3d_xs\[_dcf\], .*, not r2plus1d_r50"):
        convert_x3d(deep, "pytorchvideo", "r2plus1d_r50")
    with pytest.raises(ValueError, match=r"are not slowfast X3D weights \(is --from right\?\)"):
        convert_x3d(deep, "slowfast", "x3d_l")
    with pytest.raises(ValueError, match="3 labels given, but the head has 5 classes"):
        convert_x3d(deep, "pytorchvideo", "x3d_l", ["a", "b", "c"])
    pytorchvideo = create_x3d(depth_factor=2.2, model_num_class=5, head_activation=None).state_dict()
    cut = {k: v for k, v in pytorchvideo.items() if k != "blocks.2.res_blocks.0.branch1_norm.running_var"}
    with pytest.raises(
        ValueError, match=r"lack 1 of x3d_s's tensors: stages\.1\.0\.shortcut\.1\.running_var"
    ):
        convert_x3d(cut, "pytorchvideo", "x3d_s")  # a norm it has elsewhere is never made up
    slowfast = _slowfast_layout(pytorchvideo)  # no norm on the first shortcut: PySlowFast has one
    with pytest.raises(ValueError, match=r"lack 4 of x3d_s's tensors: stages\.0\.0\.shortcut\.1\.weight"):
        convert_x3d(slowfast, "slowfast", "x3d_s")


def test_only_weights_are_read(tmp_path: Path) -> None:
    (tmp_path / "text.pyth").write_text("not weights")
    with pytest.raises(ValueError, match=r"cannot be read as weights saved with torch\.save"):
        read_weights(tmp_path / "text.pyth")
    # A pickle that would run code when loaded: refused by torch's weights-only unpickler, not run.
    (tmp_path / "evil.pyth").write_bytes(pickle.dumps(_Evil(tmp_path / "ran"), protocol=2))
    with pytest.raises(
        ValueError, match=r"more than tensors .*\(it refers to [\w.]*exec\): such files are never"
    ):
        read_weights(tmp_path / "evil.pyth")
    assert not (tmp_path / "ran").exists()
    torch.save({"model_state": {"a": torch.zeros(1)}, "cfg": "..."}, tmp_path / "ok.pyth")
    assert list(read_weights(tmp_path / "ok.pyth")) == ["a"]
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="holds no state dict"):
        read_weights(tmp_path / "list.pth")
    with pytest.raises(FileNotFoundError, match="weights not found"):
        read_weights(tmp_path / "missing.pyth")


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (exec, (f"open({str(self.marker)!r}, 'w')",))
