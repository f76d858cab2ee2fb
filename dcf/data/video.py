"""Reading frames: encoded videos through PyAV, and folders of JPEG frames (Something-Something V1).

Both give a :class:`VideoSource`: its frame count, then the RGB frames at chosen indices, brought to
the model's working size as each frame is decoded. Containers are always closed; every failure to
read is a :class:`VideoDecodeError`.

What one video may cost is bounded before and while it is decoded: the header's resolution and the
demuxed frame count and duration against :class:`VideoLimits`; the frames that must be decoded for
the wanted ones (a :class:`DecodePlan`, from the keyframe index) against a pixel budget; and a
``cancel`` event checked between packets and frames. Files are opened with an allow-list of
container formats and no way to open anything else: a playlist, manifest or list file inside an
upload never makes FFmpeg open a file or a URL.
"""

from __future__ import annotations

import bisect
import contextlib
import io
import os
import stat
import threading
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import av
import numpy as np
from av.video.reformatter import VideoReformatter

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

# FFmpeg demuxers accepted for videos: what cameras, phones, editors, browsers and screen recorders
# write (MP4/MOV/3GP, Matroska/WebM, AVI, MPEG-TS, MPEG-PS, FLV, ASF/WMV, Ogg, GIF) and raw Y4M.
# Demuxers that read other files or URLs (hls, dash, concat, image2 patterns, ...) are not on it.
VIDEO_FORMATS = ("mov", "matroska", "avi", "mpegts", "mpeg", "flv", "asf", "ogg", "gif", "yuv4mpegpipe")
# What a folder of videos holds: the names of files in those containers (dataset folders, ``dcf predict DIR``).
VIDEO_SUFFIXES = (
    ".mp4",
    ".m4v",
    ".mov",
    ".3gp",
    ".webm",
    ".mkv",
    ".avi",
    ".mpg",
    ".mpeg",
    ".flv",
    ".wmv",
    ".ogv",
    ".y4m",
)
IMAGE_FORMATS = ("jpeg_pipe", "png_pipe")  # one image per file (frame folders)

# Nearest swscale filter to the antialiased bilinear resize: a triangle widened by the scale factor.
_INTERPOLATION = "BILINEAR"


class VideoDecodeError(ValueError):
    """The input is not a video that can be decoded (or has no usable frames)."""


class NotAVideo(VideoDecodeError):
    """The input is no accepted media container, or one without a video stream."""


class EmptyFile(NotAVideo):
    """The input has no bytes at all."""


class UnreadableFile(NotAVideo):
    """The file could not be opened or read (missing, a folder, no permission)."""


class VideoLimitError(ValueError):
    """The video is valid but larger than a :class:`VideoLimits` allows."""


class DecodeCancelled(Exception):
    """Decoding stopped because its ``cancel`` event was set (deadline passed, client gone)."""


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


@dataclass(frozen=True)
class VideoLimits:
    """Bounds checked before decoding: resolution (from the header), frames and duration (from
    demuxing), and the decode work of a read (frames that must be decoded x coded pixels)."""

    max_width: int = 8192
    max_height: int = 8192
    max_pixels: int = 8192 * 4320
    max_aspect_ratio: float = 16.0  # long side / short side (frames at the working size scale with it)
    max_frames: int = 1_000_000
    max_duration: float = 24 * 3600.0
    max_decode_pixels: int | None = None  # frames to decode x width x height per read; None: no limit


class DecodeWorkError(VideoLimitError):
    """Reading the wanted frames would decode more pixels than ``VideoLimits.max_decode_pixels``."""


def output_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """(height, width) with ``min(height, width) == short_side``, the aspect ratio kept (rounded)."""
    scale = short_side / min(height, width)
    return max(short_side, round(height * scale)), max(short_side, round(width * scale))


class VideoSource(Protocol):
    info: VideoInfo

    def read(
        self,
        indices: Sequence[int],
        short_side: int | None = None,
        cancel: threading.Event | None = None,
        *,
        strict: bool = False,
    ) -> np.ndarray:
        """Frames at ``indices`` (any order, repeats allowed) as uint8 (len(indices), H, W, 3),
        resized so that min(H, W) == ``short_side`` (None: as stored). A wanted frame that does not
        decode (a damaged stretch) repeats the last good one, unless ``strict``.

        Raises:
            DecodeCancelled: ``cancel`` was set before the frames were read.
            VideoDecodeError: ``strict``, and a wanted frame did not decode.
        """
        ...


