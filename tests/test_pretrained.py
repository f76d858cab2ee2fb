"""``dcf convert``: PyTorchVideo's own X3D (built here with random weights and randomised norms)
against our converted networks, by equal logits; PySlowFast's layout mapped to the same tensors;
a 2D ResNet in torchvision's layout against our R(2+1)D by frame-averaged logits; what is refused."""

from __future__ import annotations

import pickle
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from dcf.checkpoint import load_checkpoint
from dcf.data.spec import IMAGENET_MEAN, IMAGENET_STD
from dcf.pretrained import X3D_RECIPES, convert_weights, read_weights, rename
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
    model, _ = convert_weights(slowfast, "slowfast", "x3d_s_dcf")
    assert torch.equal(
        model.state_dict()["backbone.stages.0.0.shortcut.1.running_var"],
        norm["s2.pathway0_res0.branch1_bn.running_var"],
    )


def test_what_is_not_x3d_weights_is_refused(create_x3d, tmp_path: Path) -> None:
    deep = create_x3d(depth_factor=5.0, model_num_class=5, head_activation=None).state_dict()
    with pytest.raises(ValueError, match=r"not x3d_s's .*stages\.0\.3\.conv_a\.weight: not in x3d_s"):
        convert_weights(deep, "pytorchvideo", "x3d_s")
    with pytest.raises(ValueError, match=r"convert to x3d_xs\[_dcf\], .*, not r2plus1d_r50"):
        convert_weights(deep, "pytorchvideo", "r2plus1d_r50")
    with pytest.raises(ValueError, match=r"are not slowfast weights \(is --from right\?\)"):
        convert_weights(deep, "slowfast", "x3d_l")
    with pytest.raises(ValueError, match="3 labels given, but the head has 5 classes"):
        convert_weights(deep, "pytorchvideo", "x3d_l", ["a", "b", "c"])
    pytorchvideo = create_x3d(depth_factor=2.2, model_num_class=5, head_activation=None).state_dict()
    cut = {k: v for k, v in pytorchvideo.items() if k != "blocks.2.res_blocks.0.branch1_norm.running_var"}
    with pytest.raises(
        ValueError, match=r"lack 1 of x3d_s's tensors: stages\.1\.0\.shortcut\.1\.running_var"
    ):
        convert_weights(cut, "pytorchvideo", "x3d_s")  # a norm it has elsewhere is never made up
    slowfast = _slowfast_layout(pytorchvideo)  # no norm on the first shortcut: PySlowFast has one
    with pytest.raises(ValueError, match=r"lack 4 of x3d_s's tensors: stages\.0\.0\.shortcut\.1\.weight"):
        convert_weights(slowfast, "slowfast", "x3d_s")


class _Bottleneck(nn.Module):
    """torchvision's ResNet bottleneck (v1.5: the stride on the 3x3), under its module names."""

    def __init__(self, inplanes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU()
        self.downsample = None
        if stride != 1 or inplanes != planes * 4:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes * 4, 1, stride, bias=False), nn.BatchNorm2d(planes * 4)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + (x if self.downsample is None else self.downsample(x)))


