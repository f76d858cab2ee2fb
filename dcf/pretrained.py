"""Other codebases' weights as our checkpoints (``dcf convert``): PyTorchVideo and PySlowFast X3D,
torchvision's ImageNet ResNet-50/101 onto R(2+1)D.

A converter renames the source's tensors to ours by role (a table of patterns per source), checks
every name and shape, fills what the source lacks with an identity (PyTorchVideo's X3D has no
BatchNorm on the first shortcut, where the channels do not change; a 2D ResNet has no temporal
convs, which start as the identity in time), and leaves the DCF blocks of a ``_dcf`` network fresh,
so that its logits equal the source network's. Files are read with ``torch.load(weights_only=True)``:
tensors and plain containers only, never arbitrary objects.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from dcf.checkpoint import CheckpointConfig, save_checkpoint
from dcf.data.spec import IMAGENET_MEAN, IMAGENET_STD, InputSpec
from dcf.models.registry import build_model

Source = Literal["pytorchvideo", "slowfast", "torchvision"]
SOURCES: tuple[Source, ...] = ("pytorchvideo", "slowfast", "torchvision")

# The published recipes (PySlowFast's configs/Kinetics/X3D_*.yaml, the PyTorchVideo hub's): frames,
# crop, frame interval, training short-side jitter; tested with the short side at the crop (one
# centre view; the papers' 30-view protocol uses larger test short sides). Kinetics mean/std.
X3D_RECIPES: dict[str, tuple[int, int, int, tuple[int, int]]] = {
    "x3d_xs": (4, 160, 12, (182, 228)),
    "x3d_s": (13, 160, 6, (182, 228)),
    "x3d_m": (16, 224, 5, (256, 320)),
    "x3d_l": (16, 312, 5, (356, 446)),
}
# An ImageNet ResNet becomes an R(2+1)D at the paper's Something-Something clip (8 segments, 224 px
# crop) with ImageNet's mean/std: its first layers still expect the colours they were trained on.
RESNET_ARCHS = ("r2plus1d_r50", "r2plus1d_r101")

# (source pattern, our name): the block index groups are kept, stage numbers shift by one.
_PYTORCHVIDEO = [
    (r"blocks\.0\.conv\.conv_t\.", "stem.0."),  # conv_t is the spatial 1x3x3 conv
    (r"blocks\.0\.conv\.conv_xy\.", "stem.1."),  # conv_xy the temporal 5x1x1 one
    (r"blocks\.0\.norm\.", "stem.2."),
    (r"blocks\.([1-4])\.res_blocks\.(\d+)\.branch1_conv\.", r"stages.{s}.\2.shortcut.0."),
    (r"blocks\.([1-4])\.res_blocks\.(\d+)\.branch1_norm\.", r"stages.{s}.\2.shortcut.1."),
    (r"blocks\.([1-4])\.res_blocks\.(\d+)\.branch2\.conv_a\.", r"stages.{s}.\2.conv_a."),
    (r"blocks\.([1-4])\.res_blocks\.(\d+)\.branch2\.norm_a\.", r"stages.{s}.\2.bn_a."),
    (r"blocks\.([1-4])\.res_blocks\.(\d+)\.branch2\.conv_b\.", r"stages.{s}.\2.conv_b."),
    (r"blocks\.([1-4])\.res_blocks\.(\d+)\.branch2\.norm_b\.0\.", r"stages.{s}.\2.bn_b."),
    (r"blocks\.([1-4])\.res_blocks\.(\d+)\.branch2\.norm_b\.1\.block\.0\.", r"stages.{s}.\2.se.fc1."),
    (r"blocks\.([1-4])\.res_blocks\.(\d+)\.branch2\.norm_b\.1\.block\.2\.", r"stages.{s}.\2.se.fc2."),
    (r"blocks\.([1-4])\.res_blocks\.(\d+)\.branch2\.conv_c\.", r"stages.{s}.\2.conv_c."),
    (r"blocks\.([1-4])\.res_blocks\.(\d+)\.branch2\.norm_c\.", r"stages.{s}.\2.bn_c."),
    (r"blocks\.5\.pool\.pre_conv\.", "head.pre_conv."),
    (r"blocks\.5\.pool\.pre_norm\.", "head.pre_norm."),
    (r"blocks\.5\.pool\.post_conv\.", "head.post_conv."),
    (r"blocks\.5\.proj\.", "head.fc."),
]
_SLOWFAST = [
    (r"s1\.pathway0_stem\.conv_xy\.", "stem.0."),  # here conv_xy is the spatial conv
    (r"s1\.pathway0_stem\.conv\.", "stem.1."),
    (r"s1\.pathway0_stem\.bn\.", "stem.2."),
    (r"s([2-5])\.pathway0_res(\d+)\.branch1\.", r"stages.{s}.\2.shortcut.0."),
    (r"s([2-5])\.pathway0_res(\d+)\.branch1_bn\.", r"stages.{s}.\2.shortcut.1."),
    (r"s([2-5])\.pathway0_res(\d+)\.branch2\.a\.", r"stages.{s}.\2.conv_a."),
    (r"s([2-5])\.pathway0_res(\d+)\.branch2\.a_bn\.", r"stages.{s}.\2.bn_a."),
    (r"s([2-5])\.pathway0_res(\d+)\.branch2\.b\.", r"stages.{s}.\2.conv_b."),
    (r"s([2-5])\.pathway0_res(\d+)\.branch2\.b_bn\.", r"stages.{s}.\2.bn_b."),
    (r"s([2-5])\.pathway0_res(\d+)\.branch2\.se\.fc1\.", r"stages.{s}.\2.se.fc1."),
    (r"s([2-5])\.pathway0_res(\d+)\.branch2\.se\.fc2\.", r"stages.{s}.\2.se.fc2."),
    (r"s([2-5])\.pathway0_res(\d+)\.branch2\.c\.", r"stages.{s}.\2.conv_c."),
    (r"s([2-5])\.pathway0_res(\d+)\.branch2\.c_bn\.", r"stages.{s}.\2.bn_c."),
    (r"head\.conv_5\.", "head.pre_conv."),
    (r"head\.conv_5_bn\.", "head.pre_norm."),
    (r"head\.lin_5\.", "head.post_conv."),
    (r"head\.projection\.", "head.fc."),
]
_TORCHVISION = [
    (r"conv1\.", "stem.0."),
    (r"bn1\.", "stem.1."),
    (r"layer([1-4])\.(\d+)\.(conv[123]|bn[123])\.", r"stages.{s}.\2.\3."),
    (r"layer([1-4])\.(\d+)\.downsample\.([01])\.", r"stages.{s}.\2.shortcut.\3."),
    (r"fc\.", "head.fc."),
]
# source -> (pattern table, number of its first stage, its classifier's weight, our architectures)
_TABLES: dict[Source, tuple[list[tuple[str, str]], int, str, tuple[str, ...]]] = {
    "pytorchvideo": (_PYTORCHVIDEO, 1, "blocks.5.proj.weight", tuple(X3D_RECIPES)),
    "slowfast": (_SLOWFAST, 2, "head.projection.weight", tuple(X3D_RECIPES)),
    "torchvision": (_TORCHVISION, 1, "fc.weight", RESNET_ARCHS),
}


def read_weights(path: str | Path) -> dict[str, Tensor]:
    """The state dict in ``path``: a ``.pyth``/``.pth`` file, the dict itself or under ``model_state``
    (PyTorchVideo, PySlowFast) or ``state_dict``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: Not a file ``torch.load`` reads with ``weights_only=True``, or no state dict in it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights not found: {path}")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch's weights-only reader: tensors and plain containers only
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if found:
            raise ValueError(
                f"{path} holds more than tensors and plain containers (it refers to {found[1]}): such "
                "files are never unpickled here; expected a state dict saved with torch.save"
            ) from None
        raise ValueError(
            f"{path} cannot be read as weights saved with torch.save (torch's weights-only reader refused it)"
        ) from None
    state = loaded
    if isinstance(loaded, Mapping):
        state = loaded.get("model_state", loaded.get("state_dict", loaded))
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(
            f"{path} holds no state dict (a mapping of names to tensors, or one under 'model_state')"
        )
    return {str(k).removeprefix("module."): v for k, v in state.items()}


