"""Labelling a collection: ``dcf predict DIR --out results.jsonl`` against the one-by-one loop it
replaces, with 1 and 2 decode workers (threads, processes), and on a local Ray cluster, side by side
in one run; and the floors the pipeline cannot beat: the decoder alone and the model alone.

Two collections: the demo's synthetic clips (24 frames, 96x96) and ordinary H.264 (3 s, 25 fps,
640x360). The model is the bundled demo (PyTorch, CPU); every configuration answers the same videos
and writes the same JSON lines. Rounds alternate the configurations; medians are reported.

    python -m bench.bulk_predict            # writes bench/results/bulk_predict.md
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.common import machine_description, write_results
from dcf.data.video import VideoLimits
from dcf.inference.backends import load_backend
from dcf.inference.bulk import Decoder, JsonlResults, Pool, find_videos, run_bulk
from dcf.inference.pipeline import MAX_BATCH, PredictOptions, predict
from dcf.testing.media import write_collection

OPTIONS = PredictOptions()  # one centre clip per video, as dcf predict does by default


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--synthetic", type=int, default=300, help="synthetic clips (default: 300)")
    parser.add_argument("--h264", type=int, default=100, help="640x360 H.264 clips (default: 100)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default: 3)")
    parser.add_argument("--no-ray", action="store_true", help="leave out the local Ray cluster")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "bulk_predict.md")
    args = parser.parse_args()

    backend = load_backend("demo")
    tmp = Path(tempfile.mkdtemp(prefix="dcf-bench-bulk-"))
    collections = {
        f"synthetic 96x96, {args.synthetic} clips": find_videos(
            [write_collection(tmp / "s", args.synthetic)[0].parent]
        ),
        f"H.264 640x360, {args.h264} clips": find_videos(
            [write_collection(tmp / "h", args.h264, "h264")[0].parent]
        ),
    }
    ray_start = None
    if not args.no_ray:
        from dcf.inference.ray_bulk import LOOPBACK_ENV, run_on_ray, start_local_cluster

        os.environ.update(LOOPBACK_ENV)
        import ray

        started = time.perf_counter()
        start_local_cluster(ray)
        ray_start = time.perf_counter() - started

    def one_by_one(videos: list[str]) -> None:  # what dcf predict did before: read, predict, print
        for video in videos:
            predict(backend, Path(video).read_bytes(), OPTIONS)

    def bulk(workers: int, pool: Pool) -> Callable[[list[str]], None]:
        def run(videos: list[str]) -> None:
            with tempfile.TemporaryDirectory() as out:
                sink = JsonlResults(Path(out) / "r.jsonl")
                run_bulk(backend, videos, OPTIONS, sink, workers=workers, pool=pool)
                sink.close()

        return run

    def on_ray(videos: list[str]) -> None:
        with tempfile.TemporaryDirectory() as out:
            sink = JsonlResults(Path(out) / "r.jsonl")
            run_on_ray("demo", backend.info, videos, OPTIONS, sink)
            sink.close()

    def decode_only(workers: int) -> Callable[[list[str]], None]:
        decoder = Decoder(backend.info.input_spec, OPTIONS, VideoLimits(), threads=1 if workers > 1 else 0)

        def run(videos: list[str]) -> None:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(decoder, videos))

        return run

    configs: dict[str, Callable[[list[str]], None]] = {
        "one by one (`dcf predict` before)": one_by_one,
        "`--workers 1`": bulk(1, "thread"),
        "`--workers 2`": bulk(2, "thread"),
        "`--workers 2 --pool process`": bulk(2, "process"),
    }
    if not args.no_ray:
        configs["`--ray` (local cluster, 2 CPUs)"] = on_ray
    floors = {"decoder alone, 1 thread": decode_only(1), "decoder alone, 2 threads": decode_only(2)}

    rates: dict[tuple[str, str], list[float]] = {}
    model_rates: dict[str, float] = {}
    for collection, videos in collections.items():
        clips = np.random.default_rng(0).standard_normal(
            (MAX_BATCH, 3, backend.info.input_spec.num_frames, *(2 * [backend.info.input_spec.crop_size])),
            dtype=np.float32,
        )
        backend(clips)
        start = time.perf_counter()
        for _ in range(50):
            backend(clips)
        model_rates[collection] = 50 * MAX_BATCH / (time.perf_counter() - start)
        for round_ in range(args.rounds):
            for name, run in {**configs, **floors}.items():
                start = time.perf_counter()
                run(videos)
                seconds = time.perf_counter() - start
                rates.setdefault((collection, name), []).append(len(videos) / seconds)
                print(
                    f"round {round_ + 1} {collection} {name}: {len(videos) / seconds:.1f} videos/s",
                    flush=True,
                )

    lines = [
        "# Labelling a collection: `dcf predict DIR --out results.jsonl`",
        "",
        f"`python -m bench.bulk_predict`, {datetime.date.today()}: the bundled demo model (PyTorch, CPU, "
        f"{backend.info.input_spec.num_frames} frames at {backend.info.input_spec.crop_size} px), one clip per video, "
        f"`--batch {MAX_BATCH}`; videos/s over the whole collection (JSON lines written), median of {args.rounds} "
        "alternating rounds (the spread is min-max).",
        "",
        f"Machine: {machine_description()}.",
        "",
    ]
    if ray_start is not None:
        lines += [f"The local Ray cluster took {ray_start:.1f} s to start (once, not in the rows).", ""]
    for collection in collections:
        base = statistics.median(rates[(collection, next(iter(configs)))])
        lines += [
            f"## {collection}",
            "",
            "| run | videos/s | spread | vs one by one |",
            "|---|---:|---:|---:|",
        ]
        for name in {**configs, **floors}:
            values = rates[(collection, name)]
            median = statistics.median(values)
            lines.append(
                f"| {name} | {median:.1f} | {min(values):.1f}-{max(values):.1f} | {median / base:.2f}x |"
            )
        # The two parts in turn, each on every core: what a pipeline without overlap would reach
        # (overlap does better where neither part scales to all cores).
        decode = statistics.median(rates[(collection, "decoder alone, 2 threads")])
        in_turn = 1 / (1 / model_rates[collection] + 1 / decode)
        lines += [
            f"| model alone (clips/s, batches of {MAX_BATCH}) | {model_rates[collection]:.1f} | | |",
            f"| model and decoder in turn: 1 / (1 / model alone + 1 / decoder alone, 2 threads) | {in_turn:.1f} "
            f"| | {in_turn / base:.2f}x |",
            "",
        ]
    write_results(args.out, lines)


if __name__ == "__main__":
    main()
