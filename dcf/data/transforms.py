"""Preprocessing of sampled frames (paper Sec. 4.1): crop and normalise frames that the decoder has
already brought to their short side (:meth:`dcf.data.video.VideoSource.read`, ``short_side``).

Training: short side random in ``train_short_side`` (:func:`train_short_side`), random crop.
Evaluation: short side ``test_short_side``, then the centre crop, or 3 crops along the long side. No
flipping: in Something-Something left and right are different classes.
"""

from __future__ import annotations

import random

import numpy as np
import torch
from torch import Tensor

from dcf.data.spec import InputSpec


def crop(frames: np.ndarray, top: int, left: int, size: int) -> np.ndarray:
    """A square of uint8 frames (T, H, W, 3), as a view."""
    return frames[:, top : top + size, left : left + size]


def to_model_input(frames: np.ndarray, spec: InputSpec) -> np.ndarray:
    """uint8 (T, S, S, 3) -> float32 (3, T, S, S) on a 0..1 scale, normalised by ``spec``.

    NumPy on the calling thread on purpose: a clip is ~100 k values, too few for a thread pool, and
    decode threads must not compete with the inference thread's OpenMP pool (with PyTorch's intra-op
    threads this step took 40 ms instead of 0.3 ms on a busy 2-core machine).
    """
    mean = np.asarray(spec.mean, np.float32)
    std = np.asarray(spec.std, np.float32)
    normalised = (frames.astype(np.float32) / np.float32(255) - mean) / std  # (T, S, S, 3)
    return np.ascontiguousarray(normalised.transpose(3, 0, 1, 2))


def train_short_side(spec: InputSpec, rng: random.Random) -> int:
    """The random short side of one training clip (scale augmentation), to decode the frames at."""
    return rng.randint(*spec.train_short_side)


def _check_size(frames: np.ndarray, size: int) -> tuple[int, int]:
    h, w = frames.shape[1:3]
    if min(h, w) < size:
        raise ValueError(f"frames of {(h, w)} pixels are smaller than the {size}-pixel crop")
    return h, w


def train_transform(frames: np.ndarray, spec: InputSpec, rng: random.Random) -> Tensor:
    """Random crop of frames decoded at :func:`train_short_side`: (T, H, W, 3) uint8 -> (3, T, S, S)
    normalised."""
    h, w = _check_size(frames, spec.crop_size)
    top, left = rng.randint(0, h - spec.crop_size), rng.randint(0, w - spec.crop_size)
    return torch.from_numpy(to_model_input(crop(frames, top, left, spec.crop_size), spec))


def eval_transform(frames: np.ndarray, spec: InputSpec, num_crops: int = 1) -> np.ndarray:
    """1 centre crop or 3 crops spread along the long side of frames decoded at ``test_short_side``.

    Returns float32 (num_crops, 3, T, S, S), normalised.
    """
    if num_crops not in (1, 3):
        raise ValueError(f"num_crops must be 1 or 3, got {num_crops}")
    h, w = _check_size(frames, spec.crop_size)
    size = spec.crop_size
    if num_crops == 1:
        positions = [((h - size) // 2, (w - size) // 2)]
    elif w >= h:
        positions = [((h - size) // 2, left) for left in (0, (w - size) // 2, w - size)]
    else:
        positions = [(top, (w - size) // 2) for top in (0, (h - size) // 2, h - size)]
    return np.stack([to_model_input(crop(frames, top, left, size), spec) for top, left in positions])
