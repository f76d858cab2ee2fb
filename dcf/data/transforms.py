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


def frames_tensor(frames: np.ndarray) -> Tensor:
    """uint8 (T, H, W, 3) -> uint8 (T, 3, H, W), a view in channels-last memory order (no copy)."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)


def crop(video: Tensor, top: int, left: int, size: int) -> Tensor:
    return video[..., top : top + size, left : left + size]


def to_model_input(video: Tensor, spec: InputSpec) -> Tensor:
    """uint8 (T, 3, S, S) -> float (3, T, S, S) on a 0..1 scale, normalised by ``spec``."""
    mean = torch.tensor(spec.mean).view(3, 1, 1, 1)
    std = torch.tensor(spec.std).view(3, 1, 1, 1)
    return (video.transpose(0, 1).float().div_(255) - mean) / std


def train_short_side(spec: InputSpec, rng: random.Random) -> int:
    """The random short side of one training clip (scale augmentation), to decode the frames at."""
    return rng.randint(*spec.train_short_side)


def _check_size(video: Tensor, size: int) -> None:
    if min(video.shape[-2:]) < size:
        raise ValueError(f"frames of {tuple(video.shape[-2:])} pixels are smaller than the {size}-pixel crop")


def train_transform(frames: np.ndarray, spec: InputSpec, rng: random.Random) -> Tensor:
    """Random crop of frames decoded at :func:`train_short_side`: (T, H, W, 3) uint8 -> (3, T, S, S)
    normalised."""
    video = frames_tensor(frames)
    _check_size(video, spec.crop_size)
    h, w = video.shape[-2:]
    top, left = rng.randint(0, h - spec.crop_size), rng.randint(0, w - spec.crop_size)
    return to_model_input(crop(video, top, left, spec.crop_size), spec)


def eval_transform(frames: np.ndarray, spec: InputSpec, num_crops: int = 1) -> Tensor:
    """1 centre crop or 3 crops spread along the long side of frames decoded at ``test_short_side``.

    Returns (num_crops, 3, T, S, S), normalised.
    """
    if num_crops not in (1, 3):
        raise ValueError(f"num_crops must be 1 or 3, got {num_crops}")
    video = frames_tensor(frames)
    _check_size(video, spec.crop_size)
    h, w = video.shape[-2:]
    size = spec.crop_size
    if num_crops == 1:
        positions = [((h - size) // 2, (w - size) // 2)]
    elif w >= h:
        positions = [((h - size) // 2, left) for left in (0, (w - size) // 2, w - size)]
    else:
        positions = [(top, (w - size) // 2) for top in (0, (h - size) // 2, h - size)]
    return torch.stack([to_model_input(crop(video, top, left, size), spec) for top, left in positions])
