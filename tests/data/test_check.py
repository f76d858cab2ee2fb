"""The dataset check on real files: good ones pass, broken ones are named with the reason."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from dcf.data import check
from dcf.data.check import check_video, check_videos
from dcf.data.datasets import read_dataset
from dcf.data.spec import InputSpec
from dcf.data.video import VideoSource, open_video
from dcf.testing.media import damaged_avi, moving_square, write_broken_split, write_video

SPEC = InputSpec.for_crop(4, 32)


def test_every_broken_video_is_found_in_order(tmp_path: Path) -> None:
    write_broken_split(tmp_path)
    videos = read_dataset(tmp_path, "folder", "train")
    for workers in (1, 3):
        found = list(check_videos(videos, SPEC, workers=workers, progress=False))
        assert [Path(b.path).name for b in found] == ["empty.mp4", "cut.mp4", "text.mp4"]
    assert check_video(tmp_path / "a" / "empty.mp4", SPEC) == (
        str(tmp_path / "a" / "empty.mp4"),
        "the file is empty",
    )


def test_full_decodes_every_frame_in_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_video(tmp_path / "long.mp4", moving_square(150, 40, 56))  # more than two chunks of 64
    reads: list[list[int]] = []

    def recording(source: Path) -> VideoSource:
        video = open_video(source)
        real = video.read

        def read(indices: Sequence[int], *args: object, **options: bool) -> np.ndarray:
            reads.append(list(indices))
            return real(indices, *args, **options)  # type: ignore[arg-type]

        video.read = read  # type: ignore[method-assign]
        return video

    monkeypatch.setattr(check, "open_video", recording)
    assert check_video(path, SPEC) is None
    assert len({i for r in reads for i in r}) == 3 * SPEC.num_frames  # 3 clips' frames only
    reads.clear()
    assert check_video(path, SPEC, full=True) is None
    assert [i for r in reads for i in r] == list(range(150)) and max(map(len, reads)) == 64
    assert check_video(tmp_path / "missing.mp4", SPEC, full=True) is not None


def test_full_finds_a_damaged_stretch_that_sampling_fills(tmp_path: Path) -> None:
    path = tmp_path / "damaged.avi"
    path.write_bytes(damaged_avi(num_frames=48, damaged_from=30))
    assert check_video(path, SPEC) is None  # the sampled frames fall back on the last good one
    broken = check_video(path, SPEC, full=True)
    assert broken is not None and "18 of the 48 frames do not decode (the first: frame 30)" in broken.reason