def rename(state: Mapping[str, Tensor], source: Source) -> tuple[dict[str, Tensor], list[str]]:
    """Our names for the source's tensors, and the source names no pattern knows."""
    table, first = _TABLES[source][:2]
    renamed, unknown = {}, []
    for name, tensor in state.items():
        if name.endswith("num_batches_tracked"):
            continue
        for pattern, ours in table:
            match = re.match(pattern, name)
            if match:
                stage = int(match.group(1)) - first if match.re.groups else 0
                prefix = match.expand(ours.replace("{s}", str(stage)))
                if source == "torchvision" and tensor.dim() == 4:  # a 2D kernel: one frame deep
                    tensor = tensor.unsqueeze(2)
                renamed[prefix + name[match.end() :]] = tensor
                break
        else:
            unknown.append(name)
    return renamed, unknown


def _identity_norm(norm: nn.BatchNorm3d) -> dict[str, Tensor]:
    """A BatchNorm that passes its input through in eval mode (to rounding: its variance is 1 - eps)."""
    n = norm.num_features
    return {
        "weight": torch.ones(n),
        "bias": torch.zeros(n),
        "running_mean": torch.zeros(n),
        "running_var": torch.full((n,), 1.0 - norm.eps),
    }


def input_spec(source: Source, arch: str) -> InputSpec:
    """The clip the source's recipe trained on, for our ``arch``."""
    backbone = arch.removesuffix("_dcf")
    if source == "torchvision":
        return InputSpec.for_crop(8, 224, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    frames, crop, interval, jitter = X3D_RECIPES[backbone]
    return InputSpec.for_crop(
        frames, crop, sampling="interval", interval=interval, train_short_side=jitter, test_short_side=crop
    )


def _fill(source: Source, model: nn.Module, weights: dict[str, Tensor]) -> dict[str, Tensor]:
    """Identities for what the source has no counterpart of (only those: anything else missing is
    refused by the caller)."""
    filled = {}
    for name, module in model.named_modules():
        if (
            source == "torchvision"
            and isinstance(module, nn.Conv3d)
            and name.endswith(".conv_t")
            and f"{name}.weight" not in weights
        ):
            filled[f"{name}.weight"] = module.weight.detach().clone()  # a fresh one: a delta in time
        # PyTorchVideo's shortcut has no norm where the channels do not change (the first block).
        conv = weights.get(f"{name[:-2]}.0.weight")
        if (
            source == "pytorchvideo"
            and isinstance(module, nn.BatchNorm3d)
            and name.endswith(".shortcut.1")
            and conv is not None
            and conv.shape[0] == conv.shape[1]
            and not any(
                f"{name}.{key}" in weights for key in ("weight", "bias", "running_mean", "running_var")
            )
        ):
            filled.update({f"{name}.{key}": value for key, value in _identity_norm(module).items()})
    return filled


def convert_weights(
    state: Mapping[str, Tensor],
    source: Source,
    arch: str,
    classes: Sequence[str] | None = None,
    num_classes: int | None = None,
) -> tuple[nn.Module, CheckpointConfig]:
    """Our ``arch`` with the source's weights; its DCF blocks fresh (seeded: the same file gives the
    same checkpoint). PyTorchVideo and PySlowFast X3D go onto ``x3d_*``: X3D-XS, S and M are one
    network (their weights fit each other's), ``arch`` picks the recipe; L is deeper and is told
    apart. torchvision's ResNet-50/101 go onto ``r2plus1d_r50|r101``, each temporal conv the identity:
    the network answers every clip with the 2D network's logits averaged over its frames.

    ``num_classes`` other than the source head's gives a new, seeded head (a fine-tuning start);
    ``classes`` must then have that many names.

    Raises:
        ValueError: ``arch`` is not one of the source's, the weights are not that network (the names
            or shapes that differ are listed), or ``classes`` does not match the head.
    """
    _, _, classifier, archs = _TABLES[source]
    if arch.removesuffix("_dcf") not in archs:
        raise ValueError(f"{source} weights convert to {', '.join(f'{a}[_dcf]' for a in archs)}, not {arch}")
    renamed, unknown = rename(state, source)
    if unknown:
        raise ValueError(
            f"{len(unknown)} tensors are not {source} weights (is --from right?): {', '.join(unknown[:5])}"
        )
    fc = renamed.get("head.fc.weight")
    if fc is None:
        raise ValueError(f"no classifier in the weights (expected {classifier})")
    if num_classes is not None and num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    new_head = num_classes is not None and num_classes != fc.shape[0]
    if new_head:
        renamed = {name: tensor for name, tensor in renamed.items() if not name.startswith("head.fc.")}
    count = num_classes if num_classes is not None else fc.shape[0]
    names = tuple(classes) if classes is not None else tuple(f"class {i}" for i in range(count))
    if len(names) != count:
        raise ValueError(f"{len(names)} labels given, but the head has {count} classes")
    recipe = {"converted_from": source, "source_classes": int(fc.shape[0]), "new_head": new_head}
    config = CheckpointConfig(arch, names, input_spec(source, arch), recipe=recipe)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = build_model(arch, num_classes=count)
    target = model.state_dict()
    prefix = "backbone." if arch.endswith("_dcf") else ""
    weights = {prefix + name: tensor for name, tensor in renamed.items()}
    problems = [
        f"{name}: {tuple(tensor.shape)} in the weights, {tuple(target[name].shape)} in {arch}"
        for name, tensor in weights.items()
        if name in target and target[name].shape != tensor.shape
    ]
    problems += [f"{name}: not in {arch}" for name in weights if name not in target]
    if problems:
        raise ValueError(f"the weights are not {arch}'s ({len(problems)} differ): " + "; ".join(problems[:5]))
    weights |= _fill(source, model, weights)
    fresh = ("blocks.", f"{prefix}head.fc.") if new_head else ("blocks.",)  # DCF blocks, a new head
    missing = [
        name
        for name in target
        if name not in weights and not name.endswith("num_batches_tracked") and not name.startswith(fresh)
    ]
    if missing:
        raise ValueError(f"the weights lack {len(missing)} of {arch}'s tensors: {', '.join(missing[:5])}")
    model.load_state_dict({**target, **weights})
    return model.eval(), config


def convert(
    source: Source,
    src: str | Path,
    arch: str,
    out: str | Path,
    labels: str | Path | None = None,
    num_classes: int | None = None,
) -> CheckpointConfig:
    """``dcf convert``: reads ``src``, converts it to ``arch`` and writes our checkpoint to ``out``."""
    classes = None
    if labels is not None:
        classes = [
            line.strip() for line in Path(labels).read_text(encoding="utf-8").splitlines() if line.strip()
        ]
    model, config = convert_weights(read_weights(src), source, arch, classes, num_classes)
    save_checkpoint(out, model, config)
    return config
