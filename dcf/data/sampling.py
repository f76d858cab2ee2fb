"""Which frames of a video form a clip (paper Sec. 4.1): segment-based and interval-based.

Pure index arithmetic on the decoded frame order, so it behaves the same for constant and variable
frame rate videos. Videos shorter than a clip repeat frames rather than fail.
"""

from __future__ import annotations

import random

from dcf.data.spec import InputSpec


def segment_indices(
    num_video_frames: int,
    num_segments: int,
    *,
    rng: random.Random | None = None,
    position: float = 0.5,
) -> list[int]:
    """TSN sampling: one frame from each of ``num_segments`` equal segments.

    With ``rng`` (training) the frame is random within its segment; without, it sits at
    ``position`` (0..1) of the segment, the middle by default (evaluation).
    """
    _check(num_video_frames)
    length = num_video_frames / num_segments
    indices = []
    for k in range(num_segments):
        offset = rng.random() if rng is not None else position
        indices.append(min(int((k + offset) * length), num_video_frames - 1))
    return indices


def interval_indices(
    num_video_frames: int,
    num_frames: int,
    interval: int,
    *,
    rng: random.Random | None = None,
    clip_index: int = 0,
    num_clips: int = 1,
) -> list[int]:
    """``num_frames`` frames ``interval`` apart.

    With ``rng`` (training) the clip starts at a random frame; otherwise clip ``clip_index`` of
    ``num_clips`` starts are spread evenly over the video (one clip: centred). Frames past the end
    of a short video repeat the last frame.
    """
    _check(num_video_frames)
    span = (num_frames - 1) * interval + 1
    room = max(0, num_video_frames - span)
    if rng is not None:
        start = rng.randint(0, room)
    elif num_clips == 1:
        start = room // 2
    else:
        start = round(room * clip_index / (num_clips - 1))
    return [min(start + k * interval, num_video_frames - 1) for k in range(num_frames)]


def sample_indices(
    spec: InputSpec,
    num_video_frames: int,
    *,
    rng: random.Random | None = None,
    clip_index: int = 0,
    num_clips: int = 1,
) -> list[int]:
    """The frames of one clip as ``spec`` prescribes; ``rng`` for training, else clip ``clip_index``.

    For segment sampling, several evaluation clips shift the sampled point inside each segment.
    """
    if spec.sampling == "interval":
        return interval_indices(
            num_video_frames,
            spec.num_frames,
            spec.interval,
            rng=rng,
            clip_index=clip_index,
            num_clips=num_clips,
        )
    return segment_indices(
        num_video_frames, spec.num_frames, rng=rng, position=(clip_index + 0.5) / num_clips
    )


def _check(num_video_frames: int) -> None:
    if num_video_frames < 1:
        raise ValueError(f"cannot sample a clip from a video with {num_video_frames} frames")
