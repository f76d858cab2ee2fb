"""``dcf eval``: top-1 / top-5 of a checkpoint on a dataset split."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

DESCRIPTION = """\
Evaluate a checkpoint with the paper's protocols: 1 clip x centre crop (default), or several
clips x 3 crops (--clips 10 --crops 3), scores averaged over the views. Sampling and
preprocessing come from the checkpoint's own input spec. A video that cannot be decoded is
reported as a failure (named, with the reason) and left out of top-1/top-5; the exit code is then 1.

examples:
  dcf eval --checkpoint demo --data data/synth --split test
  dcf eval --checkpoint runs/demo/best.safetensors --data data/synth --split val
  dcf eval --checkpoint runs/demo/best.safetensors --data data/ssv2 --format ssv2 --split validation --json
"""


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a checkpoint (top-1, top-5)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--checkpoint", required=True, help="checkpoint file (.safetensors), or 'demo' for the bundled model"
    )
    parser.add_argument("--data", type=Path, required=True, help="dataset folder")
    parser.add_argument(
        "--format",
        default="folder",
        choices=["ssv1", "ssv2", "kinetics", "folder"],
        help="dataset layout (default: folder)",
    )
    parser.add_argument("--split", default="val", help="split to evaluate (default: val)")
    parser.add_argument("--clips", type=int, default=1, help="clips per video (default: 1)")
    parser.add_argument(
        "--crops", type=int, default=1, choices=[1, 3], help="spatial crops per clip (default: 1)"
    )
    parser.add_argument("--batch-size", type=int, default=8, help="videos per batch (default: 8)")
    parser.add_argument("--workers", type=int, default=2, help="data loader processes (default: 2)")
    parser.add_argument(
        "--json", action="store_true", help="print {top1, top5, videos, failed: [{file, error}]} as JSON"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch
    from torch.utils.data import DataLoader

    from dcf.checkpoint import checkpoint_of, load_checkpoint
    from dcf.data.datasets import ClipDataset, collate, read_dataset
    from dcf.training.engine import evaluate

    if args.clips < 1:
        raise ValueError(f"--clips must be >= 1, got {args.clips}")
    model = load_checkpoint(args.checkpoint)
    config = checkpoint_of(model)
    videos = read_dataset(args.data, args.format, args.split)
    if videos.classes != list(config.classes):
        raise ValueError(
            f"the dataset's classes {videos.classes} differ from the checkpoint's {list(config.classes)}"
        )
    dataset = ClipDataset(videos, config.input_spec, train=False, num_clips=args.clips, num_crops=args.crops)
    loader = DataLoader(dataset, batch_size=args.batch_size, num_workers=args.workers, collate_fn=collate)
    result = evaluate(model, loader, torch.device("cpu"), progress=not args.json)
    if args.json:
        failed = [{"file": broken.path, "error": broken.reason} for broken in result.failures]
        print(
            json.dumps({"top1": result.top1, "top5": result.top5, "videos": result.videos, "failed": failed})
        )
    else:
        note = f", {result.failed} failed (named above)" if result.failed else ""
        if not result.videos:
            print(
                f"no video of {args.data} [{args.split}] could be decoded ({result.failed} failed, named above)"
            )
            return 1
        print(
            f"{args.checkpoint} on {args.data} [{args.split}], {args.clips} clip(s) x {args.crops} crop(s): "
            f"top-1 {result.top1:.2f}%, top-5 {result.top5:.2f}% over {result.videos} videos{note}"
        )
    return 1 if result.failed else 0
