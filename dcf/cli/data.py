"""``dcf data``: dataset tools (``dcf data synth`` generates the synthetic motion dataset, ``dcf
data check`` finds the videos of a split that cannot be decoded)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

DESCRIPTION = """\
Generate the synthetic motion dataset: textured objects on textured backgrounds whose class is
decided by motion alone (12 classes: left, right, up, down, approaching, receding, clockwise,
counter-clockwise, falling, bouncing, fast right, not moving). Writes H.264 MP4 files in the
folder-per-class layout OUT/SPLIT/CLASS/*.mp4, identical for the same seed on any machine.

examples:
  dcf data synth --out data/synth --seed 0 --videos-per-class 100 --split train
  dcf data synth --out data/synth --seed 1 --videos-per-class 20 --split val
"""


CHECK_DESCRIPTION = """\
Find the videos of a dataset split that cannot be used, before anyone spends GPU hours: each is
opened and the frames of 3 clips spread over it are decoded, sampled and preprocessed (--full:
every frame is decoded), in parallel. Prints one line per broken file, "PATH: REASON" (--json:
{"file", "error"} per line), then a summary on stderr; exits 1 when any is broken.
`dcf train` skips such files (data.max_broken of the split at most) and `dcf eval` reports them.

examples:
  dcf data check data/synth --split train
  dcf data check data/kinetics400 --format kinetics --split train --workers 8 > broken.txt
  dcf data check data/ssv2 --format ssv2 --split validation --full --json
"""


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "data", help="dataset tools (synthetic data, checking a split)", description="Dataset tools."
    )
    commands = parser.add_subparsers(dest="data_command", metavar="COMMAND", required=True)
    synth = commands.add_parser(
        "synth",
        help="generate the synthetic motion dataset",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    synth.add_argument("--out", type=Path, required=True, help="dataset folder to write into")
    synth.add_argument("--seed", type=int, required=True, help="random seed; use different seeds per split")
    synth.add_argument("--videos-per-class", type=int, required=True, help="videos of each of the 12 classes")
    synth.add_argument("--split", default="train", help="subfolder to write (default: train)")
    synth.add_argument("--frames", type=int, default=24, help="frames per video (default: 24, 2 s at 12 fps)")
    synth.add_argument("--size", type=int, default=128, help="frame side in pixels (default: 128)")
    synth.set_defaults(run=run_synth)

    from dcf.data.datasets import FORMATS

    check = commands.add_parser(
        "check",
        help="list the videos of a split that cannot be decoded or sampled",
        description=CHECK_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("root", type=Path, metavar="DIR", help="dataset folder")
    check.add_argument("--format", default="folder", choices=FORMATS, help="dataset layout (default: folder)")
    check.add_argument("--split", default="train", help="split to check (default: train)")
    check.add_argument("--workers", type=int, default=2, help="decoding threads, 1-64 (default: 2)")
    check.add_argument("--full", action="store_true", help="decode every frame (slower, finds more)")
    check.add_argument("--json", action="store_true", help='one {"file", "error"} object per line')
    check.add_argument("--no-progress", action="store_true", help="no progress bar")
    check.set_defaults(run=run_check)


def run_synth(args: argparse.Namespace) -> int:
    from dcf.data.synthetic import generate

    if args.videos_per_class < 1 or args.frames < 1 or args.size < 16:
        raise ValueError("--videos-per-class and --frames must be >= 1 and --size >= 16")
    count = generate(
        args.out,
        seed=args.seed,
        videos_per_class=args.videos_per_class,
        split=args.split,
        num_frames=args.frames,
        size=args.size,
    )
    print(f"wrote {count} videos to {args.out / args.split}")
    return 0


def run_check(args: argparse.Namespace) -> int:
    from dcf.data.check import check_videos
    from dcf.data.datasets import read_dataset
    from dcf.data.spec import InputSpec
    from dcf.training.config import DEFAULT_CLIP

    if not 1 <= args.workers <= 64:
        raise ValueError(f"--workers must be between 1 and 64, got {args.workers}")
    videos = read_dataset(args.root, args.format, args.split)
    broken = 0
    for video in check_videos(
        videos,
        InputSpec.for_crop(*DEFAULT_CLIP),
        workers=args.workers,
        full=args.full,
        progress=not args.no_progress,
    ):
        broken += 1
        print(
            json.dumps({"file": video.path, "error": video.reason})
            if args.json
            else f"{video.path}: {video.reason}"
        )
    total = len(videos.records)
    print(
        f"{broken} of {total} videos in {args.root} [{args.split}] cannot be used"
        if broken
        else f"all {total} videos in {args.root} [{args.split}] decode",
        file=sys.stderr,
    )
    return 1 if broken else 0
