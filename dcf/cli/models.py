"""``dcf models``: every registered model with its parameters and multiply-adds."""

from __future__ import annotations

import argparse
import json
from typing import Any

import torch

from dcf.models import count_macs, count_parameters, get_model_entry, list_models
from dcf.models.zoo import PAPER_TABLE3

DESCRIPTION = """\
List the registered models with their parameter count and multiply-adds for one clip.

Multiply-adds ("FLOPs" in the paper and in X3D, where a multiply-add counts once) include every
convolution and linear layer and the correlation op (N*T*H*W*C*K*K*2L). They are measured by
running the model on meta tensors, so the command is instant. With the default 174 classes
(Something-Something) the figures compare directly with the paper's Table 3.
"""


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "models",
        help="list models with parameters and multiply-adds",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help="models to show (default: all)")
    parser.add_argument("--num-classes", type=int, default=174, help="classifier size (default: 174)")
    parser.add_argument("--frames", type=int, help="clip length (default: each model's own)")
    parser.add_argument("--size", type=int, help="square crop side in pixels (default: each model's own)")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    parser.set_defaults(run=run)


def describe(name: str, *, num_classes: int, frames: int | None, size: int | None) -> dict[str, Any]:
    """Parameters and multiply-adds of ``name`` at its default (or the given) clip size."""
    entry = get_model_entry(name)
    frames, size = frames or entry.num_frames, size or entry.crop_size
    with torch.device("meta"):
        model = entry.builder(num_classes=num_classes)
    return {
        "name": name,
        "description": entry.description,
        "frames": frames,
        "crop_size": size,
        "params": count_parameters(model),
        "macs": count_macs(model, (1, 3, frames, size, size)),
    }


def run(args: argparse.Namespace) -> int:
    names = args.names or list_models()
    rows = [describe(n, num_classes=args.num_classes, frames=args.frames, size=args.size) for n in names]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    by_name = {r["name"]: r for r in rows}
    # The paper's figures apply at its class count and each model's own clip size.
    show_paper = args.num_classes == 174 and args.frames is None and args.size is None
    header = (
        f"{'model':<20} {'description':<26} {'input':>9} {'params':>8} {'GMACs':>7}  "
        f"{'paper (Table 3)':<16} DCF overhead"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        base = by_name.get(r["name"].removesuffix("_dcf")) if r["name"].endswith("_dcf") else None
        overhead = (
            f"+{(r['params'] - base['params']) / 1e6:.2f}M params, +{(r['macs'] - base['macs']) / 1e9:.2f} GMACs"
            if base
            else ""
        )
        clip = f"{r['frames']}x{r['crop_size']}^2"
        paper = PAPER_TABLE3.get(r["name"]) if show_paper else None
        paper_text = f"{paper[0] / 1e6:.1f}M {paper[1] / 1e9:.1f}G" if paper else ""
        print(
            f"{r['name']:<20} {r['description']:<26} {clip:>9} {r['params'] / 1e6:>7.2f}M "
            f"{r['macs'] / 1e9:>7.2f}  {paper_text:<16} {overhead}"
        )
    print(
        f"\n{args.num_classes} classes, one clip (batch 1). GMACs = 10^9 multiply-adds (the paper's 'FLOPs')."
    )
    return 0
