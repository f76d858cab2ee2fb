"""Checkpoints: safetensors weights + JSON config, round trip and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import dcf
from dcf.checkpoint import (
    CheckpointConfig,
    load_checkpoint,
    model_kwargs_to_json,
    read_checkpoint,
    save_checkpoint,
)
from dcf.data.spec import InputSpec
from dcf.models import DCFConfig

KWARGS = {"widths": (8, 16, 32, 64), "stem_width": 8, "head_width": 32, "dcf": DCFConfig(pyramid=False)}


def _config() -> CheckpointConfig:
    return CheckpointConfig(
        "x3d_xs_dcf",
        ("left", "right", "still"),
        InputSpec.for_crop(4, 32),
        model_kwargs_to_json(KWARGS),
        {"lr": 0.1},
    )


def test_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = dcf.build_model("x3d_xs_dcf", num_classes=3, **KWARGS).eval()
    save_checkpoint(tmp_path / "m.safetensors", model, _config())
    loaded = load_checkpoint(tmp_path / "m.safetensors")
    assert not loaded.training
    assert loaded.classes == ["left", "right", "still"]
    assert loaded.input_spec == InputSpec.for_crop(4, 32)
    assert loaded.checkpoint_config.recipe == {"lr": 0.1}
    assert loaded.config.pyramid is False  # the DCFConfig came back
    x = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
    assert not list(tmp_path.glob(".*tmp*"))  # the atomic write left nothing behind


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope.safetensors")


def test_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="not a valid safetensors file"):
        load_checkpoint(path)


def test_plain_safetensors_without_config(tmp_path: Path) -> None:
    path = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(ValueError, match="without a DCF config"):
        read_checkpoint(path)


def test_weights_that_do_not_fit(tmp_path: Path) -> None:
    model = dcf.build_model("x3d_xs", num_classes=3, widths=(8, 16, 32, 64), stem_width=8, head_width=32)
    save_checkpoint(tmp_path / "m.safetensors", model, _config())  # config says x3d_xs_dcf
    with pytest.raises(ValueError, match="weights do not match x3d_xs_dcf"):
        load_checkpoint(tmp_path / "m.safetensors")