def _clockwise(frame: av.VideoFrame) -> int:
    """The frame's display rotation, clockwise, in quarter turns of degrees (PyAV reports the display
    matrix's counter-clockwise angle)."""
    return (-round(frame.rotation / 90) * 90) % 360


def _to_rgb(
    frame: av.VideoFrame, short_side: int | None, rotation: int = 0, resize: VideoReformatter | None = None
) -> np.ndarray:
    """The frame as upright RGB, converted and resized by swscale in one step: a source-resolution
    RGB copy never exists. ``resize`` keeps swscale's context from one frame to the next."""
    height, width = frame.height, frame.width
    if short_side is not None:
        height, width = output_size(height, width, short_side)
    resize = resize or VideoReformatter()
    rgb = resize.reformat(
        frame, width=width, height=height, format="rgb24", interpolation=_INTERPOLATION
    ).to_ndarray()
    turns = rotation // 90
    return np.ascontiguousarray(np.rot90(rgb, k=-turns)) if turns else rgb


class _MemoryFile(io.RawIOBase):
    """Seekable reads over a buffer without copying it (``io.BytesIO`` copies a ``bytearray``).
    Nameless on purpose: FFmpeg probes by file name extension too (``x.m3u8`` picks HLS)."""

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self._view = memoryview(data).cast("B")
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = max(0, min(len(buffer), len(self._view) - self._position))
        buffer[:n] = self._view[self._position : self._position + n]
        self._position += n
        return n

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: len(self._view)}[whence]
        self._position = max(0, base + offset)
        return self._position

    def tell(self) -> int:
        return self._position


class _NamelessFile:
    """A file on disk, handed to FFmpeg without its name (see :class:`_MemoryFile`)."""

    def __init__(self, file: io.BufferedReader) -> None:
        self.read, self.seek, self.tell = file.read, file.seek, file.tell


def _refuse_nested_open(url: str, flags: int, options: dict[str, str]) -> None:
    raise PermissionError(f"the file refers to another file or URL ({url[:200]})")


@contextlib.contextmanager
def open_container(
    source: str | Path | bytes | bytearray | memoryview, formats: Sequence[str] = VIDEO_FORMATS
) -> Iterator[av.container.InputContainer]:
    """``source`` (a path or bytes) opened with FFmpeg, as one of the demuxers ``formats``, with no
    protocol at all: FFmpeg reads only what Python hands it, and every nested open is refused.

    Raises:
        EmptyFile: ``source`` has no bytes.
        UnreadableFile: ``source`` is a path that cannot be opened.
        NotAVideo: Not one of ``formats``, a list of other files, or no video stream.
    """
    with contextlib.ExitStack() as stack:
        if isinstance(source, bytes | bytearray | memoryview):
            file: Any = _MemoryFile(source)
            size: int | None = len(source)
        else:
            try:
                opened = stack.enter_context(open(source, "rb"))
                status = os.fstat(opened.fileno())
                size = status.st_size if stat.S_ISREG(status.st_mode) else None  # a pipe tells no size
            except OSError as exc:
                raise UnreadableFile(f"cannot read {source}: {exc.strerror}") from None
            file = _NamelessFile(opened)
        if size == 0:
            raise EmptyFile("the file is empty")
        try:
            container = av.open(
                file,
                mode="r",
                container_options={"format_whitelist": ",".join(formats)},
                io_open=_refuse_nested_open,
            )
        except av.error.ArgumentError:  # probing found a demuxer that is not on the list
            raise NotAVideo(
                "not a video container this reader accepts (MP4/MOV, Matroska/WebM, AVI, MPEG-TS/PS, FLV, "
                "ASF/WMV, Ogg, GIF, Y4M)"
                if formats is VIDEO_FORMATS
                else f"not one of the accepted formats ({', '.join(formats)})"
            ) from None
        except av.error.FFmpegError as exc:
            raise NotAVideo(f"not a media container FFmpeg can read ({exc.strerror})") from None
        except PermissionError as exc:
            raise NotAVideo(f"{exc}: only self-contained video files are read") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise NotAVideo(f"not a readable video container: {exc}") from None
        stack.enter_context(container)
        if not container.streams.video:
            raise NotAVideo("the file has no video stream")
        yield container


