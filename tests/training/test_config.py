"""Training config: TOML file, overrides and clear errors."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import pytest

from dcf.data.spec import IMAGENET_MEAN, InputSpec
from dcf.training.config import load_config
from dcf.training.engine import learning_rate, topk_correct


def test_defaults_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[model]\narchitecture = "x3d_s_dcf"\n[optim]\nlr = 0.4\n')
    config = load_config(
        path,
        ["optim.lr=0.05", "data.train_short_side=[40, 50]", "model.kwargs.dropout=0.2", "run.out=somewhere"],
    )
    assert config.model.architecture == "x3d_s_dcf"
    assert config.optim.lr == 0.05
    assert config.data.train_short_side == (40, 50)
    assert config.model.kwargs == {"dropout": 0.2}
    assert config.run.out == "somewhere"
    assert config.optim.epochs == 30  # untouched default


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["optim.learning_rate=1"], r"unknown keys \['learning_rate'\] in \[optim\]"),
        (["optimizer.lr=1"], r"unknown config sections \['optimizer'\]"),
        (["lr=1"], "must name a section and a key"),
        (["optim.lr"], "must look like section.key=value"),
        (["data.format=avi"], "format must be one of"),
        (["data.max_broken=5"], r"max_broken is a fraction of the split, 0\.\.1, got 5"),
        (
            ["optim.epochs=2", "optim.freeze_backbone_epochs=3"],
            r"freeze_backbone_epochs must be 0\.\.epochs \(2\)",
        ),
    ],
)
def test_bad_overrides(overrides: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_config(None, overrides)


def test_the_clip_comes_from_the_init_checkpoint_where_left_out() -> None:
    base = InputSpec.for_crop(
        13, 160, mean=IMAGENET_MEAN, sampling="interval", interval=6, test_short_side=160
    )
    assert load_config(None).data.input_spec() == InputSpec.for_crop(8, 112)
    assert load_config(None).data.input_spec(base) == base
    assert load_config(None, ["data.test_short_side=182"]).data.input_spec(base) == InputSpec.for_crop(
        13, 160, mean=IMAGENET_MEAN, sampling="interval", interval=6, test_short_side=182
    )
    # A new frame count takes its interval, a new crop scales the short sides; nothing else moves.
    assert load_config(None, ["data.num_frames=16"]).data.input_spec(base) == dataclasses.replace(
        base, num_frames=16, interval=5
    )
    assert load_config(None, ["data.num_frames=10"]).data.input_spec(base).interval == 6  # the base's
    assert load_config(None, ["data.crop_size=224"]).data.input_spec(base) == dataclasses.replace(
        base,
        crop_size=224,
        train_short_side=(256, 321),
        test_short_side=224,  # (183, 229) x 1.4
    )
    both = load_config(None, ["data.crop_size=112", "data.num_frames=8", "data.interval=2"]).data.input_spec(
        base
    )
    assert both == InputSpec(8, 112, IMAGENET_MEAN, base.std, "interval", 2, (128, 160), 112)


@pytest.mark.parametrize(
    "path", sorted(Path(__file__).parents[2].glob("configs/*.toml")), ids=lambda p: p.name
)
def test_the_shipped_configs_load(path: Path) -> None:
    config = load_config(path)
    assert config.data.input_spec()  # a valid clip, with the defaults where the config leaves it out


def test_bad_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="config file not found"):
        load_config(tmp_path / "none.toml")
    (tmp_path / "bad.toml").write_text("[optim\nlr = ")
    with pytest.raises(ValueError, match="invalid TOML"):
        load_config(tmp_path / "bad.toml")


def test_schedule_warms_up_then_decays_to_zero() -> None:
    lrs = [learning_rate(s, 100, 10, 1.0) for s in range(101)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[10] == pytest.approx(1.0) and lrs[55] == pytest.approx(0.5) and lrs[100] == pytest.approx(0.0)
    assert all(a >= b for a, b in itertools.pairwise(lrs[10:]))


def test_topk_correct() -> None:
    import torch

    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.3], [0.2, 0.3, 0.5]])
    assert topk_correct(logits, torch.tensor([1, 2, 0]), (1, 2)) == [1, 2]
