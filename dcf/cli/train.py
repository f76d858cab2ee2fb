"""``dcf train``: train a model from a TOML config with command-line overrides."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

DESCRIPTION = """\
Train a model. The config is a TOML file with sections [model], [data], [optim] and [run]
(see configs/ for examples); any value can be overridden with --set section.key=value.
The paper's recipe is the default: SGD with momentum, linear warm-up then half-period cosine,
weight decay, dropout 0.5 before the head; mixed precision on GPU.

One process trains on the GPU if there is one, else on the CPU. For several GPUs or nodes, start
it under torchrun (DistributedDataParallel; rank 0 logs and writes checkpoints):
  torchrun --nproc-per-node 4 -m dcf train --config configs/demo.toml

Fine-tuning: --init CKPT starts from a checkpoint (ours, or one `dcf convert` made from
PyTorchVideo, PySlowFast or torchvision weights). Every tensor is loaded strictly; the head is new
when the dataset's class count differs (logged). The checkpoint's architecture, model kwargs and
clip (frames, crop, sampling, mean/std) are the defaults; [data] values set in the config or with
--set win. --freeze-backbone-epochs N trains only the DCF blocks and the head for the first N
epochs (the paper's insertion recipe), then everything.

Broken videos: a training video that cannot be decoded is skipped with one warning naming it and
another is drawn, so batches stay full; the count is in each epoch's log and metrics
(train_skipped, val_failed). Past data.max_broken (default 0.01, a fraction of the training
split: under 100 videos, the first broken one) training stops; `dcf data check` lists such files
before a run.

Outputs in [run] out: last.safetensors and best.safetensors (checkpoints), last.state.safetensors
(optimizer state for --resume) and metrics.jsonl (one line per epoch); with --tensorboard DIR also
TensorBoard scalars (loss, top-1/5, lr, clips/s, epoch time; needs the tensorboard extra).

examples:
  dcf train --config configs/demo.toml
  dcf train --config configs/demo.toml --set optim.epochs=5 --set run.out=runs/quick
  dcf train --config configs/demo.toml --resume          # continue a killed run
  dcf train --config configs/finetune.toml --init x3d_s_dcf_k400.safetensors --freeze-backbone-epochs 2 \
      --tensorboard runs/tb
"""


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", type=Path, help="TOML config file (default: built-in defaults)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. optim.lr=0.05 (repeatable)",
    )
    parser.add_argument("--resume", action="store_true", help="continue from run.out/last.* if present")
    parser.add_argument(
        "--init",
        metavar="CKPT",
        help="start from this checkpoint (sets model.init); a new head if classes differ",
    )
    parser.add_argument(
        "--freeze-backbone-epochs",
        type=int,
        metavar="N",
        help="train only the DCF blocks and head for the first N epochs (sets optim.freeze_backbone_epochs)",
    )
    parser.add_argument(
        "--tensorboard", metavar="DIR", help="also write TensorBoard scalars into DIR (sets run.tensorboard)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from dcf.training.config import load_config
    from dcf.training.engine import train

    overrides = list(args.overrides)
    for key, value in (
        ("model.init", args.init),
        ("optim.freeze_backbone_epochs", args.freeze_backbone_epochs),
        ("run.tensorboard", args.tensorboard),
    ):
        if value is not None:
            overrides.append(f"{key}={json.dumps(value)}")  # a TOML string or integer
    config = load_config(args.config, overrides)
    metrics = train(config, resume=args.resume, progress=not args.no_progress)
    print(json.dumps(metrics))
    return 0
