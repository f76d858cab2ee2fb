"""The correlation-field picture (DESIGN.md section 8): known motion through the raw op, the colour
wheel's directions, and the options."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dcf.inference.fields import (
    VisualizeOptions,
    displacement_field,
    flow_colours,
    offsets,
    stage_stride,
    wheel_image,
)
from dcf.inference.pipeline import InvalidOptions
from dcf.models import build_model
from dcf.models.dcf_net import DCFNet
from dcf.ops import correlation
from dcf.testing import media

TOP, SIZE = 20, 24  # where media.moving_texture puts its square (height 64)


def _unit_features(frames: np.ndarray) -> torch.Tensor:
    """Input frames as features: mean-free colour, unit length per pixel (the flat background is 0)."""
    x = torch.from_numpy(frames.astype(np.float32) / 255 - 128 / 255).permute(3, 0, 1, 2)[None]
    norm = x.norm(dim=1, keepdim=True)
    return torch.where(norm > 1e-6, x / norm.clamp_min(1e-6), torch.zeros_like(x))


@pytest.mark.parametrize("step", [1, 2])
def test_raw_op_shows_an_object_moving_right_as_rightward_displacement(step: int) -> None:
    frames = media.moving_texture(6, height=64, width=96, step=step, size=SIZE)
    volume = correlation(_unit_features(frames), kernel_size=5, temporal_range=2)[0]
    for tau in offsets(2):
        field = displacement_field(volume, 5, 2, tau)
        for t in range(6):
            if not 0 <= t + tau < 6:  # no partner frame: nothing drawn
                assert not field.valid[t].any()
                continue
            left = 4 + step * t
            # The square's interior (its partner stays inside the square within the window).
            inner = field.displacement[t, TOP + 2 : TOP + SIZE - 2, left + 4 : left + SIZE - 4]
            assert (inner[..., 1] == step * tau).all() and (inner[..., 0] == 0).all(), (tau, t)
            assert field.valid[t, TOP + 2 : TOP + SIZE - 2, left + 4 : left + SIZE - 4].all()
            assert not field.valid[t, :TOP].any() and not field.valid[t, TOP + SIZE :].any()  # background
    # Scaled by the stage's stride; soft-argmax agrees in direction on average (on the raw op's
    # small correlations, +-1/sqrt(3), its softmax is nearly flat: it pulls towards no motion).
    strided = displacement_field(volume, 5, 2, 1, stride=4)
    assert strided.displacement[0, TOP + 8, 12, 1] == 4 * step
    soft = displacement_field(volume, 5, 2, 1, soft=True)
    assert soft.displacement[0, TOP + 4 : TOP + SIZE - 4, 10:20, 1].mean() > 0


def test_still_and_flat_regions_show_no_motion() -> None:
    """Equal correlations (a flat region, a still scene) and the frame's border (partners outside
    it are no measurement) must not read as motion towards the window's first corner."""
    frames = np.full((4, 32, 40, 3), 128, np.uint8)
    frames[:, :, 20:] = (200, 60, 60)  # two flat colours, still
    frames[:, 10:18, 4:12] = media.moving_texture(1, 8, 12, step=0, size=8)[0, :, 2:10]  # a still texture
    volume = correlation(_unit_features(frames), kernel_size=5, temporal_range=1)[0]
    field = displacement_field(volume, 5, 1, 1)
    assert field.valid[:3].any() and not field.valid[3].any()
    assert (field.displacement[field.valid] == 0).all()


def test_stage_strides_are_powers_of_two() -> None:
    assert [stage_stride(64, n) for n in (16, 8, 4)] == [4, 8, 16]
    assert stage_stride(312, 20) == 16 and stage_stride(120, 8) == 16  # stages round odd sizes up


def test_colours_follow_the_wheel() -> None:
    directions = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, -1.0], [-1.0, 0.0], [0.0, 0.0], [0.0, 0.5]])
    colours, relative = flow_colours(directions, max_magnitude=1.0)
    right, down, left, up, still, slow = colours
    assert np.allclose(right, [1, 0, 0])  # red
    assert down[0] == 1 and down[1] > 0.8 and down[2] == 0  # yellow
    assert left[0] == 0 and left[1] > 0.8 and left[2] == 1  # cyan
    assert up[2] == 1 and up[1] == 0  # blue-violet
    assert np.allclose(still, 1) and np.allclose(slow, [1, 0.5, 0.5])  # white; half saturated
    assert np.allclose(relative, [1, 1, 1, 1, 0, 0.5])
    wheel = wheel_image(65).astype(int)  # the legend: the same colours around a disc
    assert wheel[32, 64, 0] == 255 and wheel[32, 64, 1:].max() < 20  # red on the right (radius 32)
    assert (wheel[32, 32] == 255).all() and (wheel[0, 0] == 255).all()  # white centre, white outside
    assert wheel[32, 1, 0] < 60 and wheel[32, 1, 2] > 250  # cyan on the left


def test_options_name_what_is_allowed() -> None:
    model = build_model("x3d_xs_dcf", num_classes=3)
    assert isinstance(model, DCFNet)
    assert VisualizeOptions.bounds(model) == {
        "stage": {"enum": [2, 3, 4]},
        "tau": {"minimum": -2, "maximum": 2},
    }
    assert VisualizeOptions().stage_of(model) == 2
    with pytest.raises(InvalidOptions, match=r"tau must be one of \[-1, 1\] at stage 4, got 2"):
        VisualizeOptions(stage=4, tau=2).stage_of(model)
    with pytest.raises(InvalidOptions, match=r"stage must be one of \[2, 3, 4\]"):
        VisualizeOptions(stage=5).stage_of(model)
    with pytest.raises(InvalidOptions, match="tau must not be 0"):
        VisualizeOptions.parse({"tau": "0"})
    with pytest.raises(ValueError, match="expected a volume of shape"):
        displacement_field(torch.zeros(24, 2, 4, 4), 5, 2, 1)
