"""``dcf predict``: labels of local videos, through the same inference pipeline as the server; with
``--out``, a collection labelled into a results file (resumable), on this machine or a Ray cluster."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any, get_args

from dcf.checkpoint import DEMO
from dcf.cli.options import add_model_arguments, model_values
from dcf.inference.backends import ComputePrecision, ServedBackend
from dcf.inference.pipeline import MAX_BATCH, PredictOptions

log = logging.getLogger("dcf.predict")

DESCRIPTION = """\
Predict action labels of video files without a server: the same decoding, sampling,
preprocessing and scoring as POST /v1/predict.

PATH is a video file, a folder (every video under it, by suffix) or a quoted pattern
('clips/**/*.mp4'); --list reads more paths, one per line. Without --out the answers are printed
(a table, or one JSON object per video with --json) in the order named. With --out each video
gets one JSON line, written and flushed as soon as it is answered: its file and the answer of
POST /v1/predict, or "error": {"code", "message"} with the server's error codes (unreadable_file:
a local file that cannot be opened). --resume skips the videos the file holds (failed ones included: delete
their lines to try them again), so an interrupted run continues.
A .parquet output has the same fields as typed columns (it cannot be resumed).

Videos are decoded on --workers threads (or processes) while the model scores the clips of
several videos --batch at a time. --ray runs the same pipeline on Ray Data: decoding as CPU
tasks, the model in an actor pool (a GPU per actor with --device cuda), the results written here.

Exit status: 0 when every video of this run was answered, 1 when any failed (its line says
why), 2 on bad arguments.

examples:
  dcf predict clip.mp4
  dcf predict a.mp4 b.webm --top-k 3 --clips 2 --crops 3
  dcf predict long.mp4 --timeline --window-s 4 --json
  dcf predict clip.mp4 --model demo.portable.onnx
  dcf predict videos/ --out results.jsonl --workers 2
  dcf predict videos/ --out results.jsonl --resume          # after an interruption
  dcf predict --list files.txt --out labels.parquet
  dcf predict /shared/videos --model /shared/model.onnx --out results.jsonl --ray=auto
"""


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="label local videos, or a collection into a results file",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("paths", nargs="*", metavar="PATH", help="video files, folders or patterns")
    parser.add_argument("--list", metavar="FILE", help="more paths, one per line (# comments)")
    parser.add_argument(
        "--model", default=DEMO, help="checkpoint or 'demo', exported .onnx, or .plan (default: demo)"
    )
    parser.add_argument(
        "--backend",
        default="auto",
        choices=get_args(ServedBackend),
        help="default auto: from the file (.onnx on CPU: openvino where installed)",
    )
    parser.add_argument(
        "--precision", default="fp32", choices=get_args(ComputePrecision), help="bf16 and fp16 are openvino's"
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--plugin", help="TensorRT plugin library, for .plan models")
    add_model_arguments(parser, PredictOptions)
    parser.add_argument("--json", action="store_true", help="print one JSON object per video")
    bulk = parser.add_argument_group("collections")
    bulk.add_argument("--out", metavar="FILE", help="write the results here: .jsonl (or .parquet)")
    bulk.add_argument("--resume", action="store_true", help="skip the videos --out already holds")
    bulk.add_argument(
        "--workers",
        type=int,
        default=2,
        help="parallel decoders on this machine (default: 2; not with --ray)",
    )
    bulk.add_argument(
        "--pool",
        choices=["thread", "process"],
        default="thread",
        help="decode in threads or processes (default: thread; bench/bulk_predict.py compares them)",
    )
    bulk.add_argument(
        "--batch", type=int, default=MAX_BATCH, help=f"clips per model call, 1-256 (default: {MAX_BATCH})"
    )
    bulk.add_argument("--no-progress", action="store_true", help="no progress bar (with --out)")
    bulk.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="run on Ray Data: alone (or last) it starts a local cluster on 127.0.0.1; --ray=auto or "
        "--ray=HOST:6379 joins a running one (model and videos readable at the same paths on every node)",
    )
    bulk.add_argument(
        "--ray-actors", type=int, default=1, metavar="N", help="model actors on Ray (default: 1)"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from dcf.inference.backends import load_backend
    from dcf.inference.bulk import find_videos, open_results, run_bulk

    if not args.paths and not args.list:
        raise ValueError("name the videos: PATH... or --list FILE")
    for flag, value, most in (
        ("--workers", args.workers, 64),
        ("--batch", args.batch, 256),
        ("--ray-actors", args.ray_actors, 1024),
    ):
        if not 1 <= value <= most:
            raise ValueError(f"{flag} must be between 1 and {most}, got {value}")
    if args.resume and not args.out:
        raise ValueError("--resume continues a results file: give it with --out")
    if args.ray and not args.out:
        raise ValueError("--ray writes a results file: give it with --out")
    options = PredictOptions.parse(model_values(args, PredictOptions))  # before the model loads
    videos = find_videos(args.paths, args.list)
    sink = open_results(args.out, args.resume) if args.out else PrintResults(videos, args.json)
    try:
        backend = load_backend(
            args.model, args.backend, device=args.device, plugin=args.plugin, precision=args.precision
        )
        if args.ray:
            from dcf.inference.ray_bulk import run_on_ray

            summary = run_on_ray(
                args.model,
                backend.info,
                videos,
                options,
                sink,
                address=None if args.ray == "local" else args.ray,
                backend=backend.info.backend,  # as resolved here: auto could differ on another host
                device=args.device,
                plugin=args.plugin,
                precision=args.precision,
                batch=args.batch,
                actors=args.ray_actors,
                progress=not args.no_progress,
            )
        else:
            summary = run_bulk(
                backend,
                videos,
                options,
                sink,
                workers=args.workers,
                pool=args.pool,
                batch=args.batch,
                progress=bool(args.out) and not args.no_progress,
            )
    finally:
        sink.close()
    if args.out:
        log.info("%s: %s", args.out, summary)
    return 1 if summary.failed else 0


class PrintResults:
    """The records on the terminal in the order the videos were named: a table per video (or a
    JSON object), errors as one line."""

    def __init__(self, videos: list[str], as_json: bool) -> None:
        self.as_json = as_json
        self._order = iter(videos)
        self._next = next(self._order, None)
        self._waiting: dict[str, dict[str, Any]] = {}

    def done(self) -> set[str]:
        return set()

    def write(self, record: dict[str, Any]) -> None:
        self._waiting[record["file"]] = record
        while self._next in self._waiting:
            self._print(self._waiting.pop(self._next))
            self._next = next(self._order, None)

    def _print(self, record: dict[str, Any]) -> None:
        if "error" in record:
            print(f"{record['file']}: error: {record['error']['message']}")
        else:
            print(json.dumps(record) if self.as_json else _table(record))
        sys.stdout.flush()

    def close(self) -> None:
        pass


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
