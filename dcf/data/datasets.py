"""Readers for the field's on-disk formats, and the clip dataset built on them.

Every reader returns a :class:`VideoList`: the class names and ``(path, label)`` records.

- Something-Something V1: ``<root>/20bn-something-something-v1/<id>/00001.jpg ...`` with
  ``something-something-v1-labels.csv`` (one class per line) and
  ``something-something-v1-{train,validation}.csv`` (``<id>;<class>`` per line).
- Something-Something V2: ``<root>/20bn-something-something-v2/<id>.webm`` with
  ``something-something-v2-labels.json`` (``{class: "index"}``) and
  ``something-something-v2-{train,validation}.json`` (``[{"id", "template", ...}]``, the class is
  the template without brackets).
- Kinetics-400: ``<root>/{train,val}.csv`` (``label,youtube_id,time_start,time_end,split``) and
  ``<root>/{train,val}/<label>/<youtube_id>_<start:06d>_<end:06d>.mp4``.
- A folder per class: ``<root>/<class>/<video file>``; classes in name order.
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import torch
from torch import Tensor
from torch.utils.data import Dataset

from dcf.data.spec import InputSpec
from dcf.data.video import VIDEO_SUFFIXES, VideoDecodeError, VideoLimitError, open_video
from dcf.data.views import eval_views, train_view

Format = Literal["ssv1", "ssv2", "kinetics", "folder"]
FORMATS: tuple[Format, ...] = ("ssv1", "ssv2", "kinetics", "folder")


@dataclass(frozen=True)
class VideoList:
    classes: list[str]
    records: list[tuple[Path, int]]  # (video file or frame folder, class index)


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


def read_something_v1(root: Path, split: str) -> VideoList:
    classes = [
        line.strip()
        for line in _require(root / "something-something-v1-labels.csv", "SSV1 label list")
        .read_text()
        .splitlines()
        if line.strip()
    ]
    index = {name: i for i, name in enumerate(classes)}
    frames = root / "20bn-something-something-v1"
    records = []
    for line in (
        _require(root / f"something-something-v1-{split}.csv", f"SSV1 {split} list").read_text().splitlines()
    ):
        if line.strip():
            video_id, label = line.strip().split(";", 1)
            records.append((frames / video_id, index[label]))
    return VideoList(classes, records)


def read_something_v2(root: Path, split: str) -> VideoList:
    label_map = json.loads(
        _require(root / "something-something-v2-labels.json", "SSV2 label map").read_text()
    )
    classes = [name for name, _ in sorted(label_map.items(), key=lambda item: int(item[1]))]
    videos = root / "20bn-something-something-v2"
    entries = json.loads(
        _require(root / f"something-something-v2-{split}.json", f"SSV2 {split} list").read_text()
    )
    records = []
    for entry in entries:
        label = entry["template"].replace("[", "").replace("]", "")
        records.append((videos / f"{entry['id']}.webm", int(label_map[label])))
    return VideoList(classes, records)


def read_kinetics(root: Path, split: str) -> VideoList:
    with _require(root / f"{split}.csv", f"Kinetics {split} list").open(newline="") as f:
        rows = list(csv.DictReader(f))
    classes = sorted({row["label"] for row in rows})
    index = {name: i for i, name in enumerate(classes)}
    records = []
    for row in rows:
        name = (
            f"{row['youtube_id']}_{int(float(row['time_start'])):06d}_{int(float(row['time_end'])):06d}.mp4"
        )
        path = root / split / row["label"] / name
        if path.exists():  # Kinetics lists always name videos that could not be downloaded
            records.append((path, index[row["label"]]))
    return VideoList(classes, records)


def read_folder(root: Path, split: str | None = None) -> VideoList:
    base = root / split if split and (root / split).is_dir() else root
    classes = sorted(p.name for p in _require(base, "dataset folder").iterdir() if p.is_dir())
    records = [
        (path, label)
        for label, name in enumerate(classes)
        for path in sorted((base / name).iterdir())
        if path.suffix.lower() in VIDEO_SUFFIXES
    ]
    return VideoList(classes, records)


def read_dataset(root: str | Path, fmt: Format, split: str) -> VideoList:
    """The class names and records of ``split`` in a dataset of format ``fmt``."""
    readers = {
        "ssv1": read_something_v1,
        "ssv2": read_something_v2,
        "kinetics": read_kinetics,
        "folder": read_folder,
    }
    if fmt not in readers:
        raise ValueError(f"unknown dataset format {fmt!r}; expected one of {', '.join(FORMATS)}")
    videos = readers[fmt](Path(root), split)
    if not videos.records:
        raise ValueError(f"no videos found for split {split!r} of the {fmt} dataset at {root}")
    return videos


class Broken(NamedTuple):
    """A video that could not be decoded or sampled, and why."""

    path: str
    reason: str


class Sample(NamedTuple):
    """One item of a :class:`ClipDataset`: the clip(s), the label, and the videos skipped for it
    (training: broken draws replaced by another video; evaluation: this video itself, whose clips
    are then zeros and must not be scored)."""

    clips: Tensor
    label: int
    broken: tuple[Broken, ...] = ()
    failed: bool = False  # no video could be decoded: its clips are zeros, not to be used


class Batch(NamedTuple):
    clips: Tensor
    labels: Tensor
    broken: list[Broken]  # every skipped video of the batch
    failed: Tensor  # (N,) bool: the rows of zeros (evaluation: the video could not be decoded)


def collate(samples: Sequence[Sample]) -> Batch:
    """A :class:`Batch` of samples (the ``collate_fn`` of loaders over a :class:`ClipDataset`)."""
    return Batch(
        torch.stack([s.clips for s in samples]),
        torch.tensor([s.label for s in samples]),
        [b for s in samples for b in s.broken],
        torch.tensor([s.failed for s in samples]),
    )


# What a broken file raises (the decoder's own errors); anything else is a bug and propagates.
BROKEN_VIDEO_ERRORS = (VideoDecodeError, VideoLimitError)
MAX_DRAWS = 10  # training draws in a row that may fail before the split is called broken


class ClipDataset(Dataset[Sample]):
    """Decoded, sampled and preprocessed clips of a :class:`VideoList`.

    Training (``train=True``): one random clip, random scale and crop, shape (3, T, S, S); a video
    that cannot be decoded is replaced by another drawn at random (reproducibly), and named in
    :attr:`Sample.broken` (after :data:`MAX_DRAWS` broken draws in a row the sample is ``failed``). Evaluation: ``num_clips`` x ``num_crops`` views, shape
    (views, 3, T, S, S); a video that cannot be decoded gives zeros and itself in ``broken``.
    Load it with ``collate_fn=collate`` (the default collation cannot batch ``broken``).
    """

    def __init__(
        self,
        videos: VideoList,
        spec: InputSpec,
        *,
        train: bool,
        num_clips: int = 1,
        num_crops: int = 1,
        seed: int = 0,
    ) -> None:
        self.videos, self.spec, self.train = videos, spec, train
        self.num_clips, self.num_crops, self.seed = num_clips, num_crops, seed
        self.epoch = 0  # set by the training loop, so that each epoch samples anew, reproducibly

    def __len__(self) -> int:
        return len(self.videos.records)

    def __getitem__(self, index: int) -> Sample:
        if not self.train:
            path, label = self.videos.records[index]
            try:
                return Sample(eval_views(open_video(path), self.spec, self.num_clips, self.num_crops), label)
            except BROKEN_VIDEO_ERRORS as exc:
                views = self.num_clips * self.num_crops
                size = self.spec.crop_size
                zeros = torch.zeros(views, 3, self.spec.num_frames, size, size)
                return Sample(zeros, label, (Broken(str(path), str(exc)),), failed=True)
        broken: list[Broken] = []
        for draw in range(MAX_DRAWS):
            rng = random.Random(
                hash((self.seed, self.epoch, index, draw) if draw else (self.seed, self.epoch, index))
            )
            if draw:  # the video drawn first was broken: another, at random
                index = rng.randrange(len(self))
            path, label = self.videos.records[index]
            try:
                return Sample(train_view(open_video(path), self.spec, rng), label, tuple(broken))
            except BROKEN_VIDEO_ERRORS as exc:
                broken.append(Broken(str(path), str(exc)))
        # Nothing decodes: a zero clip marked failed, for the training loop to stop on (an exception
        # would reach it wrapped in a data-loader worker's traceback).
        return Sample(
            torch.zeros(3, self.spec.num_frames, self.spec.crop_size, self.spec.crop_size),
            label,
            tuple(broken),
            failed=True,
        )
