"""Reading frames: encoded videos through PyAV, and folders of JPEG frames (Something-Something V1).

Both give a :class:`VideoSource`: its frame count, then the RGB frames at chosen indices.
Containers are always closed; every failure to read is a :class:`VideoDecodeError`.
"""

from __future__ import annotations

import bisect
import contextlib
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


class NotAVideo(VideoDecodeError):
    """The input is no media container FFmpeg knows, or one without a video stream."""


@dataclass(frozen=True)
class VideoInfo:
    """What a source holds. ``fps`` is the stream's average rate and ``duration`` its length in
    seconds (0 where unknown); ``rotation`` is the clockwise display rotation in degrees that
    :meth:`VideoSource.read` has already applied (``width`` and ``height`` are as displayed)."""

    num_frames: int
    width: int
    height: int
    fps: float
    duration: float = 0.0
    rotation: int = 0


class VideoLimitError(ValueError):
    """The video is valid but larger than a :class:`VideoLimits` allows."""


@dataclass(frozen=True)
class VideoLimits:
    """Bounds checked before decoding (resolution, from the header) and after counting frames."""

    max_width: int = 8192
    max_height: int = 8192
    max_pixels: int = 8192 * 4320
    max_frames: int = 1_000_000
    max_duration: float = 24 * 3600.0


class VideoSource(Protocol):
    info: VideoInfo

    def read(self, indices: Sequence[int]) -> np.ndarray:
        """Frames at ``indices`` (any order, repeats allowed) as uint8 (len(indices), H, W, 3)."""
        ...


def _clockwise(frame: av.VideoFrame) -> int:
    """The frame's display rotation, clockwise, in quarter turns of degrees (PyAV reports the display
    matrix's counter-clockwise angle)."""
    return (-round(frame.rotation / 90) * 90) % 360


# Seek only when it skips at least this many frames: a seek restarts decoding at a keyframe.
_SEEK_MIN_SKIP = 24