def _check_cancel(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise DecodeCancelled("decoding was cancelled")


# Seek only when it skips at least this many frames: a seek restarts decoding at a keyframe.
_SEEK_MIN_SKIP = 24


@dataclass(frozen=True)
class DecodePlan:
    """How :meth:`EncodedVideo.read` reaches the wanted frames: runs of decoding, each from
    ``seek_to`` (a keyframe index; None: go on from where the decoder is) up to ``last``."""

    runs: tuple[tuple[int | None, int], ...]
    frames: int  # frames the decoder produces in all
    pixels: int  # frames x coded width x coded height


class EncodedVideo:
    """A video file or in-memory bytes, decoded with PyAV (FFmpeg).

    Opening reads the container's packets (no decoding beyond the first frame) to count frames and
    find keyframes. :meth:`read` decodes only up to the last wanted frame, seeking to a keyframe
    when that skips a long stretch (sparse clips of a long video), and converts only the wanted
    frames, straight to the requested size. Frames are turned upright by the stream's display
    rotation.

    Args:
        source: A path, or the file's bytes (kept, not copied).
        limits: Bounds checked while opening and before each read.
        threads: FFmpeg decoding threads per read (0: FFmpeg's choice, one per core).
        cancel: Checked between packets while opening (see :meth:`read` for reads).
    """

    def __init__(
        self,
        source: str | Path | bytes | bytearray | memoryview,
        limits: VideoLimits | None = None,
        *,
        threads: int = 0,
        cancel: threading.Event | None = None,
    ) -> None:
        self._source, self._threads = source, threads
        self.limits = limits = limits or VideoLimits()
        # The probe's container is kept for the first read (opening costs as much as decoding a
        # few frames); whatever happens to this object, it is closed.
        self._opened: contextlib.ExitStack | None = contextlib.ExitStack()
        weakref.finalize(self, self._opened.close)
        with contextlib.ExitStack() as on_error:
            on_error.callback(self._opened.close)
            self._container = container = self._opened.enter_context(open_container(source))
            stream = container.streams.video[0]
            self._set_threads(stream)
            width, height = stream.codec_context.width, stream.codec_context.height
            if width > limits.max_width or height > limits.max_height or width * height > limits.max_pixels:
                raise VideoLimitError(
                    f"the video is {width}x{height}; at most {limits.max_width}x{limits.max_height} and "
                    f"{limits.max_pixels} pixels are accepted"
                )
            if max(width, height) > limits.max_aspect_ratio * max(1, min(width, height)):
                raise VideoLimitError(
                    f"the video is {width}x{height}; its long side may be at most {limits.max_aspect_ratio:g} "
                    "times its short side"
                )
            self._coded_pixels = width * height
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
                    if len(pts) % 64 == 0:
                        _check_cancel(cancel)
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
            on_error.pop_all()
        # Frame i (presentation order) has the i-th smallest pts; seeking needs them all.
        self._order: list[int] | None = None if None in pts else sorted(p for p in pts if p is not None)
        self._keyframes = sorted(keyframe_pts)
        rotation = rotation or 0
        if rotation in (90, 270):
            width, height = height, width
        self.info = VideoInfo(len(pts), width, height, fps, duration, rotation)

    def _set_threads(self, stream: av.video.stream.VideoStream) -> None:
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = self._threads

    @contextlib.contextmanager
    def _rewound(self) -> Iterator[av.container.InputContainer]:
        """The probe's container back at the first frame (once), else a freshly opened one."""
        opened, self._opened = self._opened, None
        if opened is not None:
            with opened:
                try:
                    self._container.seek(
                        self._order[0] if self._order else 0,
                        stream=self._container.streams.video[0],
                        backward=True,
                    )
                except av.error.FFmpegError:
                    pass  # not seekable: open it again
                else:
                    yield self._container
                    return
        with open_container(self._source) as container:
            self._set_threads(container.streams.video[0])
            yield container

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

    def plan(self, indices: Sequence[int]) -> DecodePlan:
        """The decoding :meth:`read` does for ``indices``, known from the keyframe index alone."""
        runs: list[tuple[int | None, int]] = []
        position = frames = 0  # position: index of the next frame the decoder will produce
        for target in sorted(set(indices)):
            if target < position:
                continue
            keyframe = self._keyframe_before(target)
            seek = keyframe is not None and keyframe - position >= _SEEK_MIN_SKIP
            start = keyframe if seek and keyframe is not None else position
            runs.append((start if seek else None, target))
            frames += target - start + 1
            position = target + 1
        return DecodePlan(tuple(runs), frames, frames * self._coded_pixels)

    def read(
        self,
        indices: Sequence[int],
        short_side: int | None = None,
        cancel: threading.Event | None = None,
        *,
        strict: bool = False,
    ) -> np.ndarray:
        """See :meth:`VideoSource.read`.

        Raises:
            DecodeWorkError: The frames to decode exceed ``limits.max_decode_pixels``.
            DecodeCancelled: ``cancel`` was set (checked between frames).
            VideoDecodeError: No wanted frame could be decoded.
        """
        plan = self.plan(indices)
        budget = self.limits.max_decode_pixels
        if budget is not None and plan.pixels > budget:
            raise DecodeWorkError(
                f"reading these frames means decoding {plan.frames} frames of {self._coded_pixels} pixels "
                f"({plan.pixels / 1e6:.0f} Mpixels); at most {budget / 1e6:.0f} Mpixels are decoded per "
                "request (ask for fewer clips or timeline windows, or upload a lower resolution)"
            )
        wanted = set(indices)
        frames: dict[int, np.ndarray] = {}
        last: np.ndarray | None = None
        rotation, resize = self.info.rotation, VideoReformatter()
        with self._rewound() as container:
            stream = container.streams.video[0]
            decoded = container.decode(stream)
            position = 0
            try:
                for seek_to, target in plan.runs:
                    if seek_to is not None:
                        container.seek(self._order[seek_to], stream=stream, backward=True)  # type: ignore[index]
                        decoded, position = container.decode(stream), seek_to
                    for frame in decoded:
                        _check_cancel(cancel)
                        index = self._index_of(frame, position)
                        position = index + 1
                        if index in wanted:
                            frames[index] = last = _to_rgb(frame, short_side, rotation, resize)
                        if index >= target:
                            break
            except av.error.FFmpegError as exc:
                if last is None:
                    raise VideoDecodeError(f"could not decode any frame: {exc}") from None
                damage = f": {exc}"  # a damaged tail: what decoded is kept
            else:
                damage = ""
        if last is None:
            raise VideoDecodeError("the video stream decodes to no frames")
        missing = sorted(wanted - frames.keys())
        if strict and missing:
            raise VideoDecodeError(
                f"{len(missing)} of the {self.info.num_frames} frames do not decode (the first: "
                f"frame {missing[0]}){damage}"
            )
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
        first = self._decode(0, None)
        self.info = VideoInfo(len(self._files), first.shape[1], first.shape[0], 0.0)

    def _decode(self, index: int, short_side: int | None) -> np.ndarray:
        try:  # FFmpeg's image decoders, so one library decodes everything
            with open_container(self._files[index], IMAGE_FORMATS) as container:
                return _to_rgb(next(container.decode(video=0)), short_side)
        except (av.error.FFmpegError, StopIteration, NotAVideo) as exc:
            raise VideoDecodeError(f"could not read frame {self._files[index]}: {exc}") from None

    def read(
        self,
        indices: Sequence[int],
        short_side: int | None = None,
        cancel: threading.Event | None = None,
        *,
        strict: bool = False,
    ) -> np.ndarray:
        frames = []  # strict or not: a frame that does not decode is an error
        for i in indices:
            _check_cancel(cancel)
            frames.append(self._decode(i, short_side))
        return np.stack(frames)


def open_video(source: str | Path | bytes, limits: VideoLimits | None = None) -> VideoSource:
    """A folder of frames or an encoded video (path or bytes)."""
    if not isinstance(source, bytes) and Path(source).is_dir():
        return FrameFolder(source)
    return EncodedVideo(source, limits)
