"""Readers on tiny fixtures in each exact on-disk format, and the clip dataset on top of them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dcf.data.datasets import MAX_DRAWS, ClipDataset, collate, read_dataset
from dcf.data.spec import InputSpec
from dcf.data.synthetic import CLASS_NAMES, generate
from dcf.data.video import open_video
from dcf.testing.media import moving_square, write_broken_split, write_jpeg, write_video


def test_something_v1(tmp_path: Path) -> None:
    (tmp_path / "something-something-v1-labels.csv").write_text("Pushing something\nPulling something\n")
    (tmp_path / "something-something-v1-train.csv").write_text(
        "101;Pulling something\n102;Pushing something\n"
    )
    for video_id in ("101", "102"):
        for i, frame in enumerate(moving_square(3)):
            write_jpeg(tmp_path / "20bn-something-something-v1" / video_id / f"{i + 1:05d}.jpg", frame)
    videos = read_dataset(tmp_path, "ssv1", "train")
    assert videos.classes == ["Pushing something", "Pulling something"]
    assert [(p.name, label) for p, label in videos.records] == [("101", 1), ("102", 0)]


def test_something_v2(tmp_path: Path) -> None:
    labels = {"Moving something up": "1", "Dropping something": "0"}
    (tmp_path / "something-something-v2-labels.json").write_text(json.dumps(labels))
    entries = [
        {
            "id": "7",
            "label": "moving a pen up",
            "template": "Moving [something] up",
            "placeholders": ["a pen"],
        },
        {"id": "9", "label": "dropping a cup", "template": "Dropping [something]", "placeholders": ["a cup"]},
    ]
    (tmp_path / "something-something-v2-validation.json").write_text(json.dumps(entries))
    for entry in entries:
        write_video(tmp_path / "20bn-something-something-v2" / f"{entry['id']}.webm", moving_square(4))
    videos = read_dataset(tmp_path, "ssv2", "validation")
    assert videos.classes == ["Dropping something", "Moving something up"]
    assert [(p.name, label) for p, label in videos.records] == [("7.webm", 1), ("9.webm", 0)]


def test_kinetics(tmp_path: Path) -> None:
    rows = [
        "label,youtube_id,time_start,time_end,split",
        "abseiling,abc,5,15,train",
        "zumba,xyz,0,10,train",
        "zumba,gone,3,13,train",
    ]
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    write_video(tmp_path / "train" / "abseiling" / "abc_000005_000015.mp4", moving_square(4))
    write_video(tmp_path / "train" / "zumba" / "xyz_000000_000010.mp4", moving_square(4))
    videos = read_dataset(tmp_path, "kinetics", "train")
    assert videos.classes == ["abseiling", "zumba"]
    assert [(p.name, label) for p, label in videos.records] == [
        ("abc_000005_000015.mp4", 0),
        ("xyz_000000_000010.mp4", 1),
    ]


def test_folder_per_class(tmp_path: Path) -> None:
    write_video(tmp_path / "val" / "b" / "1.avi", moving_square(4))
    write_video(tmp_path / "val" / "a" / "2.mkv", moving_square(4))
    (tmp_path / "val" / "a" / "notes.txt").write_text("not a video")
    videos = read_dataset(tmp_path, "folder", "val")
    assert videos.classes == ["a", "b"]
    assert [(p.name, label) for p, label in videos.records] == [("2.mkv", 0), ("1.avi", 1)]


def test_missing_dataset_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="SSV2 label map not found"):
        read_dataset(tmp_path, "ssv2", "train")
    with pytest.raises(ValueError, match="unknown dataset format 'hmdb'"):
        read_dataset(tmp_path, "hmdb", "train")  # type: ignore[arg-type]


def test_clip_dataset_train_and_eval_views(tmp_path: Path) -> None:
    write_video(tmp_path / "train" / "x" / "1.mp4", moving_square(12, 40, 56))
    write_video(tmp_path / "train" / "y" / "1.mp4", moving_square(2, 40, 56))  # shorter than the clip
    videos = read_dataset(tmp_path, "folder", "train")
    spec = InputSpec.for_crop(4, 32)
    clip, label, broken, failed = ClipDataset(videos, spec, train=True)[1]
    assert clip.shape == (3, 4, 32, 32) and label == 1 and broken == () and not failed
    views = ClipDataset(videos, spec, train=False, num_clips=2, num_crops=3)[0].clips
    assert views.shape == (6, 3, 4, 32, 32)
    again = ClipDataset(videos, spec, train=True)
    torch.testing.assert_close(again[0][0], ClipDataset(videos, spec, train=True)[0][0])  # reproducible


def test_broken_training_videos_are_replaced_and_named(tmp_path: Path) -> None:
    write_broken_split(tmp_path)
    videos = read_dataset(tmp_path, "folder", "train")
    names = [p.name for p, _ in videos.records]
    dataset = ClipDataset(videos, InputSpec.for_crop(4, 32), train=True, seed=3)
    good = {i: dataset[i] for i, name in enumerate(names) if name == "good.mp4"}
    assert all(sample.broken == () for sample in good.values())
    for i, name in enumerate(names):
        if name == "good.mp4":
            continue
        sample = dataset[i]
        assert sample.clips.shape == (3, 4, 32, 32) and not sample.failed  # a full clip of another video
        assert sample.broken[0].path == str(videos.records[i][0])  # the broken one, named
        assert all(Path(b.path).name != "good.mp4" for b in sample.broken)
        assert sample.broken[0].reason  # why, in words
        again = dataset[i]  # the same replacement on every call
        torch.testing.assert_close(again.clips, sample.clips)
        assert again.label == sample.label
    batch = collate([dataset[i] for i in range(len(dataset))])
    assert batch.clips.shape == (5, 3, 4, 32, 32) and len(batch.broken) >= 3 and not batch.failed.any()
    assert {Path(b.path).name for b in batch.broken} == {"empty.mp4", "cut.mp4", "text.mp4"}


def test_a_split_of_broken_videos_gives_a_failed_sample(tmp_path: Path) -> None:
    write_broken_split(tmp_path)
    for good in tmp_path.glob("*/good.mp4"):
        good.unlink()
    dataset = ClipDataset(read_dataset(tmp_path, "folder", "train"), InputSpec.for_crop(4, 32), train=True)
    sample = dataset[0]  # the training loop stops on it (tests/cli/test_train.py)
    assert sample.failed and len(sample.broken) == MAX_DRAWS and not sample.clips.any()


def test_broken_evaluation_videos_are_failures_not_scores(tmp_path: Path) -> None:
    write_broken_split(tmp_path)
    videos = read_dataset(tmp_path, "folder", "train")
    dataset = ClipDataset(videos, InputSpec.for_crop(4, 32), train=False, num_clips=2)
    batch = collate([dataset[i] for i in range(len(dataset))])
    names = [p.name for p, _ in videos.records]
    assert batch.failed.tolist() == [name != "good.mp4" for name in names]
    assert [Path(b.path).name for b in batch.broken] == [n for n in names if n != "good.mp4"]
    assert batch.clips.shape == (5, 2, 3, 4, 32, 32) and not batch.clips[batch.failed].any()
    assert batch.labels.tolist() == [label for _, label in videos.records]


def test_synthetic_is_deterministic_and_complete(tmp_path: Path) -> None:
    assert generate(tmp_path / "a", seed=3, videos_per_class=1, num_frames=6, size=32, progress=False) == len(
        CLASS_NAMES
    )
    generate(tmp_path / "b", seed=3, videos_per_class=1, num_frames=6, size=32, progress=False)
    generate(tmp_path / "c", seed=4, videos_per_class=1, num_frames=6, size=32, progress=False)
    a, b, c = (read_dataset(tmp_path / d, "folder", "train") for d in "abc")
    assert a.classes == sorted(CLASS_NAMES)
    first = [open_video(p).read(range(6)) for p, _ in a.records]
    assert all(
        np.array_equal(x, open_video(p).read(range(6))) for x, (p, _) in zip(first, b.records, strict=True)
    )
    assert not np.array_equal(first[0], open_video(c.records[0][0]).read(range(6)))
    assert all(open_video(p).info.num_frames == 6 for p, _ in a.records)