class EncodedVideo:
    """A video file or in-memory bytes, decoded with PyAV (FFmpeg).

    Opening reads the container's packets (no decoding) to count frames and find keyframes.
    :meth:`read` decodes only up to the last wanted frame, converts only wanted frames to RGB, and
    seeks to a keyframe when that skips a long stretch (sparse clips of a long video). Frames are
    turned upright by the stream's display rotation.
    """

    def __init__(self, source: str | Path | bytes, limits: VideoLimits | None = None) -> None:
        self._source = source
        limits = limits or VideoLimits()
        with self._open() as container:
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            if width > limits.max_width or height > limits.max_height or width * height > limits.max_pixels:
                raise VideoLimitError(
                    f"the video is {width}x{height}; at most {limits.max_width}x{limits.max_height} and "
                    f"{limits.max_pixels} pixels are accepted"
                )
            rate = stream.average_rate
            fps = float(rate) if rate else 0.0
            pts: list[int | None] = []
            keyframe_pts: list[int] = []
            rotation: int | None = (
                None  # from the first decoded frame: PyAV exposes the display matrix on frames only
            )
            try:
                for packet in container.demux(stream):
                    if not packet.size:
                        continue
                    if rotation is None:
                        rotation = self._rotation(packet)
                    pts.append(packet.pts)
                    if packet.is_keyframe and packet.pts is not None:
                        keyframe_pts.append(packet.pts)
                    if len(pts) > limits.max_frames:
                        raise VideoLimitError(f"the video has more than {limits.max_frames} frames")
            except av.error.FFmpegError:
                pass  # a damaged tail: count what demuxed
            if rotation is None:  # a decoder that holds frames back until flushed (e.g. one frame)
                with contextlib.suppress(av.error.FFmpegError):
                    flushed = stream.codec_context.decode(None)
                    rotation = _clockwise(flushed[0]) if flushed else 0
            duration = self._duration(container, stream, len(pts), fps)
            if duration > limits.max_duration:
                raise VideoLimitError(
                    f"the video lasts {duration:.0f} s; at most {limits.max_duration:.0f} s are accepted"
                )
        if not pts:
            raise VideoDecodeError("the video stream holds no frames")
        # Frame i (presentation order) has the i-th smallest pts; seeking needs them all.
        self._order: list[int] | None = None if None in pts else sorted(p for p in pts if p is not None)
        self._keyframes = sorted(keyframe_pts)
        rotation = rotation or 0
        if rotation in (90, 270):
            width, height = height, width
        self.info = VideoInfo(len(pts), width, height, fps, duration, rotation)

    @staticmethod
    def _duration(
        container: av.container.InputContainer, stream: av.video.stream.VideoStream, frames: int, fps: float
    ) -> float:
        if stream.duration is not None and stream.time_base is not None:
            return float(stream.duration * stream.time_base)
        if container.duration is not None:
            return container.duration / av.time_base
        return frames / fps if fps else 0.0

    @staticmethod
    def _rotation(packet: av.Packet) -> int | None:
        """Clockwise display rotation (0, 90, 180, 270) of the frame this packet decodes to, or
        None while the decoder has not produced a frame yet."""
        try:
            frames = packet.decode()
        except av.error.FFmpegError:
            return 0
        return _clockwise(frames[0]) if frames else None

    def _open(self) -> av.container.InputContainer:
        data = io.BytesIO(self._source) if isinstance(self._source, bytes) else str(self._source)
        try:
            container = av.open(data, mode="r")
        except av.error.FFmpegError as exc:
            raise NotAVideo(f"not a media container FFmpeg can read ({exc.strerror})") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise NotAVideo(f"not a readable video container: {exc}") from None
        if not container.streams.video:
            container.close()
            raise NotAVideo("the file has no video stream")
        return container

    def _upright(self, frame: av.VideoFrame) -> np.ndarray:
        rgb = frame.to_ndarray(format="rgb24")
        turns = self.info.rotation // 90
        return np.ascontiguousarray(np.rot90(rgb, k=-turns)) if turns else rgb

    def read(self, indices: Sequence[int]) -> np.ndarray:
        wanted_set = set(indices)
        wanted = sorted(wanted_set)
        frames: dict[int, np.ndarray] = {}
        last: np.ndarray | None = None
        with self._open() as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            decoded = container.decode(stream)
            position = 0  # index of the next frame the decoder will produce
            try:
                for target in wanted:
                    if target in frames:
                        continue
                    keyframe = self._keyframe_before(target)
                    if keyframe is not None and keyframe - position >= _SEEK_MIN_SKIP:
                        container.seek(self._order[keyframe], stream=stream, backward=True)  # type: ignore[index]
                        decoded, position = container.decode(stream), keyframe
                    for frame in decoded:
                        index = self._index_of(frame, position)
                        position = index + 1
                        if index in wanted_set:
                            frames[index] = last = self._upright(frame)
                        if index >= target:
                            break
            except av.error.FFmpegError as exc:
                if last is None:
                    raise VideoDecodeError(f"could not decode any frame: {exc}") from None
                # A damaged tail: keep what decoded, later indices reuse the last good frame.
        if last is None:
            raise VideoDecodeError("the video stream decodes to no frames")
        return np.stack([frames.get(i, last) for i in indices])

    def _keyframe_before(self, target: int) -> int | None:
        """Index of the last keyframe at or before frame ``target`` (None when seeking is off)."""
        if self._order is None or not self._keyframes:
            return None
        target_pts = self._order[min(target, len(self._order) - 1)]
        k = bisect.bisect_right(self._keyframes, target_pts) - 1
        return bisect.bisect_left(self._order, self._keyframes[k]) if k >= 0 else None

    def _index_of(self, frame: av.VideoFrame, expected: int) -> int:
        if self._order is None or frame.pts is None:
            return expected
        index = bisect.bisect_left(self._order, frame.pts)
        return index if index < len(self._order) and self._order[index] == frame.pts else expected


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
