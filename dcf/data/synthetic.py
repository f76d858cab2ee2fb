"""A synthetic motion dataset in the spirit of Something-Something: the class is the motion.

Each video shows a textured object on a textured background, plus still distractor objects. Colours,
textures, shapes, sizes, positions and speeds are random, so no single frame tells the class; only
how the object moves does. Videos are real (lossless) H.264 MP4 files in the folder-per-class layout
``<out>/<split>/<class>/<class>_<k>.mp4``; their decoded frames are the same for a given seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
from tqdm import tqdm

# (name, trajectory) where a trajectory maps (progress 0..1 per frame, rng) -> per-frame
# (dx, dy, scale, angle) relative to the start, in units of the frame size.
Trajectory = Callable[
    [np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
]


def _linear(vx: float, vy: float, fast: bool = False) -> Trajectory:
    def trajectory(p: np.ndarray, rng: np.random.Generator):
        speed = rng.uniform(0.7, 0.9) if fast else rng.uniform(0.25, 0.4)  # frame widths per video
        zeros = np.zeros_like(p)
        return vx * speed * p, vy * speed * p, np.ones_like(p), zeros

    return trajectory


def _scale(grow: bool) -> Trajectory:
    def trajectory(p: np.ndarray, rng: np.random.Generator):
        factor = rng.uniform(1.8, 2.4)
        scale = factor**p if grow else factor ** (-p)
        zeros = np.zeros_like(p)
        return zeros, zeros, scale, zeros

    return trajectory


def _turn(clockwise: bool) -> Trajectory:
    def trajectory(p: np.ndarray, rng: np.random.Generator):
        total = rng.uniform(0.6, 1.0) * math.pi * (1 if clockwise else -1)  # image y points down
        zeros = np.zeros_like(p)
        return zeros, zeros, np.ones_like(p), total * p

    return trajectory


def _fall(p: np.ndarray, rng: np.random.Generator):
    drop = rng.uniform(0.4, 0.55)
    zeros = np.zeros_like(p)
    return zeros, drop * p**2, np.ones_like(p), zeros


def _bounce(p: np.ndarray, rng: np.random.Generator):
    height = rng.uniform(0.3, 0.45)
    zeros = np.zeros_like(p)
    return zeros, height * (1 - (2 * p - 1) ** 2), np.ones_like(p), zeros  # down, then back up


def _still(p: np.ndarray, rng: np.random.Generator):
    zeros = np.zeros_like(p)
    return zeros, zeros, np.ones_like(p), zeros


CLASSES: list[tuple[str, Trajectory]] = [
    ("moving left", _linear(-1, 0)),
    ("moving right", _linear(1, 0)),
    ("moving up", _linear(0, -1)),
    ("moving down", _linear(0, 1)),
    ("approaching", _scale(grow=True)),
    ("receding", _scale(grow=False)),
    ("turning clockwise", _turn(clockwise=True)),
    ("turning counter-clockwise", _turn(clockwise=False)),
    ("falling", _fall),
    ("bouncing", _bounce),
    ("moving right fast", _linear(1, 0, fast=True)),
    ("not moving", _still),
]
CLASS_NAMES = [name for name, _ in CLASSES]


def _smooth_noise(rng: np.random.Generator, size: int, cell: int) -> np.ndarray:
    """Value noise (size, size, 3): random colours on a grid of ``cell`` pixels, bilinearly blended."""
    grid = rng.random((size // cell + 2, size // cell + 2, 3))
    pos = np.arange(size) / cell
    i, f = pos.astype(int), (pos % 1)[:, None]
    rows = grid[i] * (1 - f[..., None]) + grid[i + 1] * f[..., None]  # (size, G, 3)
    return rows[:, i] * (1 - f.T[..., None]) + rows[:, i + 1] * f.T[..., None]


def _texture(rng: np.random.Generator, size: int, contrast: float = 1.0) -> np.ndarray:
    """A random colourful texture (size, size, 3) float in 0..1: smooth noise plus stripes."""
    noise = _smooth_noise(rng, size, int(rng.integers(4, 12)))
    y, x = np.mgrid[0:size, 0:size] / size
    angle, freq = rng.uniform(0, math.pi), rng.uniform(2, 8)
    stripes = 0.5 + 0.5 * np.sin(2 * math.pi * freq * (x * math.cos(angle) + y * math.sin(angle)))
    base, accent = rng.random(3), rng.random(3)
    texture = 0.5 * noise + 0.5 * (base * stripes[..., None] + accent * (1 - stripes[..., None]))
    mean = texture.mean(axis=(0, 1))
    return np.clip(mean + contrast * (texture - mean), 0, 1)


def _paste(
    frame: np.ndarray, sprite: np.ndarray, disk: bool, cx: float, cy: float, half: float, angle: float
) -> None:
    """Draws ``sprite`` (square texture) centred at (cx, cy), half-size ``half``, rotated."""
    size = frame.shape[0]
    reach = half * 1.5
    y0, y1 = max(0, int(cy - reach)), min(size, int(cy + reach) + 1)
    x0, x1 = max(0, int(cx - reach)), min(size, int(cx + reach) + 1)
    if y0 >= y1 or x0 >= x1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1]
    dx, dy = xx - cx, yy - cy
    cos, sin = math.cos(-angle), math.sin(-angle)
    u, v = (cos * dx - sin * dy) / half, (sin * dx + cos * dy) / half  # -1..1 inside
    inside = (u * u + v * v <= 1) if disk else (np.abs(u) <= 1) & (np.abs(v) <= 1)
    n = sprite.shape[0]
    iu = np.clip(((u + 1) / 2 * (n - 1)).round().astype(int), 0, n - 1)
    iv = np.clip(((v + 1) / 2 * (n - 1)).round().astype(int), 0, n - 1)
    region = frame[y0:y1, x0:x1]
    region[inside] = sprite[iv[inside], iu[inside]]


def render_video(
    label: int, rng: np.random.Generator, *, num_frames: int = 24, size: int = 128
) -> np.ndarray:
    """Frames (T, size, size, 3) uint8 of one video of class ``label``."""
    background = _texture(rng, size, contrast=rng.uniform(0.15, 0.35))  # textured, but calmer than objects
    # Objects stand out from the background by brightness, as things in real videos mostly do:
    # dark objects on a light background or the reverse, the moving one like the distractors.
    tone = 0.1 if background.mean() > 0.5 else 0.9
    distractors = [
        (
            0.5 * _texture(rng, 32) + 0.5 * tone,
            bool(rng.integers(2)),
            rng.uniform(0.1, 0.9, 2) * size,
            rng.uniform(0.06, 0.14) * size,
        )
        for _ in range(rng.integers(0, 3))
    ]
    sprite, disk = 0.5 * _texture(rng, 32) + 0.5 * tone, bool(rng.integers(2))
    half = rng.uniform(0.12, 0.18) * size
    progress = np.linspace(0, 1, num_frames)
    dx, dy, scale, angle = CLASSES[label][1](progress, rng)
    # Start where the whole motion stays (mostly) inside the frame.
    lo_x, hi_x = 0.2 - min(dx.min(), 0), 0.8 - max(dx.max(), 0)
    lo_y, hi_y = 0.2 - min(dy.min(), 0), 0.8 - max(dy.max(), 0)
    sx = rng.uniform(lo_x, max(lo_x, hi_x))
    sy = rng.uniform(lo_y, max(lo_y, hi_y))
    start_angle = rng.uniform(0, 2 * math.pi)
    frames = np.empty((num_frames, size, size, 3), np.uint8)
    for t in range(num_frames):
        frame = background.copy()
        for texture, is_disk, (px, py), d_half in distractors:
            _paste(frame, texture, is_disk, px, py, d_half, 0.0)
        _paste(
            frame,
            sprite,
            disk,
            (sx + dx[t]) * size,
            (sy + dy[t]) * size,
            half * scale[t],
            start_angle + angle[t],
        )
        frames[t] = (frame * 255).round().astype(np.uint8)
    return frames


def write_mp4(path: Path, frames: np.ndarray, fps: int = 12) -> None:
    """Encodes (T, H, W, 3) uint8 as H.264, lossless after the (deterministic) RGB to YUV 4:2:0 step.

    Lossless, because x264's bitstream is not always the same from run to run; the decoded frames
    then are, so the dataset depends on the seed alone.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part.mp4")
    with av.open(str(tmp), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"crf": "0", "preset": "fast"})
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    tmp.replace(path)  # a killed run never leaves a truncated video behind


def generate(
    out: Path,
    *,
    seed: int,
    videos_per_class: int,
    split: str = "train",
    num_frames: int = 24,
    size: int = 128,
    progress: bool = True,
) -> int:
    """Writes ``videos_per_class`` videos of every class under ``out/split``; returns the count."""
    jobs = [(label, k) for label in range(len(CLASSES)) for k in range(videos_per_class)]
    for label, k in tqdm(jobs, desc=f"synth {split}", unit="video", disable=not progress):
        rng = np.random.default_rng([seed, label, k])
        name = CLASS_NAMES[label]
        write_mp4(
            out / split / name / f"{name.replace(' ', '_')}_{k:05d}.mp4",
            render_video(label, rng, num_frames=num_frames, size=size),
        )
    return len(jobs)
