"""``dcf data check``: every video of a dataset split decoded and sampled before training, in
parallel, with the files that cannot be used and why."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm import tqdm

from dcf.data.datasets import BROKEN_VIDEO_ERRORS, Broken, VideoList
from dcf.data.spec import InputSpec
from dcf.data.video import open_video
from dcf.data.views import eval_views

CHECK_CLIPS = 3  # clips spread over each video: its start, middle and end are decoded
_CHUNK = 64  # frames per read when every frame is decoded (memory stays bounded on long videos)


def check_video(path: str | Path, spec: InputSpec, *, full: bool = False) -> Broken | None:
    """Why ``path`` cannot be used (``None`` if it can): opened, and the frames of
    :data:`CHECK_CLIPS` evaluation clips sampled and preprocessed by ``spec``, or with ``full``
    every frame decoded (one that does not is an error: a damaged stretch, which training would
    fill with the last good frame)."""
    try:
        video = open_video(path)
        if full:
            for start in range(0, video.info.num_frames, _CHUNK):
                stop = min(start + _CHUNK, video.info.num_frames)
                video.read(range(start, stop), spec.test_short_side, strict=True)
        else:
            eval_views(video, spec, num_clips=CHECK_CLIPS)
    except BROKEN_VIDEO_ERRORS as exc:
        return Broken(str(path), str(exc))
    return None


def check_videos(
    videos: VideoList, spec: InputSpec, *, workers: int = 2, full: bool = False, progress: bool = True
) -> Iterator[Broken]:
    """The broken videos of ``videos``, in record order, checked on ``workers`` threads (the decoder
    releases the GIL)."""
    paths = [path for path, _ in videos.records]
    with ThreadPoolExecutor(workers) as pool:
        results = pool.map(lambda path: check_video(path, spec, full=full), paths)
        for broken in tqdm(results, total=len(paths), desc="check", unit="video", disable=not progress):
            if broken is not None:
                yield broken
