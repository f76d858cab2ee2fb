"""Training configuration: a TOML file plus ``--set section.key=value`` overrides.

Parsing stops here; the training loop receives frozen dataclasses.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dcf._json import lists_to_tuples
from dcf.data.datasets import FORMATS, Format
from dcf.data.spec import PAPER_INTERVALS, InputSpec, Sampling

DEFAULT_ARCHITECTURE = "x3d_xs_dcf"
DEFAULT_CLIP = (8, 112)  # frames, crop


@dataclass(frozen=True)
class ModelSection:
    architecture: str | None = None  # a name from `dcf models`; None: the init checkpoint's, or x3d_xs_dcf
    kwargs: dict[str, Any] = field(default_factory=dict)  # build_model overrides, e.g. widths, dropout
    # A checkpoint (ours, e.g. from `dcf convert`) to start from: every tensor loaded strictly, the
    # head new if the class count differs; its architecture, model kwargs and clip are the defaults.
    init: str | None = None


@dataclass(frozen=True)
class DataSection:
    root: str = "data"  # dataset folder
    format: Format = "folder"  # ssv1 | ssv2 | kinetics | folder
    train_split: str = "train"
    val_split: str = "val"
    # The clip; a value left out (None) comes from the init checkpoint, else from the defaults.
    num_frames: int | None = None  # default 8
    crop_size: int | None = None  # default 112
    sampling: Sampling | None = None  # default "segment"
    interval: int | None = None  # frame stride for interval sampling; default: the paper's for num_frames
    train_short_side: tuple[int, int] | None = None  # default: [256, 320] scaled to the crop
    test_short_side: int | None = None  # default: 256 scaled to the crop
    workers: int = 2  # data loader processes per training process
    # Videos that cannot be decoded are skipped (another is drawn); past this fraction of the
    # training split, training stops. Evaluation reports them as failures.
    max_broken: float = 0.01

    def input_spec(self, base: InputSpec | None = None) -> InputSpec:
        """The clip the values set here describe, over ``base`` (an init checkpoint's) where left out.

        Over a base, a new frame count takes the paper's interval for it (8, 13, 16 frames: 8, 6, 5;
        others keep the base's) and a new crop scales the base's short sides with it, unless those
        are set too; mean, std and sampling stay the base's.
        """
        names = ("num_frames", "crop_size", "sampling", "interval", "train_short_side", "test_short_side")
        given = {name: getattr(self, name) for name in names if getattr(self, name) is not None}
        if base is None:
            frames, crop = DEFAULT_CLIP
            return InputSpec.for_crop(given.pop("num_frames", frames), given.pop("crop_size", crop), **given)
        derived: dict[str, Any] = {}
        if "num_frames" in given:
            derived["interval"] = PAPER_INTERVALS.get(given["num_frames"], base.interval)
        if "crop_size" in given:
            scale = given["crop_size"] / base.crop_size
            derived["train_short_side"] = tuple(round(side * scale) for side in base.train_short_side)
            derived["test_short_side"] = round(base.test_short_side * scale)
        return dataclasses.replace(base, **{**derived, **given})


@dataclass(frozen=True)
class OptimSection:
    epochs: int = 30
    batch_size: int = 16  # clips per step, summed over all processes
    lr: float = 0.1  # peak learning rate (after warm-up)
    momentum: float = 0.9
    weight_decay: float = 5e-5
    warmup_epochs: float = 1.0  # linear warm-up, then half-period cosine to zero
    amp: bool = True  # mixed precision; used on CUDA only
    # The insertion recipe: for the first N epochs only the DCF blocks and the head train (the
    # backbone's weights and norm statistics stay as initialised).
    freeze_backbone_epochs: int = 0


@dataclass(frozen=True)
class RunSection:
    out: str = "runs/dcf"  # checkpoints and metrics.jsonl go here
    seed: int = 0
    log_every: int = 10  # steps between progress-bar metric updates (and TensorBoard step scalars)
    tensorboard: str | None = None  # a folder for TensorBoard event files (the `tensorboard` extra)


@dataclass(frozen=True)
class TrainConfig:
    model: ModelSection = ModelSection()
    data: DataSection = DataSection()
    optim: OptimSection = OptimSection()
    run: RunSection = RunSection()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        sections = {f.name: f.type for f in dataclasses.fields(cls)}
        unknown = set(data) - set(sections)
        if unknown:
            raise ValueError(f"unknown config sections {sorted(unknown)}; expected {sorted(sections)}")
        built = {}
        for name, section_cls in ((f.name, type(getattr(cls(), f.name))) for f in dataclasses.fields(cls)):
            values = dict(data.get(name, {}))
            known = {f.name for f in dataclasses.fields(section_cls)}
            bad = set(values) - known
            if bad:
                raise ValueError(f"unknown keys {sorted(bad)} in [{name}]; expected some of {sorted(known)}")
            built[name] = section_cls(**lists_to_tuples(values, keep=("kwargs",)))
        config = cls(**built)
        if config.data.format not in FORMATS:
            raise ValueError(f"[data] format must be one of {', '.join(FORMATS)}, got {config.data.format!r}")
        if not 0 <= config.data.max_broken <= 1:
            raise ValueError(
                f"[data] max_broken is a fraction of the split, 0..1, got {config.data.max_broken}"
            )
        if not 0 <= config.optim.freeze_backbone_epochs <= config.optim.epochs:
            raise ValueError(
                f"[optim] freeze_backbone_epochs must be 0..epochs ({config.optim.epochs}), "
                f"got {config.optim.freeze_backbone_epochs}"
            )
        return config


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Applies ``section.key=value`` (nested keys allowed; value in TOML syntax, else a string)."""
    if "=" not in assignment:
        raise ValueError(f"override {assignment!r} must look like section.key=value")
    key, raw = assignment.split("=", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    parts = key.strip().split(".")
    if len(parts) < 2:
        raise ValueError(f"override {assignment!r} must name a section and a key, e.g. optim.lr=0.05")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ValueError(f"override {assignment!r}: {part!r} is not a table")
    node[parts[-1]] = value


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> TrainConfig:
    """The config of a TOML file (or the defaults) with overrides applied."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ValueError(f"config file not found: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path}: invalid TOML: {exc}") from None
    for assignment in overrides:
        apply_override(data, assignment)
    return TrainConfig.from_dict(data)
