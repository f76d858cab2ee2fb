"""Real encoded media, made with PyAV (FFmpeg), in the containers and codecs users upload: files on
disk (:func:`write_video`, :func:`write_jpeg`) and uploads, ordinary, odd and hostile, as ``bytes``.

The functions that return ``bytes`` return the complete file content. Muxers that need a seekable real file (MP4 writes its
``moov`` index at the end) write to a temporary path, which is read back and deleted.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

# container suffix -> (codec, pixel format)
CODECS = {
    ".mp4": ("libx264", "yuv420p"),
    ".webm": ("libvpx-vp9", "yuv420p"),
    ".avi": ("mjpeg", "yuvj420p"),
    ".mkv": ("libx264", "yuv420p"),
}


def moving_square(num_frames: int, height: int = 32, width: int = 40, seed: int = 0) -> np.ndarray:
    """(T, H, W, 3) uint8: a bright square stepping right over a noisy background."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 60, (num_frames, height, width, 3), dtype=np.uint8)
    for t in range(num_frames):
        x = (2 * t) % max(1, width - 8)
        frames[t, height // 3 : height // 3 + 8, x : x + 8] = 240
    return frames


def moving_texture(
    num_frames: int, height: int = 64, width: int = 96, step: int = 2, size: int = 24, seed: int = 0
) -> np.ndarray:
    """(T, H, W, 3) uint8: a square of random colours moving right by ``step`` pixels per frame
    over a flat grey background (known motion, and a unique match for each of its pixels)."""
    rng = np.random.default_rng(seed)
    texture = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    frames = np.full((num_frames, height, width, 3), 128, np.uint8)
    top = (height - size) // 2
    for t in range(num_frames):
        left = 4 + step * t
        if left + size > width:
            raise ValueError(f"the square leaves the frame: width {width} < {left + size}")
        frames[t, top : top + size, left : left + size] = texture
    return frames


def write_video(path: Path, frames: np.ndarray, fps: int = 12) -> Path:
    codec, pix_fmt = CODECS[path.suffix]
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        assert isinstance(stream, av.video.stream.VideoStream)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = pix_fmt
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_jpeg(path: Path, frame: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w", format="image2") as container:
        stream = container.add_stream("mjpeg")
        stream.height, stream.width = frame.shape[:2]
        stream.pix_fmt = "yuvj420p"
        for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


# audio container suffix -> (codec, sample format)
AUDIO_CODECS = {
    ".wav": ("pcm_s16le", "s16"),
    ".m4a": ("aac", "fltp"),
    ".mka": ("mp2", "s16"),
    ".mp3": ("libmp3lame", "s16p"),
}


def _via_temp_file(suffix: str, write: Callable[[Path], object]) -> bytes:
    """Call ``write(path)`` on a fresh temporary ``path`` ending in ``suffix``; return its bytes."""
    with tempfile.TemporaryDirectory(prefix="dcf-media-") as tmp:
        path = Path(tmp) / f"media{suffix}"
        write(path)
        return path.read_bytes()


def _encode_mp4(
    path: Path,
    frames: np.ndarray,
    pts: list[int] | None = None,
    time_base: Fraction = Fraction(1, 30),
    rotation: int | None = None,
) -> None:
    """H.264/yuv420p MP4 with explicit frame ``pts`` (in ``time_base`` ticks) and optional display rotation."""
    pts = list(range(len(frames))) if pts is None else pts
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(1) / time_base)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.time_base = time_base
        stream.codec_context.time_base = time_base
        if rotation is not None:
            stream.set_display_rotation(rotation)  # must precede the first encoded frame
        for frame, t in zip(frames, pts, strict=True):
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            video_frame.pts, video_frame.time_base = t, time_base
            container.mux(stream.encode(video_frame))
        container.mux(stream.encode())


def encoded(suffix: str, frames: np.ndarray, fps: int = 12) -> bytes:
    """``frames`` (T, H, W, 3) uint8 encoded at ``fps`` in the container for ``suffix``.

    ``suffix`` is one of :data:`CODECS` (.mp4/.mkv: H.264, .webm: VP9, .avi: MJPEG).
    """
    return _via_temp_file(suffix, lambda path: write_video(path, frames, fps=fps))


def variable_frame_rate_mp4(num_frames: int = 24, height: int = 64, width: int = 80) -> bytes:
    """H.264 MP4 whose frames are irregularly spaced in time (variable frame rate).

    Frame ``pts`` gaps alternate 1 and 3 ticks of 1/30 s (0, 1, 4, 5, 8, ...), i.e. 1/30 s and 1/10 s, an
    average of 15 fps. On decode every frame comes back, and consecutive ``frame.pts`` deltas alternate
    between two values (in the MP4 stream's own time base, 1/15360: 512 and 1536), so they are not constant.
    """
    pts = [2 * i - i % 2 for i in range(num_frames)]  # 0, 1, 4, 5, 8, ...: deltas 1, 3, 1, 3, ...
    frames = moving_square(num_frames, height, width, seed=1)
    return _via_temp_file(".mp4", lambda path: _encode_mp4(path, frames, pts=pts))


def rotated_mp4(
    rotation: int = 90,
    num_frames: int = 12,
    height: int = 48,
    width: int = 80,
    frames: np.ndarray | None = None,
) -> bytes:
    """H.264 MP4 whose video stream carries a display matrix, so players show it rotated.

    Written with PyAV's ``VideoStream.set_display_rotation(rotation)`` (the MP4 ``tkhd`` matrix; ``rotation``
    is counter-clockwise degrees). The coded frames stay ``height`` x ``width``; only the display changes.

    On decode PyAV reports it as ``frame.rotation`` (from the frame's DISPLAYMATRIX side data, which FFmpeg
    copies from the stream onto every decoded frame): the counter-clockwise angle in [-180, 180], equal to
    ``rotation`` normalised into that range (90 -> 90, 180 -> -180, 270 -> -90, -90 -> -90). To show the
    frame upright, rotate the decoded pixels counter-clockwise by ``frame.rotation`` degrees, e.g.
    ``np.rot90(image, k=frame.rotation // 90)``. The MP4 stream metadata has no ``rotate`` tag; beware that
    the legacy ``rotate`` tag of older FFmpeg was clockwise, the opposite sign (not checked here).
    """
    if frames is None:
        frames = moving_square(num_frames, height, width, seed=2)
    return _via_temp_file(".mp4", lambda path: _encode_mp4(path, frames, rotation=rotation))


def audio_only(suffix: str = ".wav", seconds: float = 1.0, sample_rate: int = 16000) -> bytes:
    """A file with one audio stream (a 440 Hz mono tone) and no video stream.

    ``suffix``: .wav (PCM s16le), .m4a (AAC), .mka (MP2 in Matroska) or .mp3 (LAME).
    """
    codec, sample_format = AUDIO_CODECS[suffix]
    samples_per_frame = 1024
    total = int(seconds * sample_rate)
    t = np.arange(total) / sample_rate
    tone = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16)

    def write(path: Path) -> None:
        with av.open(str(path), mode="w") as container:
            stream = container.add_stream(codec, rate=sample_rate, layout="mono")
            assert isinstance(stream, av.audio.stream.AudioStream)
            stream.format = sample_format
            for start in range(0, total, samples_per_frame):
                chunk = tone[None, start : start + samples_per_frame]
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="s16", layout="mono")
                frame.sample_rate, frame.pts = sample_rate, start
                frame.time_base = Fraction(1, sample_rate)
                container.mux(stream.encode(frame))
            container.mux(stream.encode())

    return _via_temp_file(suffix, write)


