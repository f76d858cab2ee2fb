"""``dcf convert``: another codebase's pretrained weights as our checkpoint (DESIGN section 7)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

DESCRIPTION = """\
Convert pretrained weights into a DCF checkpoint (.safetensors with its config):
  --from pytorchvideo  PyTorchVideo hub X3D files (X3D_XS.pyth ... X3D_L.pyth)  -> x3d_xs|s|m|l[_dcf]
  --from slowfast      PySlowFast X3D checkpoints                             -> x3d_xs|s|m|l[_dcf]
  --from torchvision   torchvision ImageNet ResNet-50/101 state dicts        -> r2plus1d_r50|r101[_dcf]
Tensors are mapped by role and checked by name and shape. The DCF blocks of a _dcf network start
fresh (they pass their input through), so its logits equal the source's; an R(2+1)D's temporal
convs start as the identity, so it answers a clip with the 2D network's logits averaged over the
frames. The checkpoint carries the recipe's clip (X3D-S: 13 frames every 6, 160 px crop; X3D-M:
16 every 5, 224 px; ResNet: 8 segments, 224 px, ImageNet mean/std) and the labels of --labels
(one per line) or numbered placeholders. --num-classes N other than the source's gives a new head
(e.g. for fine-tuning; dcf train --init also swaps heads). Files are read with
torch.load(weights_only=True): tensors only, never arbitrary objects.

examples:
  dcf convert --from pytorchvideo X3D_S.pyth --arch x3d_s_dcf --out x3d_s_dcf_k400.safetensors --labels k400.txt
  dcf convert --from slowfast x3d_m.pyth --arch x3d_m --out x3d_m.safetensors
  dcf convert --from torchvision resnet50-11ad3fa6.pth --arch r2plus1d_r50_dcf --out r50_dcf.safetensors --num-classes 174
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
    parser.add_argument(
        "--num-classes",
        type=int,
        metavar="N",
        help="classes of the head (default: the source's); others: a new head",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from dcf.pretrained import convert

    config = convert(args.source, args.src, args.arch, args.out, args.labels, args.num_classes)
    spec = config.input_spec
    clip = f"{spec.num_frames} frames every {spec.interval}" if spec.sampling == "interval" else ""
    clip = clip or f"{spec.num_frames} segments"
    head = (
        f" (a new head: the source's has {config.recipe['source_classes']})"
        if config.recipe["new_head"]
        else ""
    )
    print(
        f"wrote {args.out}: {config.architecture}, {len(config.classes)} classes{head}, "
        f"{clip} at {spec.crop_size} px"
    )
    return 0
