"""Preprocessing of sampled frames (paper Sec. 4.1): resize the short side, crop, normalise.

Training: short side random in ``train_short_side``, random crop. Evaluation: short side
``test_short_side``, then the centre crop, or 3 crops along the long side. No flipping: in
Something-Something left and right are different classes.
"""

from __future__ import annotations

import random

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from dcf.data.spec import InputSpec


def to_float_video(frames: np.ndarray) -> Tensor:
    """uint8 (T, H, W, 3) -> float (3, T, H, W) on a 0..1 scale."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).float().div_(255)


def resize_short_side(video: Tensor, size: int) -> Tensor:
    """Bilinear resize of (C, T, H, W) so that min(H, W) == size, keeping the aspect ratio."""
    h, w = video.shape[-2:]
    scale = size / min(h, w)
    new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
    if (new_h, new_w) == (h, w):
        return video
    # (C, T, H, W) -> frames as a batch (T, C, H, W) for 2-D interpolation.
    frames = F.interpolate(
        video.transpose(0, 1), size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=True
    )
    return frames.transpose(0, 1)


def crop(video: Tensor, top: int, left: int, size: int) -> Tensor:
    return video[..., top : top + size, left : left + size]


def normalize(video: Tensor, spec: InputSpec) -> Tensor:
    mean = torch.tensor(spec.mean, dtype=video.dtype).view(3, 1, 1, 1)
    std = torch.tensor(spec.std, dtype=video.dtype).view(3, 1, 1, 1)
    return (video - mean) / std


def train_transform(frames: np.ndarray, spec: InputSpec, rng: random.Random) -> Tensor:
    """Random short-side scale and random crop: (T, H, W, 3) uint8 -> (3, T, S, S) normalised."""
    video = resize_short_side(to_float_video(frames), rng.randint(*spec.train_short_side))
    h, w = video.shape[-2:]
    top, left = rng.randint(0, h - spec.crop_size), rng.randint(0, w - spec.crop_size)
    return normalize(crop(video, top, left, spec.crop_size), spec)


def eval_transform(frames: np.ndarray, spec: InputSpec, num_crops: int = 1) -> Tensor:
    """Short side to ``test_short_side``, then 1 centre crop or 3 crops spread along the long side.

    Returns (num_crops, 3, T, S, S), normalised.
    """
    if num_crops not in (1, 3):
        raise ValueError(f"num_crops must be 1 or 3, got {num_crops}")
    video = resize_short_side(to_float_video(frames), spec.test_short_side)
    h, w = video.shape[-2:]
    size = spec.crop_size
    if num_crops == 1:
        positions = [((h - size) // 2, (w - size) // 2)]
    elif w >= h:
        positions = [((h - size) // 2, left) for left in (0, (w - size) // 2, w - size)]
    else:
        positions = [(top, (w - size) // 2) for top in (0, (h - size) // 2, h - size)]
    return torch.stack([normalize(crop(video, top, left, size), spec) for top, left in positions])
