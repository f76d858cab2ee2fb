"""``dcf visualize``: the correlation field of a video's clip drawn as motion (paper section 4.4)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dcf.checkpoint import DEMO
from dcf.cli.options import add_model_arguments, model_values
from dcf.inference.fields import VisualizeOptions

DESCRIPTION = """\
Draw what a DCF stage's correlation volume says about motion in a video: for the centre clip (as
the model sees it), each position's best-matching displacement for the offset tau, in the
optical-flow colour wheel (hue = direction, saturation = magnitude; the legend says the scale).
A .png shows the frames the model saw above their fields; a .mp4 plays the fields.

examples:
  dcf visualize clip.mp4 --out vis.png
  dcf visualize clip.mp4 --out vis.mp4 --stage 3 --tau -1
  dcf visualize clip.mp4 --out vis.png --model runs/demo/best.safetensors --soft
"""


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "visualize",
        help="draw a DCF stage's correlation field over a video",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("video", type=Path, metavar="VIDEO")
    parser.add_argument("--out", type=Path, required=True, help="the picture: .png or .mp4")
    parser.add_argument("--model", default=DEMO, help="a DCF checkpoint (.safetensors) or 'demo' (default)")
    add_model_arguments(parser, VisualizeOptions, exclude=("format",))
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from dcf.checkpoint import checkpoint_of, load_checkpoint
    from dcf.data.video import VideoLimits
    from dcf.inference.fields import visualize_video
    from dcf.inference.pipeline import InvalidOptions
    from dcf.models.dcf_net import DCFNet

    suffix = args.out.suffix.lower().lstrip(".")
    if suffix not in ("png", "mp4"):
        raise ValueError(f"--out must end in .png or .mp4, got {args.out}")
    options = VisualizeOptions.parse({**model_values(args, VisualizeOptions), "format": suffix})
    model = load_checkpoint(args.model).eval()
    if not isinstance(model, DCFNet):
        raise ValueError(f"{args.model} has no DCF blocks: nothing to draw")
    try:
        picture = visualize_video(
            model, args.video.read_bytes(), checkpoint_of(model).input_spec, options, VideoLimits()
        )
    except InvalidOptions as exc:
        raise ValueError(str(exc)) from None
    args.out.write_bytes(picture.data)
    print(
        f"{args.out}: stage {picture.stage}, full colour = {picture.max_magnitude:.1f} px over |tau| frames"
    )
    return 0
