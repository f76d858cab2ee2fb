"""Decoding real encoded files and frame folders, and the errors for what is not a video."""

from __future__ import annotations

import os
import threading
import time
import tracemalloc
from pathlib import Path

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dcf.data.synthetic import render_video
from dcf.data.video import (
    DecodeCancelled,
    DecodeWorkError,
    EmptyFile,
    EncodedVideo,
    FrameFolder,
    NotAVideo,
    UnreadableFile,
    VideoDecodeError,
    VideoLimitError,
    VideoLimits,
    open_video,
    output_size,
)
from dcf.testing import media
from dcf.testing.media import CODECS, moving_square, write_jpeg, write_video
from dcf.testing.server import loopback_listener


@pytest.mark.parametrize("suffix", sorted(CODECS))
def test_decodes_each_container(tmp_path: Path, suffix: str) -> None:
    frames = moving_square(10)
    video = open_video(write_video(tmp_path / f"v{suffix}", frames))
    assert video.info.num_frames == 10
    assert (video.info.width, video.info.height) == (40, 32)
    got = video.read([9, 0, 4, 4])
    assert got.shape == (4, 32, 40, 3) and got.dtype == np.uint8
    # Lossy codecs: compare with the source loosely; the square must be where it was drawn.
    assert np.abs(got[1].astype(int) - frames[0]).mean() < 20  # chroma subsampling of noise
    assert got[0][10:18, 18:26].mean() > 180


def test_decodes_from_memory(tmp_path: Path) -> None:
    data = write_video(tmp_path / "v.mp4", moving_square(6)).read_bytes()
    video = EncodedVideo(data)
    assert video.info.num_frames == 6
    assert video.read([5]).shape == (1, 32, 40, 3)


def test_frame_folder(tmp_path: Path) -> None:
    frames = moving_square(3)
    for i, frame in enumerate(frames):
        write_jpeg(tmp_path / "clip" / f"{i + 1:05d}.jpg", frame)
    video = open_video(tmp_path / "clip")
    assert isinstance(video, FrameFolder)
    assert video.info.num_frames == 3
    assert video.read([2, 0]).shape == (2, 32, 40, 3)


@pytest.mark.parametrize("data", [b"", b"\x00\x01garbage" * 100, b"just some text\n" * 50])
def test_not_a_video(data: bytes) -> None:
    with pytest.raises(VideoDecodeError):
        EncodedVideo(data)