class _ResNet(nn.Module):
    """A plain 2D ResNet written to torchvision's published state-dict layout (torchvision's wheel
    does not import beside the CPU torch here): the reference for ``--from torchvision``."""

    def __init__(self, depths: tuple[int, ...], num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = 64
        for i, (depth, planes) in enumerate(zip(depths, (64, 128, 256, 512), strict=True)):
            blocks = [
                _Bottleneck(inplanes if j == 0 else planes * 4, planes, 2 if i and not j else 1)
                for j in range(depth)
            ]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            inplanes = planes * 4
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2048, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
        return self.fc(self.avgpool(x).flatten(1))


RESNETS = {"r2plus1d_r50": (3, 4, 6, 3), "r2plus1d_r101": (3, 4, 23, 3)}


@pytest.mark.parametrize("arch", [f"{a}{d}" for a in RESNETS for d in ("", "_dcf")])
def test_torchvision_resnet_gives_the_frame_averaged_logits(arch: str, tmp_path: Path) -> None:
    """The temporal convs start as the identity: a clip's logits are the 2D network's averaged over
    its frames, and a clip of one repeated frame gets that frame's."""
    source = _randomised(_ResNet(RESNETS[arch.removesuffix("_dcf")], num_classes=1000), seed=len(arch))
    torch.save(source.state_dict(), tmp_path / "resnet.pth")  # torchvision publishes the bare dict
    result = run_dcf(
        "convert", "--from", "torchvision", str(tmp_path / "resnet.pth"), "--arch", arch,
        "--out", str(tmp_path / "ours.safetensors"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "1000 classes, 8 segments at 224 px" in result.stdout
    ours = load_checkpoint(tmp_path / "ours.safetensors")
    g = torch.Generator().manual_seed(11)
    clip = torch.randn(2, 3, 3, 96, 96, generator=g)
    repeated = torch.randn(1, 3, 1, 96, 96, generator=g).expand(1, 3, 4, 96, 96)
    with torch.no_grad():
        expected = torch.stack([source(clip[:, :, t]) for t in range(3)]).mean(0)
        actual = ours(clip)
        frame, still = source(repeated[:, :, 0]), ours(repeated.contiguous())
    assert ((actual - expected).abs().max() / expected.abs().max()).item() <= RTOL
    assert ((still - frame).abs().max() / frame.abs().max()).item() <= RTOL
    spec = ours.input_spec
    assert (spec.num_frames, spec.crop_size, spec.sampling) == (8, 224, "segment")
    assert (spec.mean, spec.std) == (IMAGENET_MEAN, IMAGENET_STD)


def test_a_new_head_keeps_every_other_tensor() -> None:
    state = _randomised(_ResNet(RESNETS["r2plus1d_r50"]), seed=2).state_dict()
    kept, _ = convert_weights(state, "torchvision", "r2plus1d_r50_dcf")
    new, config = convert_weights(state, "torchvision", "r2plus1d_r50_dcf", num_classes=5)
    again, _ = convert_weights(state, "torchvision", "r2plus1d_r50_dcf", num_classes=5)
    assert config.recipe == {"converted_from": "torchvision", "source_classes": 1000, "new_head": True}
    assert config.classes == tuple(f"class {i}" for i in range(5))
    kept_state, new_state = kept.state_dict(), new.state_dict()
    assert new_state["backbone.head.fc.weight"].shape == (5, 2048)
    source = [n for n in new_state if not n.startswith(("blocks.", "backbone.head.fc."))]  # not fresh
    assert all(torch.equal(new_state[n], kept_state[n]) for n in source)
    assert all(torch.equal(t, again.state_dict()[n]) for n, t in new_state.items())  # seeded
    with pytest.raises(ValueError, match="2 labels given, but the head has 5 classes"):
        convert_weights(state, "torchvision", "r2plus1d_r50", ["a", "b"], num_classes=5)
    _, config = convert_weights(state, "torchvision", "r2plus1d_r50", num_classes=1000)
    assert config.recipe["new_head"] is False


def test_what_is_not_resnet_weights_is_refused(create_x3d) -> None:
    deep = _ResNet(RESNETS["r2plus1d_r101"]).state_dict()
    with pytest.raises(
        ValueError, match=r"not r2plus1d_r50's .*stages\.2\.6\.conv1\.weight: not in r2plus1d_r50"
    ):
        convert_weights(deep, "torchvision", "r2plus1d_r50")
    with pytest.raises(
        ValueError, match=r"convert to r2plus1d_r50\[_dcf\], r2plus1d_r101\[_dcf\], not x3d_s"
    ):
        convert_weights(deep, "torchvision", "x3d_s")
    plain = _ResNet(RESNETS["r2plus1d_r50"]).state_dict()
    cut = {k: v for k, v in plain.items() if k != "layer2.0.bn2.running_var"}
    with pytest.raises(ValueError, match=r"lack 1 of r2plus1d_r50's tensors: stages\.1\.0\.bn2\.running_var"):
        convert_weights(cut, "torchvision", "r2plus1d_r50")  # only the temporal convs are ever filled
    x3d = create_x3d(depth_factor=2.2, model_num_class=5, head_activation=None).state_dict()
    with pytest.raises(ValueError, match=r"are not torchvision weights \(is --from right\?\)"):
        convert_weights(x3d, "torchvision", "r2plus1d_r50")
    with pytest.raises(ValueError, match=r"are not pytorchvideo weights"):
        convert_weights(deep, "pytorchvideo", "x3d_s")


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
