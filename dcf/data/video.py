"""Reading frames: encoded videos through PyAV, and folders of JPEG frames (Something-Something V1).

Both give a :class:`VideoSource`: its frame count, then the RGB frames at chosen indices.
Containers are always closed; every failure to read is a :class:`VideoDecodeError`.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import av
import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class VideoDecodeError(ValueError):
    """The input is not a video that can be decoded (or has no usable frames)."""


@dataclass(frozen=True)
class VideoInfo:
    """What a source holds. ``fps`` is the stream's average rate (0 where unknown)."""

    num_frames: int
    width: int
    height: int
    fps: float


class VideoSource(Protocol):
    info: VideoInfo

    def read(self, indices: Sequence[int]) -> np.ndarray:
        """Frames at ``indices`` (any order, repeats allowed) as uint8 (len(indices), H, W, 3)."""
        ...


class EncodedVideo:
    """A video file or in-memory bytes, decoded with PyAV (FFmpeg)."""

    def __init__(self, source: str | Path | bytes) -> None:
        self._source = source
        with self._open() as container:
            stream = container.streams.video[0]
            # Packets, not decoded frames: counting them reads the file but decodes nothing.
            count = sum(1 for packet in container.demux(stream) if packet.size)
            rate = stream.average_rate
            self.info = VideoInfo(
                count, stream.codec_context.width, stream.codec_context.height, float(rate) if rate else 0.0
            )
        if count == 0:
            raise VideoDecodeError("the video stream holds no frames")

    def _open(self) -> av.container.InputContainer:
        data = io.BytesIO(self._source) if isinstance(self._source, bytes) else str(self._source)
        try:
            container = av.open(data, mode="r")
        except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
            raise VideoDecodeError(f"not a readable video container: {exc}") from None
        if not container.streams.video:
            container.close()
            raise VideoDecodeError("the file has no video stream")
        return container

    def read(self, indices: Sequence[int]) -> np.ndarray:
        wanted = sorted(set(indices))
        frames: dict[int, np.ndarray] = {}
        last: np.ndarray | None = None
        with self._open() as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            try:
                for index, frame in enumerate(container.decode(stream)):
                    if index > wanted[-1]:
                        break
                    last = frame.to_ndarray(format="rgb24")
                    if index in indices:
                        frames[index] = last
            except av.error.FFmpegError as exc:
                if last is None:
                    raise VideoDecodeError(f"could not decode any frame: {exc}") from None
                # A damaged tail: keep what decoded, later indices reuse the last good frame.
        if last is None:
            raise VideoDecodeError("the video stream decodes to no frames")
        return np.stack([frames.get(i, last) for i in indices])


class FrameFolder:
    """A folder of numbered JPEG/PNG frames, read in name order."""

    def __init__(self, folder: str | Path) -> None:
        self._files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self._files:
            raise VideoDecodeError(f"no frames ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
        first = self._decode(0)
        self.info = VideoInfo(len(self._files), first.shape[1], first.shape[0], 0.0)

    def _decode(self, index: int) -> np.ndarray:
        try:  # FFmpeg's image decoders, so one library decodes everything
            with av.open(str(self._files[index])) as container:
                frame = next(container.decode(video=0))
                return frame.to_ndarray(format="rgb24")
        except (av.error.FFmpegError, OSError, StopIteration) as exc:
            raise VideoDecodeError(f"could not read frame {self._files[index]}: {exc}") from None

    def read(self, indices: Sequence[int]) -> np.ndarray:
        return np.stack([self._decode(i) for i in indices])


def open_video(source: str | Path | bytes) -> VideoSource:
    """A folder of frames or an encoded video (path or bytes)."""
    if not isinstance(source, bytes) and Path(source).is_dir():
        return FrameFolder(source)
    return EncodedVideo(source)
