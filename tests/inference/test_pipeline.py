"""The service's parts on their own: decoding details, options, windows, scoring, batching."""

from __future__ import annotations

import numpy as np
import pytest

from dcf.data.spec import InputSpec
from dcf.data.video import VideoInfo, VideoLimits
from dcf.inference.answer import Label
from dcf.inference.backends import ModelInfo
from dcf.inference.pipeline import (
    InvalidOptions,
    PredictOptions,
    PreparedVideo,
    _windows,
    prepare,
    summarize,
)
from dcf.testing import media
from dcf.testing.media import moving_square


def test_options_are_checked() -> None:
    PredictOptions(top_k=12, clips=2, crops=3).check(num_classes=12, max_views=64)
    with pytest.raises(InvalidOptions) as error:
        PredictOptions(top_k=13, clips=30, crops=3).check(num_classes=12, max_views=64)
    assert "top_k must be between 1 and 12, got 13" in str(error.value)
    assert "clips x crops must be at most 64, got 90" in str(error.value)


def test_options_parse_text_and_say_what_was_expected() -> None:
    """Query and form values are text; every problem is named with what was expected."""
    options = PredictOptions.parse({"top_k": "3", "crops": "3", "timeline": "on", "window_s": "1.5"})
    assert options == PredictOptions(top_k=3, crops=3, timeline=True, window_s=1.5)
    with pytest.raises(InvalidOptions) as error:
        PredictOptions.parse(
            {"top_k": "0", "crops": "2", "window_s": "inf", "sampling": "random", "topk": "3"}
        )
    message = str(error.value)
    for part in (
        "top_k must be >= 1, got 0",
        "crops must be 1 or 3, got 2",
        "window_s: input should be a finite number, got 'inf'",
        "sampling must be 'segment' or 'interval', got random",
        "unknown option 'topk'; expected some of top_k, clips, crops, sampling, timeline, window_s",
    ):
        assert part in message, message


def test_windows_cover_the_video_and_respect_max_views() -> None:
    info = VideoInfo(num_frames=300, width=64, height=48, fps=10.0, duration=30.0)
    ranges, fps = _windows(info, PredictOptions(timeline=True, window_s=5), max_views=64)
    assert fps == 10 and ranges[0] == (0, 50) and ranges[-1] == (250, 300) and len(ranges) == 6
    ranges, _ = _windows(info, PredictOptions(timeline=True, window_s=0.1, clips=2), max_views=16)
    assert len(ranges) == 8 and ranges[-1][1] == 300  # lengthened: 8 windows x 2 clips = 16 views


def test_summary_averages_softmax_over_views() -> None:
    classes = ("a", "b", "c")
    logits = np.log(np.array([[0.7, 0.2, 0.1], [0.2, 0.1, 0.7], [0.6, 0.3, 0.1], [0.6, 0.3, 0.1]]))
    info = VideoInfo(num_frames=40, width=8, height=8, fps=10.0, duration=4.0)
    prepared = PreparedVideo(np.zeros((4, 1)), [(0.0, 2.0), (2.0, 4.0)], info, 32, 0.0)
    model = ModelInfo("m", "x3d_xs", classes, InputSpec.for_crop(8, 64), "torch", "cpu", "fp32")
    answer = summarize(logits, prepared, model, PredictOptions(top_k=2, clips=2, timeline=True))
    assert answer.timeline is not None
    assert [p.label for p in answer.timeline[0].predictions] == ["a", "c"]  # (0.45, 0.15, 0.4)
    assert answer.timeline[1].predictions[0] == Label(label="a", index=0, score=0.6)
    assert answer.predictions[0].label == "a" and answer.predictions[0].score == pytest.approx(0.525)
    assert answer.model == "m" and answer.views.total == 4


def test_prepare_uses_the_models_input_spec() -> None:
    spec = InputSpec.for_crop(8, 64)
    data = media.encoded(".mp4", moving_square(30, 96, 128))
    prepared = prepare(data, spec, PredictOptions(clips=2, crops=3), VideoLimits(), max_views=64)
    assert prepared.views.shape == (6, 3, 8, 64, 64) and prepared.views.dtype == np.float32
    assert prepared.frames_used == 16 and prepared.info.num_frames == 30