def huge_resolution_y4m(width: int = 60000, height: int = 40000) -> bytes:
    """A tiny YUV4MPEG2 (.y4m) file whose header declares a ``width`` x ``height`` picture.

    The body is one ``FRAME`` line and 64 bytes, nowhere near the ``width * height * 1.5`` a frame needs.
    What PyAV 18.1 (FFmpeg 8.1) does with it depends on FFmpeg's ``av_image_check_size`` limit,
    ``(width + 128) * (height + 128) < INT_MAX / 8`` (about 268 M pixels; 16000 x 16000 passes, 16384 x
    16384 fails):

    * Over the limit (the default 60000 x 40000): ``av.open(io.BytesIO(data))`` itself raises
      ``av.error.OSError`` (an ``av.FFmpegError`` and a builtin ``OSError``, errno 16 EBUSY; FFmpeg logs
      "Picture size 60000x40000 is invalid"). Nothing is allocated.
    * Under it (e.g. 16000 x 16000, or 60000 x 2000): ``av.open`` succeeds and
      ``streams.video[0].codec_context.width/height`` report the declared size (format yuv420p) without
      allocating a picture; decoding raises nothing and yields 0 frames (the one packet is incomplete).

    Either way a server can reject it from the header alone.
    """
    header = f"YUV4MPEG2 W{width} H{height} F25:1 Ip A1:1 C420jpeg\n".encode("ascii")
    return header + b"FRAME\n" + bytes(range(64))


