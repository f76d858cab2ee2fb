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

Outputs in [run] out: last.safetensors and best.safetensors (checkpoints), last.state.safetensors
(optimizer state for --resume) and metrics.jsonl (one line per epoch).

examples:
  dcf train --config configs/demo.toml
  dcf train --config configs/demo.toml --set optim.epochs=5 --set run.out=runs/quick
  dcf train --config configs/demo.toml --resume          # continue a killed run
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
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from dcf.training.config import load_config
    from dcf.training.engine import train

    config = load_config(args.config, args.overrides)
    metrics = train(config, resume=args.resume, progress=not args.no_progress)
    print(json.dumps(metrics))
    return 0
