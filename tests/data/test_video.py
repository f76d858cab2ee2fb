"""Decoding real encoded files and frame folders, and the errors for what is not a video."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from dcf.data.video import EncodedVideo, FrameFolder, VideoDecodeError, open_video
from tests.videos import CODECS, moving_square, write_jpeg, write_video


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
    with pytest.raises(VideoDecodeError, match="no video stream"):
        open_video(path)


def test_empty_frame_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoDecodeError, match="no frames"):
        open_video(tmp_path / "empty")
