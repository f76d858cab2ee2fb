"""Load on the HTTP server: concurrent clients on loopback against a real ``dcf serve`` process.

For each model and client count, a fixed number of POST /v1/predict requests (one real encoded
clip) are sent by that many concurrent clients; we report throughput, latency percentiles and the
5xx count. The ratio compares the server's clips/s with the model alone (the same backend,
in this process, on already-preprocessed clips in batches of --max-batch) measured right before;
the goal (issue #6) is >= 0.9 at 8 clients. Client, decoder and model share this machine's cores.

    python -m bench.server_load            # writes bench/results/server_load.md
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from bench.common import machine_description, write_results
from dcf.checkpoint import CheckpointConfig, save_checkpoint
from dcf.data.spec import InputSpec
from dcf.data.synthetic import render_video
from dcf.data.video import VideoLimits
from dcf.export.onnx_export import export_onnx
from dcf.inference.backends import auto_backend, load_backend
from dcf.inference.pipeline import PredictOptions, prepare
from dcf.testing.media import write_video
from dcf.testing.server import start_server, stop_server


def _clip(tmp: Path, size: int, frames: int) -> bytes:
    """A synthetic motion clip as an ordinary (lossy, x264 default) H.264 MP4."""
    path = tmp / f"clip_{size}.mp4"
    write_video(path, render_video(5, np.random.default_rng(0), num_frames=frames, size=size), fps=12)
    return path.read_bytes()


def _x3d_s_export(tmp: Path) -> tuple[str, str]:
    """X3D-S+DCF exported for the fastest CPU backend ``auto`` serves (bench/cpu_runtimes.py):
    custom nodes for OpenVINO where it is installed, else portable for ONNX Runtime."""
    from dcf.checkpoint import load_checkpoint

    config = CheckpointConfig(
        "x3d_s_dcf", tuple(f"class {i}" for i in range(174)), InputSpec.for_crop(13, 160)
    )
    save_checkpoint(tmp / "x3d_s_dcf.safetensors", config.build(), config)
    backend, _ = auto_backend(str(tmp / "x3d_s_dcf.onnx"))
    flavour = "custom-node" if backend == "openvino" else "portable"
    path = tmp / "x3d_s_dcf.onnx"
    export_onnx(load_checkpoint(tmp / "x3d_s_dcf.safetensors"), path, portable=flavour == "portable")
    return str(path), f"{flavour} ONNX, {backend}"


def model_only(model: str, data: bytes, max_batch: int, threads: int, seconds: float) -> float:
    """Clips per second of the backend alone on full batches of preprocessed clips."""
    backend = load_backend(model, threads=threads)
    views = prepare(data, backend.info.input_spec, PredictOptions(), VideoLimits(), 1).views
    batch = np.repeat(views, max_batch, axis=0)
    backend(batch)  # warm-up
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        backend(batch)
        calls += 1
    return calls * max_batch / (time.perf_counter() - start)


def load(url: str, data: bytes, clients: int, requests: int) -> dict[str, float]:
    latencies: list[float] = []
    statuses: list[int] = []
    server_timings: list[dict[str, float]] = []
    local = threading.local()  # one keep-alive connection per client thread

    def one(_: int) -> None:
        if not hasattr(local, "client"):
            local.client = httpx.Client(timeout=120)
        start = time.perf_counter()
        response = local.client.post(f"{url}/v1/predict", files={"file": ("clip.mp4", data, "video/mp4")})
        latencies.append(time.perf_counter() - start)
        statuses.append(response.status_code)
        if response.status_code == 200:
            server_timings.append(response.json()["timings_ms"])

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(requests)))
    elapsed = time.perf_counter() - start
    q = statistics.quantiles(latencies, n=100)
    return {
        "throughput": requests / elapsed,
        "p50": q[49] * 1e3,
        "p95": q[94] * 1e3,
        "p99": q[98] * 1e3,
        "5xx": sum(s >= 500 for s in statuses),
        "non200": sum(s != 200 for s in statuses),
        **{
            f"server_{key}": statistics.mean(t[key] for t in server_timings)
            for key in ("decode", "queue", "inference", "batch_clips")
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=200, help="requests per run (default: 200)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--threads", type=int, default=2, help="inference threads (default: 2)")
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "server_load.md")
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        x3d_s, how = _x3d_s_export(tmp)
        setups = [
            ("demo (x3d_xs_dcf 8x64², torch)", "demo", _clip(tmp, 96, 24), "96x96, 24 frames"),
            (f"x3d_s_dcf 13x160², {how}", x3d_s, _clip(tmp, 256, 36), "256x256, 36 frames"),
        ]
        for title, model, data, clip in setups:
            alone = model_only(model, data, args.max_batch, args.threads, seconds=10)
            server = start_server(
                tmp, "--model", model, "--threads", str(args.threads), "--max-batch", str(args.max_batch)
            )
            try:
                for clients in args.clients:
                    load(server.url, data, clients, min(20, args.requests))  # warm-up
                    result = load(server.url, data, clients, args.requests)
                    rows.append((title, clip, clients, result, alone))
                    print(title, clients, result, f"model alone {alone:.1f} clips/s")
            finally:
                stop_server(server)

    lines = [
        "# Server under load (loopback)",
        "",
        f"`python -m bench.server_load`, {datetime.date.today()}: {args.requests} requests per row, one H.264 "
        f"clip per request, server `--threads {args.threads} --max-batch {args.max_batch}` (2 decode threads), "
        "clients in this process.",
        "",
        f"Machine: {machine_description()}.",
        "",
        "| model | clip | clients | req/s | p50 ms | p95 ms | p99 ms | 5xx | mean decode / inference ms, clips per call "
        "| model alone clips/s | server / model |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for title, clip, clients, r, alone in rows:
        lines.append(
            f"| {title} | {clip} | {clients} | {r['throughput']:.1f} | {r['p50']:.0f} | {r['p95']:.0f} | "
            f"{r['p99']:.0f} | {r['5xx']:.0f} | {r['server_decode']:.1f} / {r['server_inference']:.1f}, "
            f"{r['server_batch_clips']:.1f} | {alone:.1f} | {r['throughput'] / alone:.2f} |"
        )
    lines.append("")
    write_results(args.out, lines)


if __name__ == "__main__":
    main()
