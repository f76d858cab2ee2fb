"""``dcf data``: dataset tools (``dcf data synth`` generates the synthetic motion dataset)."""

from __future__ import annotations

import argparse
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


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "data", help="dataset tools (synthetic motion data)", description="Dataset tools."
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