def truncated(data: bytes, keep: float = 0.5) -> bytes:
    """The first ``keep`` fraction of ``data`` (a file cut off mid-upload)."""
    return data[: int(len(data) * keep)]


def single_frame_mp4(height: int = 64, width: int = 80) -> bytes:
    """H.264 MP4 with exactly one frame."""
    return encoded(".mp4", moving_square(1, height, width, seed=3))


def portrait_mp4(num_frames: int = 16, height: int = 160, width: int = 96) -> bytes:
    """H.264 MP4 taller than wide (coded portrait, no rotation metadata)."""
    return encoded(".mp4", moving_square(num_frames, height, width, seed=4))


def long_mp4(seconds: int = 120, fps: int = 10, height: int = 48, width: int = 64) -> bytes:
    """H.264 MP4 lasting ``seconds`` at ``fps`` (small frames so it encodes in a few seconds)."""
    return encoded(".mp4", moving_square(seconds * fps, height, width, seed=5), fps=fps)


def nested_references(url: str, local: Path) -> dict[str, bytes]:
    """Playlists, manifests and list files whose entries point at ``url`` (an HTTP address) or at the
    local video file ``local``, keyed by a file name with the suffix FFmpeg recognises them by.

    A reader that follows any entry opens a URL or a file on the server's disk.
    """
    hls = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:10\n#EXT-X-MEDIA-SEQUENCE:0\n"
    dash = (
        '<?xml version="1.0"?>\n<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" '
        'mediaPresentationDuration="PT2S" minBufferTime="PT1S" profiles="urn:mpeg:dash:profile:isoff-on-demand:2011">'
        f'<BaseURL>{url}/</BaseURL><Period><AdaptationSet mimeType="video/mp4">'
        '<Representation id="0" bandwidth="1000" codecs="avc1.42c01e" width="64" height="48">'
        "<BaseURL>video.mp4</BaseURL></Representation></AdaptationSet></Period></MPD>\n"
    )
    return {
        "hls-http.m3u8": f"{hls}#EXTINF:10.0,\n{url}/segment0.ts\n#EXT-X-ENDLIST\n".encode(),
        "hls-file.m3u8": f"{hls}#EXTINF:10.0,\nfile://{local}\n#EXT-X-ENDLIST\n".encode(),
        "dash.mpd": dash.encode(),
        "list-http.ffconcat": f"ffconcat version 1.0\nfile '{url}/a.mp4'\n".encode(),
        "list-file.ffconcat": f"ffconcat version 1.0\nfile '{local}'\n".encode(),
    }


