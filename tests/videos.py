"""Real encoded test videos, made with PyAV (FFmpeg) in the containers and codecs users upload."""

from __future__ import annotations

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
