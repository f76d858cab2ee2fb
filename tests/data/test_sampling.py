"""Clip sampling index math and preprocessing (paper Sec. 4.1)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from dcf.data.sampling import interval_indices, sample_indices, segment_indices
from dcf.data.spec import InputSpec
from dcf.data.transforms import eval_transform, train_transform
from dcf.data.video import output_size


def test_segment_eval_takes_segment_middles() -> None:
    assert segment_indices(80, 8) == [5, 15, 25, 35, 45, 55, 65, 75]


def test_segment_train_stays_in_its_segment() -> None:
    rng = random.Random(0)
    for _ in range(200):
        indices = segment_indices(37, 8, rng=rng)
        for k, i in enumerate(indices):
            assert int(k * 37 / 8) <= i < (k + 1) * 37 / 8


@pytest.mark.parametrize("length", [1, 3, 7])
def test_segment_short_video_repeats_frames(length: int) -> None:
    indices = segment_indices(length, 8)
    assert len(indices) == 8
    assert all(0 <= i < length for i in indices)
    assert indices == sorted(indices)


def test_interval_eval_is_centred() -> None:
    # 8 frames every 8: span 57 frames; a 100-frame video leaves 43 spare, start = 21.
    assert interval_indices(100, 8, 8) == [21 + 8 * k for k in range(8)]


def test_interval_multi_clip_spreads_over_the_video() -> None:
    starts = [interval_indices(100, 8, 8, clip_index=c, num_clips=3)[0] for c in range(3)]
    assert starts == [0, 22, 43]


def test_interval_short_video_repeats_last_frame() -> None:
    assert interval_indices(10, 4, 5) == [0, 5, 9, 9]
    assert interval_indices(1, 4, 5) == [0, 0, 0, 0]


def test_interval_train_start_is_random_within_room() -> None:
    rng = random.Random(1)
    starts = {interval_indices(100, 8, 8, rng=rng)[0] for _ in range(300)}
    assert min(starts) >= 0 and max(starts) <= 43 and len(starts) > 20


def test_sample_indices_follows_the_spec() -> None:
    seg = InputSpec.for_crop(8, 112)
    assert sample_indices(seg, 80) == segment_indices(80, 8)
    inter = InputSpec.for_crop(13, 160, sampling="interval")
    assert inter.interval == 6  # the paper's interval for 13 frames
    assert sample_indices(inter, 200) == interval_indices(200, 13, 6)
    shifted = [sample_indices(seg, 80, clip_index=c, num_clips=2) for c in range(2)]
    assert shifted[0] != shifted[1]


def test_empty_video_is_an_error() -> None:
    with pytest.raises(ValueError, match="video with 0 frames"):
        segment_indices(0, 8)


def test_spec_scales_the_paper_recipe_and_round_trips() -> None:
    spec = InputSpec.for_crop(16, 224)
    assert spec.train_short_side == (256, 320) and spec.test_short_side == 256 and spec.interval == 5
    assert InputSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="unknown fields"):
        InputSpec.from_dict({**spec.to_dict(), "frames": 3})
    with pytest.raises(ValueError, match="at least the crop"):
        InputSpec(num_frames=8, crop_size=224, train_short_side=(200, 300))


def test_output_size_keeps_aspect_ratio() -> None:
    assert output_size(30, 60, 15) == (15, 30)
    assert output_size(1080, 1920, 73) == (73, 130)  # 129.8 rounds up
    assert output_size(1920, 1080, 73) == (130, 73)
    assert output_size(20, 20, 64) == (64, 64)  # small frames are enlarged


def test_train_transform_shape_and_normalisation() -> None:
    spec = InputSpec.for_crop(4, 32)
    frames = np.full((4, 48, 64, 3), 255 * 0.45, dtype=np.uint8)  # the mean colour everywhere
    clip = train_transform(frames, spec, random.Random(0))
    assert clip.shape == (3, 4, 32, 32)
    assert clip.abs().max() < 0.02


def test_transforms_refuse_frames_smaller_than_the_crop() -> None:
    spec = InputSpec.for_crop(2, 32)
    with pytest.raises(ValueError, match=r"\(30, 40\) pixels are smaller than the 32-pixel crop"):
        eval_transform(np.zeros((2, 30, 40, 3), np.uint8), spec)


@pytest.mark.parametrize(("h", "w"), [(32, 96), (96, 32)])
def test_three_crops_span_the_long_side(h: int, w: int) -> None:
    spec = InputSpec.for_crop(2, 32, test_short_side=32)
    ramp = np.linspace(0, 255, max(h, w)).astype(np.uint8)
    frames = np.zeros((2, h, w, 3), np.uint8)
    if w > h:
        frames[:] = ramp[None, None, :, None]
    else:
        frames[:] = ramp[None, :, None, None]
    crops = eval_transform(frames, spec, num_crops=3)
    assert crops.shape == (3, 3, 2, 32, 32)
    means = crops.mean(axis=(1, 2, 3, 4))
    assert means[0] < means[1] < means[2]  # first, centre and last position along the long side
    centre = eval_transform(frames, spec, num_crops=1)
    np.testing.assert_array_equal(centre[0], crops[1])