def test_truncated_video(tmp_path: Path) -> None:
    data = write_video(tmp_path / "v.mp4", moving_square(24)).read_bytes()
    with pytest.raises(VideoDecodeError):
        EncodedVideo(data[: len(data) // 3])


def test_audio_only_file_has_no_video_stream(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with pytest.raises(NotAVideo, match="not a video container"):  # WAV is not on the allow-list
        open_video(path)
    with pytest.raises(NotAVideo, match="no video stream"):
        EncodedVideo(media.audio_only(".m4a"))  # MP4 is, but without a video stream


def test_empty_frame_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoDecodeError, match="no frames"):
        open_video(tmp_path / "empty")


class CountingEvent(threading.Event):
    """A cancel event that counts how often the decoder looked at it, and sets itself after ``after``."""

    def __init__(self, after: int | None = None) -> None:
        super().__init__()
        self.checks, self.after = 0, after

    def is_set(self) -> bool:
        self.checks += 1
        return self.after is not None and self.checks > self.after


def _textured(num_frames: int, height: int, width: int, grey: bool = False) -> np.ndarray:
    """Random 4-pixel blocks moving right: detail up to the finest scale the encoder keeps."""
    rng = np.random.default_rng(1)
    base = rng.integers(0, 256, (height // 4 + 2, width // 4 + num_frames, 1 if grey else 3), dtype=np.uint8)
    big = np.repeat(np.repeat(base, 4, axis=0), 4, axis=1)
    frames = np.stack([big[:height, 4 * t : 4 * t + width] for t in range(num_frames)])
    return np.ascontiguousarray(np.broadcast_to(frames, (*frames.shape[:3], 3)))


@pytest.mark.parametrize(
    ("content", "mean", "p99"),
    [("grey texture", 1.0, 2.0), ("synthetic motion", 2.0, 8.0)],
)
def test_frames_are_resized_as_decoded_like_an_independent_resize(
    tmp_path: Path, content: str, mean: float, p99: float
) -> None:
    """swscale's one-step convert + resize against torch's antialiased bilinear resize of the full
    RGB frame. Luma agrees to rounding; colour a little less (chroma is resized before the
    conversion instead of after it, which differs where saturated colours clip), hence the looser
    tolerance for the synthetic clips (colour objects on colour textures, the demo's data)."""
    if content == "grey texture":
        frames = _textured(6, 240, 320, grey=True)
    else:
        frames = np.concatenate(
            [render_video(label, np.random.default_rng(label), num_frames=6) for label in (0, 6)]
        )
    video = open_video(write_video(tmp_path / "v.mp4", frames))
    h, w = frames.shape[1:3]
    size = output_size(h, w, 73)
    indices = [5, 1, 9][: len(frames) // 2 + 1]
    got = video.read(indices, short_side=73)
    assert got.shape == (len(indices), *size, 3)
    full = torch.from_numpy(video.read(indices)).permute(0, 3, 1, 2).float()
    expected = F.interpolate(full, size=size, mode="bilinear", antialias=True).permute(0, 2, 3, 1)
    difference = (torch.from_numpy(got).float() - expected).abs()
    assert difference.mean() <= mean and difference.quantile(0.99) <= p99, (
        difference.mean(),
        difference.max(),
    )


def test_rotated_frames_are_resized_upright() -> None:
    frames = np.full((4, 48, 80, 3), 20, np.uint8)
    frames[:, :16, :16] = 235
    video = EncodedVideo(media.rotated_mp4(90, frames=frames))
    small = torch.from_numpy(video.read([0], short_side=24)).float()
    assert small.shape == (1, 40, 24, 3)  # displayed 48 wide, 80 tall
    full = (
        torch.from_numpy(video.read([0])).permute(0, 3, 1, 2).float()
    )  # upright (tested in the server tests)
    expected = F.interpolate(full, size=(40, 24), mode="bilinear", antialias=True).permute(0, 2, 3, 1)
    assert (small - expected).abs().mean() < 1.5  # the same picture, the same way up


def test_only_working_size_frames_are_held(tmp_path: Path) -> None:
    """Frames come out of swscale at the working size: reading 40 frames of 720p at short side 64
    allocates well under one 720p RGB frame per wanted frame (2.8 MB each, 110 MB for all)."""
    video = EncodedVideo(write_video(tmp_path / "v.mp4", _textured(40, 720, 1280)))
    tracemalloc.start()
    try:
        frames = video.read(range(40), short_side=64)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert frames.shape == (40, 64, 114, 3)
    assert peak < 4 * 2**20, f"{peak / 2**20:.1f} MiB allocated"


def test_decode_plan_counts_the_frames_the_decoder_produces(tmp_path: Path) -> None:
    video = EncodedVideo(write_video(tmp_path / "v.mp4", moving_square(400, 48, 64, seed=5), fps=25))
    pixels = 48 * 64
    keyframe = video._keyframe_before(399)  # x264 put one at a scene cut after 250
    assert keyframe is not None and 3 + 24 < keyframe < 399
    plan = video.plan([399, 3, 3])
    frames = 4 + 400 - keyframe
    assert (
        plan.runs == ((None, 3), (keyframe, 399)) and plan.frames == frames and plan.pixels == frames * pixels
    )
    assert video.plan(range(400)).frames == 400
    for indices in ([399, 3], [10, 11, 300], [0], list(range(0, 400, 50))):
        watch = CountingEvent()
        video.read(indices, cancel=watch)
        assert watch.checks == video.plan(indices).frames  # one check per decoded frame

    limited = EncodedVideo(video._source, VideoLimits(max_decode_pixels=frames * pixels))
    assert limited.read([399, 3]).shape == (2, 48, 64, 3)  # exactly at the budget
    with pytest.raises(DecodeWorkError, match=r"decoding 400 frames of 3072 pixels \(1 Mpixels\); at most 0"):
        limited.read(range(400))


def test_cancel_stops_decoding_between_frames(tmp_path: Path) -> None:
    video = EncodedVideo(write_video(tmp_path / "v.mp4", moving_square(120, 48, 64)))
    cancel = CountingEvent(after=10)
    with pytest.raises(DecodeCancelled):
        video.read(range(120), cancel=cancel)
    assert cancel.checks == 11  # stopped at the first check after it was set
    opening = CountingEvent(after=0)
    with pytest.raises(DecodeCancelled):
        EncodedVideo(video._source, cancel=opening)  # also while counting packets


@pytest.mark.parametrize("as_path", [False, True], ids=["bytes", "path"])
def test_nested_references_are_never_followed(tmp_path: Path, as_path: bool) -> None:
    """HLS, DASH and ffconcat files (named so that FFmpeg's probe picks their demuxers) pointing at a
    loopback listener or a real local video: refused, and nothing is ever opened."""
    local = write_video(tmp_path / "real.mp4", moving_square(12))
    with loopback_listener() as listener:
        for name, data in media.nested_references(listener.url, local).items():
            source: Path | bytes = data
            if as_path:
                source = tmp_path / name
                source.write_bytes(data)
            with pytest.raises(NotAVideo) as refused:
                open_video(source)
            if name.endswith(".ffconcat"):  # found by FFmpeg's probe, refused by the allow-list
                assert "not a video container this reader accepts" in str(refused.value)
        time.sleep(0.3)
    assert listener.connections == []


def test_image_sequence_patterns_are_not_expanded(tmp_path: Path) -> None:
    for i, frame in enumerate(moving_square(3)):
        write_jpeg(tmp_path / f"img{i + 1:03d}.jpg", frame)
    with pytest.raises(UnreadableFile, match="No such file"):
        open_video(tmp_path / "img%03d.jpg")


def test_empty_and_unreadable_files_say_so(tmp_path: Path) -> None:
    (tmp_path / "empty.mp4").touch()
    for source in (b"", tmp_path / "empty.mp4"):
        with pytest.raises(EmptyFile, match="the file is empty"):
            EncodedVideo(source)
    with pytest.raises(UnreadableFile, match="Is a directory"):
        EncodedVideo(tmp_path)
    os.mkfifo(tmp_path / "pipe.mp4")  # no size to tell: read, and refused for what it holds
    writer = threading.Thread(target=(tmp_path / "pipe.mp4").write_bytes, args=(b"not a video",), daemon=True)
    writer.start()
    with pytest.raises(NotAVideo) as refused:
        EncodedVideo(tmp_path / "pipe.mp4")
    writer.join(timeout=5)
    assert not isinstance(refused.value, EmptyFile | UnreadableFile)


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
