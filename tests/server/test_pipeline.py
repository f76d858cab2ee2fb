"""The service's parts on their own: decoding details, options, windows, scoring, batching."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from dcf.data.spec import InputSpec
from dcf.data.video import EncodedVideo, VideoInfo, VideoLimitError, VideoLimits
from dcf.inference.pipeline import (
    InvalidOptions,
    PredictOptions,
    PreparedVideo,
    _windows,
    prepare,
    summarize,
)
from dcf.server.batching import DeadlineExceeded, DynamicBatcher, Overloaded
from tests.server import media
from tests.videos import moving_square, write_video


@pytest.mark.parametrize(("rotation", "corner"), [(90, (1, 0)), (-90, (0, 1)), (180, (1, 1))])
def test_rotation_metadata_turns_frames_upright(rotation: int, corner: tuple[int, int]) -> None:
    """A bright block in the coded top-left corner shows up where the display rotation puts it."""
    frames = np.full((4, 48, 80, 3), 20, np.uint8)
    frames[:, :16, :16] = 235
    video = EncodedVideo(media.rotated_mp4(rotation, frames=frames))
    (frame,) = video.read([0])
    h, w = frame.shape[:2]
    assert (video.info.width, video.info.height) == (w, h) == ((48, 80) if rotation % 180 else (80, 48))
    quadrants = {
        (r, c): frame[r * h // 2 : (r + 1) * h // 2, c * w // 2 : (c + 1) * w // 2].mean()
        for r in (0, 1)
        for c in (0, 1)
    }
    assert max(quadrants, key=quadrants.__getitem__) == corner  # (row, column) of the bright corner


@pytest.mark.parametrize("suffix", [".mp4", ".webm", ".avi", ".mkv"])
def test_sparse_reads_seek_and_match_a_full_decode(tmp_path, suffix: str) -> None:
    path = write_video(tmp_path / f"long{suffix}", moving_square(400, 48, 64, seed=5), fps=25)
    video = EncodedVideo(path)
    everything = video.read(range(video.info.num_frames))
    wanted = [399, 3, 200, 201, 120, 3, 350]
    np.testing.assert_array_equal(video.read(wanted), everything[wanted])


def test_limits_are_checked_before_decoding() -> None:
    with pytest.raises(VideoLimitError, match="16000x16000"):
        EncodedVideo(media.huge_resolution_y4m(16000, 16000))
    long = media.long_mp4(seconds=20)
    with pytest.raises(VideoLimitError, match="more than 100 frames"):
        EncodedVideo(long, VideoLimits(max_frames=100))
    with pytest.raises(VideoLimitError, match="lasts 20 s"):
        EncodedVideo(long, VideoLimits(max_duration=10))


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
    answer = summarize(logits, prepared, classes, PredictOptions(top_k=2, clips=2, timeline=True))
    assert [p["label"] for p in answer["timeline"][0]["predictions"]] == ["a", "c"]  # (0.45, 0.15, 0.4)
    assert answer["timeline"][1]["predictions"][0] == {"label": "a", "index": 0, "score": 0.6}
    assert answer["predictions"][0]["label"] == "a" and answer["predictions"][0]["score"] == pytest.approx(
        0.525
    )


def test_prepare_uses_the_models_input_spec() -> None:
    spec = InputSpec.for_crop(8, 64)
    data = media.encoded(".mp4", moving_square(30, 96, 128))
    prepared = prepare(data, spec, PredictOptions(clips=2, crops=3), VideoLimits(), max_views=64)
    assert prepared.views.shape == (6, 3, 8, 64, 64) and prepared.views.dtype == np.float32
    assert prepared.frames_used == 16 and prepared.info.num_frames == 30


def _run(coro):
    return asyncio.run(coro)


def test_batcher_batches_concurrent_requests_and_routes_results() -> None:
    calls: list[int] = []

    def predict(batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        time.sleep(0.01)
        return batch.reshape(len(batch), -1)[:, :2] * 2

    async def scenario():
        batcher = DynamicBatcher(predict, max_batch=8, max_wait_s=0.05, max_queue=64)
        batcher.start()
        requests = [np.full((n, 3), float(i)) for i, n in enumerate([1, 2, 3, 1])]
        results = await asyncio.gather(*(batcher.submit(r, time.perf_counter() + 5) for r in requests))
        await batcher.stop()
        return requests, results

    requests, results = _run(scenario())
    assert calls == [7]  # one call for all four requests
    for request, (logits, timing) in zip(requests, results, strict=True):
        np.testing.assert_array_equal(logits, request[:, :2] * 2)
        assert timing.batch_views == 7


def test_batcher_refuses_when_full_and_drops_expired_requests() -> None:
    seen: list[float] = []

    def predict(batch: np.ndarray) -> np.ndarray:
        seen.extend(batch[:, 0].tolist())
        time.sleep(0.05)
        return batch

    async def scenario():
        batcher = DynamicBatcher(predict, max_batch=2, max_wait_s=0, max_queue=2)
        batcher.start()
        first = asyncio.ensure_future(batcher.submit(np.full((2, 1), 1.0), time.perf_counter() + 5))
        await asyncio.sleep(0.01)  # the first batch is running
        expired = asyncio.ensure_future(batcher.submit(np.full((1, 1), 2.0), time.perf_counter() - 1))
        await asyncio.sleep(0)
        with pytest.raises(Overloaded) as full:
            await batcher.submit(np.full((2, 1), 3.0), time.perf_counter() + 5)
        await first
        with pytest.raises(DeadlineExceeded):
            await expired
        await batcher.stop()
        return full.value

    full = _run(scenario())
    assert full.retry_after >= 1
    assert seen == [1.0, 1.0]  # the expired request never reached the model


def test_batcher_reports_model_failures_to_every_request() -> None:
    def predict(batch: np.ndarray) -> np.ndarray:
        raise RuntimeError("CUDA out of memory")

    async def scenario():
        batcher = DynamicBatcher(predict, max_batch=4, max_wait_s=0.01, max_queue=8)
        batcher.start()
        outcome = await asyncio.gather(
            *(batcher.submit(np.zeros((1, 1)), time.perf_counter() + 5) for _ in range(2)),
            return_exceptions=True,
        )
        await batcher.stop()
        return outcome

    assert all(isinstance(e, RuntimeError) and "out of memory" in str(e) for e in _run(scenario()))
