"""``prepare`` (probe, decode, convert, sample, preprocess) against FFmpeg's own decoding speed.

For H.264 clips at 720p and 1080p we time, side by side in one process and with the same decoder
threads, (a) the server's ``prepare`` of one request and (b) the floor: a bare PyAV loop decoding
just the frames that request must decode (from frame 0, or from the keyframe ``prepare`` seeks to,
up to the last wanted frame), with no conversion at all. A full decode of every frame is shown for
scale. The goal (issue #19) is ``prepare`` <= 1.2x the floor.

    python -m bench.prepare              # writes bench/results/prepare.md
"""

from __future__ import annotations

import argparse
import datetime
import io
from pathlib import Path

import av

from bench.common import machine_description, median_times, write_results
from dcf.checkpoint import checkpoint_of, load_checkpoint
from dcf.data.sampling import sample_indices
from dcf.data.spec import InputSpec
from dcf.data.video import EncodedVideo, VideoLimits
from dcf.inference.pipeline import PredictOptions, prepare
from dcf.testing.media import panning_mp4

THREADS = 2  # the server's default decode_threads


def _decode(data: bytes, runs: tuple[tuple[int | None, int], ...], order: list[int] | None) -> int:
    """The floor: decode the runs' frames and nothing else (no conversion, no copies)."""
    decoded = 0
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = THREADS
        frames = container.decode(stream)
        position = 0  # index of the next frame out of the decoder
        for seek_to, last in runs:
            if seek_to is not None and order is not None:
                container.seek(order[seek_to], stream=stream, backward=True)
                frames, position = container.decode(stream), seek_to
            for _ in frames:
                decoded += 1
                position += 1
                if position > last:
                    break
    return decoded


def _full_decode(data: bytes) -> int:
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = THREADS
        decoded = 0
        for _ in container.decode(stream):  # each frame dropped at once, as in the floor
            decoded += 1
        return decoded


def _row(data: bytes, spec: InputSpec, rounds: int) -> str:
    video = EncodedVideo(data)
    plan = video.plan(sample_indices(spec, video.info.num_frames))
    assert _decode(data, plan.runs, video._order) == plan.frames
    options, limits = PredictOptions(), VideoLimits()
    times = median_times(
        {
            "prepare": lambda: prepare(data, spec, options, limits, 1, threads=THREADS),
            "floor": lambda: _decode(data, plan.runs, video._order),
            "full": lambda: _full_decode(data),
        },
        rounds=rounds,
        calls=3,
        warmup=2,
    )
    info = video.info
    return (
        f"| {info.width}x{info.height} | {len(data) / 1e6:.2f} | {info.num_frames} | {plan.frames} "
        f"| {times['prepare'] * 1e3:.1f} | {times['floor'] * 1e3:.1f} | {times['full'] * 1e3:.1f} "
        f"| **{times['prepare'] / times['floor']:.2f}x** |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=15, help="alternating timing blocks (default: 15)")
    parser.add_argument("--results", type=Path, default=Path("bench/results/prepare.md"))
    args = parser.parse_args()

    spec = checkpoint_of(load_checkpoint("demo")).input_spec
    rows = []
    for width, height in ((1280, 720), (1920, 1080)):
        # x264's default settings (CRF 23, B-frames, one GOP) on a textured scene panning right.
        data = panning_mp4(width, height, 132, fps=30, block=8, seed=0, x264={"preset": "fast"})
        rows.append(_row(data, spec, args.rounds))
    write_results(
        args.results,
        [
            "# `prepare` against the decoder's own speed",
            "",
            f"`python -m bench.prepare`, {datetime.date.today()}: one request of the demo model (8 frames, "
            f"segment sampling, short side {spec.test_short_side}, centre crop {spec.crop_size}), H.264 "
            f"(x264 preset fast, one GOP, B-frames) at 30 fps; {THREADS} decoder threads everywhere; "
            f"medians of {args.rounds} alternating blocks of 3 calls.",
            "",
            f"Machine: {machine_description()}.",
            "",
            "| clip | MB | frames | frames to decode | prepare ms | floor ms (decode those frames) "
            "| full decode ms | prepare / floor |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
            *rows,
            "",
            "The floor decodes exactly the frames `prepare` must decode (its `DecodePlan`) and converts "
            "none. `prepare` adds the probe (demuxing every packet to count frames and find keyframes, "
            "and decoding the first frame for its rotation), the one-step swscale convert + resize of "
            "the 8 wanted frames, the crop and normalisation. Goal: at most 1.2x.",
        ],
    )


if __name__ == "__main__":
    main()
