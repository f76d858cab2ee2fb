"""``dcf convert``: another codebase's pretrained weights as our checkpoint (DESIGN section 7)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

DESCRIPTION = """\
Convert pretrained weights into a DCF checkpoint (.safetensors with its config): PyTorchVideo
hub X3D files (X3D_XS.pyth ... X3D_L.pyth) or PySlowFast X3D checkpoints, onto x3d_xs|s|m|l or
their _dcf networks. Tensors are mapped by role and checked by name and shape; the DCF blocks of
a _dcf network start fresh (they pass their input through), so its logits equal the source's.
The checkpoint carries the recipe's clip (X3D-S: 13 frames every 6, 160 px crop; X3D-M: 16 every
5, 224 px ...) and the labels of --labels (one per line) or numbered placeholders.
Files are read with torch.load(weights_only=True): tensors only, never arbitrary objects.

examples:
  dcf convert --from pytorchvideo X3D_S.pyth --arch x3d_s_dcf --out x3d_s_dcf_k400.safetensors --labels k400.txt
  dcf convert --from slowfast x3d_m.pyth --arch x3d_m --out x3d_m.safetensors
"""


def add_parser(subparsers: Any) -> None:
    from dcf.pretrained import SOURCES

    parser = subparsers.add_parser(
        "convert",
        help="pretrained weights of another codebase as a DCF checkpoint",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("src", type=Path, metavar="SRC", help="the weights file (.pyth, .pth)")
    parser.add_argument("--from", dest="source", required=True, choices=SOURCES, help="its codebase")
    parser.add_argument("--arch", required=True, help="our architecture, e.g. x3d_s or x3d_s_dcf")
    parser.add_argument("--out", type=Path, required=True, help="the checkpoint to write (.safetensors)")
    parser.add_argument("--labels", type=Path, help="class names, one per line, in the head's order")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from dcf.pretrained import convert

    config = convert(args.source, args.src, args.arch, args.out, args.labels)
    spec = config.input_spec
    print(
        f"wrote {args.out}: {config.architecture}, {len(config.classes)} classes, "
        f"{spec.num_frames} frames every {spec.interval} at {spec.crop_size} px"
    )
    return 0