def panning_mp4(
    width: int,
    height: int,
    frames: int,
    *,
    fps: int = 10,
    block: int = 16,
    seed: int = 11,
    x264: dict[str, str] | None = None,
) -> bytes:
    """An H.264 MP4 of a random texture of ``block``-pixel squares panning right by half a block
    per frame: real motion and detail for the encoder, ``x264`` its options (preset, GOP ...)."""
    rng = np.random.default_rng(seed)
    tile = rng.integers(0, 256, (height // block + 1, width // block + frames + 1, 3), dtype=np.uint8)
    scene = np.repeat(np.repeat(tile, block, axis=0), block, axis=1)
    step = block // 2

    def write(path: Path) -> None:
        with av.open(str(path), mode="w") as container:
            stream = container.add_stream("libx264", rate=fps, options=x264 or {})
            assert isinstance(stream, av.video.stream.VideoStream)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            for t in range(frames):
                frame = av.VideoFrame.from_ndarray(
                    scene[:height, step * t : step * t + width], format="rgb24"
                )
                container.mux(stream.encode(frame))
            container.mux(stream.encode())

    return _via_temp_file(".mp4", write)


def high_resolution_mp4(width: int = 4096, height: int = 2304, frames: int = 60, fps: int = 10) -> bytes:
    """A phone-like high-resolution H.264 MP4 (one keyframe): small on the wire, ``width * height * 3``
    bytes per frame once decoded to RGB."""
    return panning_mp4(width, height, frames, fps=fps, x264={"preset": "ultrafast", "g": "1000"})


def write_collection(folder: Path, count: int, kind: str = "synthetic", seed: int = 0) -> list[Path]:
    """``count`` encoded videos under ``folder`` (half in a subfolder), for bulk predictions.

    ``synthetic``: 24-frame 96x96 MP4s of the demo's synthetic classes (a known answer each);
    ``h264``: ordinary 3 s, 25 fps, 640x360 H.264 MP4s of a texture moving over a grainy background.
    """
    from dcf.data.synthetic import CLASS_NAMES, render_video

    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        path = folder / ("more" if i % 2 else "") / f"{kind}_{i:04d}.mp4"
        if kind == "synthetic":
            frames = render_video(i % len(CLASS_NAMES), rng, num_frames=24, size=96)
            write_video(path, frames, fps=12)
        elif kind == "h264":
            frames = moving_texture(75, 360, 640, step=4, size=96, seed=int(rng.integers(1 << 31)))
            grain = rng.integers(0, 48, (1, 360, 640, 1), dtype=np.uint8)  # a textured, still background
            write_video(path, frames // 2 + grain, fps=25)
        else:
            raise ValueError(f"kind must be synthetic or h264, got {kind!r}")
        paths.append(path)
    return paths


def write_broken_split(root: Path) -> None:
    """A folder-per-class split of two good videos (``a/good.mp4``, ``b/good.mp4``) and the broken
    files real downloads leave: ``a/empty.mp4`` (no bytes), ``b/cut.mp4`` (an MP4 cut short, its
    index lost) and ``b/text.mp4`` (an HTML error page saved as a video)."""
    write_video(root / "a" / "good.mp4", moving_square(12, 40, 56))
    write_video(root / "b" / "good.mp4", moving_square(12, 40, 56, seed=1))
    (root / "a" / "empty.mp4").write_bytes(b"")
    (root / "b" / "cut.mp4").write_bytes(truncated(encoded(".mp4", moving_square(24, 40, 56)), keep=0.3))
    (root / "b" / "text.mp4").write_text("<html>404 Not Found</html>")


def damaged_avi(num_frames: int = 48, damaged_from: int = 30, height: int = 64, width: int = 80) -> bytes:
    """An MJPEG AVI whose frames from ``damaged_from`` on are zeroed (the AVI chunk headers kept): it
    opens and its index lists every frame, but FFmpeg's decoder fails on the first zeroed one."""
    data = bytearray(encoded(".avi", moving_square(num_frames, height, width)))
    starts = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xD8]  # JPEG SOI
    for start, end in zip(starts[damaged_from:], [*starts[damaged_from + 1 :], len(data)], strict=True):
        data[start : end - 16] = bytes(end - 16 - start)  # 16 bytes: the next chunk's header and padding
    return bytes(data)
