"""``dcf predict``: labels of local videos, through the same inference pipeline as the server."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, get_args

from dcf.checkpoint import DEMO
from dcf.cli.options import add_model_arguments, model_values
from dcf.inference.backends import ServedBackend
from dcf.inference.pipeline import PredictOptions

DESCRIPTION = """\
Predict action labels of video files without a server: the same decoding, sampling,
preprocessing and scoring as POST /v1/predict.

examples:
  dcf predict clip.mp4
  dcf predict a.mp4 b.webm --top-k 3 --clips 2 --crops 3
  dcf predict long.mp4 --timeline --window-s 4 --json
  dcf predict clip.mp4 --model demo.portable.onnx
"""


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="label local videos",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("videos", nargs="+", type=Path, metavar="VIDEO")
    parser.add_argument(
        "--model", default=DEMO, help="checkpoint or 'demo', portable .onnx, or .plan (default: demo)"
    )
    parser.add_argument("--backend", default="auto", choices=get_args(ServedBackend))
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--plugin", help="TensorRT plugin library, for .plan models")
    add_model_arguments(parser, PredictOptions)
    parser.add_argument("--json", action="store_true", help="print one JSON object per video")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from dcf.data.video import VideoDecodeError, VideoLimitError
    from dcf.inference.backends import load_backend
    from dcf.inference.pipeline import predict

    options = PredictOptions.parse(model_values(args, PredictOptions))  # before the model loads
    backend = load_backend(args.model, args.backend, device=args.device, plugin=args.plugin)
    options.check(len(backend.info.classes))
    failures = 0
    for path in args.videos:
        try:
            # Local files: no size limits beyond the decoder's own.
            answer = {
                "file": str(path),
                **predict(backend, path.read_bytes(), options).model_dump(exclude_none=True),
            }
        except (OSError, VideoDecodeError, VideoLimitError) as exc:
            print(f"{path}: error: {exc}")
            failures += 1
            continue
        print(json.dumps(answer) if args.json else _table(answer))
    return 1 if failures else 0


def _labels(predictions: list[dict[str, Any]]) -> list[str]:
    return [f"{p['score']:6.3f}  {p['label']}" for p in predictions]


def _table(answer: dict[str, Any]) -> str:
    video = answer["video"]
    lines = [
        f"{answer['file']}: {video['duration_s']:.1f} s, {video['frames']} frames, {video['width']}x{video['height']}"
        f" ({answer['model']}, {answer['views']['total']} view(s))",
        *(f"  {line}" for line in _labels(answer["predictions"])),
    ]
    for window in answer.get("timeline", []):
        best = window["predictions"][0]
        lines.append(
            f"  {window['start_s']:7.1f}-{window['end_s']:<7.1f} s  {best['score']:6.3f}  {best['label']}"
        )
    return "\n".join(lines)
