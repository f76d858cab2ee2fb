"""``dcf predict``: labels of local videos, through the server's own decode and predict steps."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from dcf.checkpoint import DEMO

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
    parser.add_argument("--backend", default="auto", choices=["auto", "torch", "onnxruntime", "tensorrt"])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--plugin", help="TensorRT plugin library, for .plan models")
    parser.add_argument("--top-k", type=int, default=5, help="labels per video (default: 5)")
    parser.add_argument("--clips", type=int, default=1, help="clips per video or window (default: 1)")
    parser.add_argument("--crops", type=int, default=1, choices=[1, 3], help="crops per clip (default: 1)")
    parser.add_argument("--sampling", choices=["segment", "interval"], help="default: the model's own")
    parser.add_argument("--timeline", action="store_true", help="also label each window of the video")
    parser.add_argument("--window-s", type=float, default=2.0, help="timeline window in seconds (default: 2)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per video")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from dcf.data.video import VideoDecodeError, VideoLimitError, VideoLimits
    from dcf.inference.backends import load_backend
    from dcf.server.pipeline import PredictOptions, prepare, summarize
    from dcf.server.settings import ServerSettings

    settings = ServerSettings()
    backend = load_backend(args.model, args.backend, device=args.device, plugin=args.plugin)
    options = PredictOptions(
        top_k=args.top_k,
        clips=args.clips,
        crops=args.crops,
        sampling=args.sampling,
        timeline=args.timeline,
        window_s=args.window_s,
    )
    options.check(len(backend.info.classes), settings.max_views)
    failures = 0
    for path in args.videos:
        try:
            # Local files: no size limits beyond the decoder's own.
            prepared = prepare(
                path.read_bytes(), backend.info.input_spec, options, VideoLimits(), settings.max_views
            )
        except (OSError, VideoDecodeError, VideoLimitError) as exc:
            print(f"{path}: error: {exc}")
            failures += 1
            continue
        views, batch = prepared.views, settings.max_batch
        logits = np.concatenate([backend(views[i : i + batch]) for i in range(0, len(views), batch)])
        answer = {"file": str(path), "model": backend.info.name}
        answer |= summarize(logits, prepared, backend.info.classes, options)
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
