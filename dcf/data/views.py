"""What the model sees of a video: the one sample-and-preprocess step of training, evaluation,
export checks and inference (decode -> sample -> preprocess, by the model's input spec)."""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from dcf.data.sampling import sample_indices
from dcf.data.spec import InputSpec
from dcf.data.transforms import eval_transform, train_short_side, train_transform
from dcf.data.video import VideoSource


def train_view(video: VideoSource, spec: InputSpec, rng: random.Random) -> Tensor:
    """One training clip: random placement, scale and crop; shape (3, T, S, S)."""
    indices = sample_indices(spec, video.info.num_frames, rng=rng)
    frames = video.read(indices, train_short_side(spec, rng))
    return train_transform(frames, spec, rng)


def eval_indices(
    spec: InputSpec, num_frames: int, num_clips: int = 1, ranges: Sequence[tuple[int, int]] | None = None
) -> list[list[int]]:
    """The frame indices of each evaluation clip of :func:`eval_views` (ranges in turn, clips within)."""
    return [
        [start + i for i in sample_indices(spec, stop - start, clip_index=clip, num_clips=num_clips)]
        for start, stop in ranges or [(0, num_frames)]
        for clip in range(num_clips)
    ]


def eval_views(
    video: VideoSource,
    spec: InputSpec,
    num_clips: int = 1,
    num_crops: int = 1,
    ranges: Sequence[tuple[int, int]] | None = None,
    cancel: threading.Event | None = None,
) -> Tensor:
    """The evaluation views of one video: ``num_clips`` evenly placed clips x ``num_crops`` crops,
    each sampled and preprocessed by ``spec``; shape (num_clips * num_crops, 3, T, S, S).

    With ``ranges`` (frame index ``[start, stop)`` pairs, e.g. the windows of a timeline), the
    clips are placed in each range in turn: (len(ranges) * num_clips * num_crops, 3, T, S, S).
    All frames are read in one pass over the video, decoded straight at ``spec.test_short_side``;
    ``cancel`` stops the decoding (:class:`~dcf.data.video.DecodeCancelled`).
    """
    plan = eval_indices(spec, video.info.num_frames, num_clips, ranges)
    frames = video.read([i for clip in plan for i in clip], spec.test_short_side, cancel)
    t = spec.num_frames
    views = [eval_transform(frames[k * t : (k + 1) * t], spec, num_crops) for k in range(len(plan))]
    return torch.from_numpy(np.concatenate(views))
