"""The CPU runtimes side by side: PyTorch eager, ONNX Runtime and OpenVINO, with and without DCF.

For X3D-S at 13x160^2 and R(2+1)D-50 at 8x224^2, each backbone and its DCF network, at batch 1
and 8, through the backends the server uses (:func:`dcf.inference.backends.load_backend`):

* PyTorch eager (the checkpoint; correlation on the compiled CPU kernel);
* ONNX Runtime on the custom-node export (the correlation on the compiled CPU kernel through the
  op library, :mod:`dcf.export.onnxruntime_op`; it must be built) and on the portable export
  (standard ops);
* OpenVINO, float32, on the custom-node export (the correlation on the compiled CPU kernel in the
  C++ extension, :mod:`dcf.export.openvino_op`; it must build; with the fusions the backend
  applies, ``fuse_correlations``) and on the portable export; and bf16 on the custom-node export,
  for its error.

The DCF blocks get random batch-norm scales (a fresh block's last scale is zero, which would make
it the identity) and every backend's logits are compared with PyTorch's before timing. Each
runtime is timed in its own phase (their idle-spinning worker threads would steal the cores from
each other), its models alternating call by call, so the DCF/backbone ratio of one runtime is
measured side by side; median and quartiles over the rounds.

    python -m bench.cpu_runtimes            # writes bench/results/cpu_runtimes.md
"""

from __future__ import annotations

import argparse
import datetime
import functools
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import openvino
import torch

from bench.common import machine_description, write_results
from bench.onnx_cpu import random_bn_checkpoint
from dcf.export.onnx_export import export_onnx
from dcf.export.openvino_op import compiled_extension
from dcf.inference.backends import Backend, BackendName, ComputePrecision, load_backend

CLASSES = 400
MODELS = {"x3d_s": (13, 160), "r2plus1d_r50": (8, 224)}
RUNS: dict[str, tuple[BackendName, str, ComputePrecision]] = {  # row name -> (backend, flavour, precision)
    "PyTorch eager": ("torch", "checkpoint", "fp32"),
    "ONNX Runtime (custom op, CPU kernel)": ("onnxruntime", "custom", "fp32"),
    "ONNX Runtime (portable)": ("onnxruntime", "portable", "fp32"),
    "OpenVINO (custom op, C++ extension)": ("openvino", "custom", "fp32"),
    "OpenVINO (portable)": ("openvino", "portable", "fp32"),
}


def _files(name: str, frames: int, size: int, tmp: Path) -> dict[str, Path]:
    """A checkpoint with random batch-norm scales and its two exports (batch dynamic)."""
    model = random_bn_checkpoint(name, tmp, frames, size, CLASSES)
    files = {"checkpoint": tmp / f"{name}.safetensors"}
    for flavour in ("custom", "portable"):
        files[flavour] = tmp / f"{name}.{flavour}.onnx"
        export_onnx(model, files[flavour], portable=flavour == "portable")
    return files


def timed(fns: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Seconds per call of each function, alternating call by call after two warm-up calls."""
    for fn in fns.values():
        fn(), fn()
    times: dict[str, list[float]] = {key: [] for key in fns}
    for _ in range(rounds):
        for key, fn in fns.items():
            started = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - started)
    return times


def quartiles(values: np.ndarray) -> str:
    return f"{np.median(values):.1f} ({np.percentile(values, 25):.1f}-{np.percentile(values, 75):.1f})"


def parse_arguments(description: str, rounds: int, results: str) -> argparse.Namespace:
    """The command line of the CPU benchmarks on MODELS (this one and ``bench.openvino_fusion``),
    after checking that the OpenVINO extension they time builds."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument(
        "--models", nargs="+", choices=list(MODELS), default=list(MODELS), help="backbones to time"
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / results)
    args = parser.parse_args()
    if compiled_extension() is None:
        raise SystemExit("the OpenVINO correlation extension did not build (see the warning above)")
    return args


def main() -> None:
    args = parse_arguments(__doc__, 9, "cpu_runtimes.md")
    torch.set_num_threads(args.threads)

    rows: list[str] = []
    errors: list[str] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for base in args.models:
            frames, size = MODELS[base]
            files = {name: _files(name, frames, size, tmp) for name in (base, f"{base}_dcf")}
            backends: dict[tuple[str, str], Backend] = {
                (run, name): load_backend(
                    files[name][flavour], backend, threads=args.threads, precision=precision
                )
                for run, (backend, flavour, precision) in RUNS.items()
                for name in files
            }
            rng = np.random.default_rng(1)
            for batch in args.batches:
                video = rng.standard_normal((batch, 3, frames, size, size), dtype=np.float32)
                expected = {name: backends[("PyTorch eager", name)](video) for name in files}
                for (run, name), backend in backends.items():
                    if run != "PyTorch eager" and batch == args.batches[0]:
                        got = backend(video)
                        rel = np.abs(got - expected[name]).max() / np.abs(expected[name]).max()
                        assert rel < 1e-4, f"{run} {name}: logits differ from PyTorch by {rel:.1e}"
                        errors.append(f"| {name} | {run} | fp32 | {rel:.1e} |")
                if batch == args.batches[0]:
                    bf16 = load_backend(
                        files[f"{base}_dcf"]["custom"], "openvino", threads=args.threads, precision="bf16"
                    )
                    got = bf16(video)
                    rel = np.abs(got - expected[f"{base}_dcf"]).max() / np.abs(expected[f"{base}_dcf"]).max()
                    errors.append(
                        f"| {base}_dcf | OpenVINO (custom op) | {bf16.info.precision} asked bf16 | {rel:.1e} |"
                    )
                for run in RUNS:
                    times = timed(
                        {name: functools.partial(backends[(run, name)], video) for name in files}, args.rounds
                    )
                    (b, d) = (np.asarray(times[n]) * 1e3 for n in files)
                    ratio = d / b  # per round: the two calls of a round are neighbours
                    rows.append(
                        f"| {base} {frames}x{size}^2 | {batch} | {run} | {quartiles(b)} | {quartiles(d)} | "
                        f"{np.median(ratio):.3f}x ({np.percentile(ratio, 25):.2f}-{np.percentile(ratio, 75):.2f}) |"
                    )
                    print(rows[-1], flush=True)

    lines = [
        "# CPU runtimes: PyTorch eager, ONNX Runtime, OpenVINO, with and without DCF",
        "",
        f"`python -m bench.cpu_runtimes {' '.join(sys.argv[1:])}`, {datetime.date.today()}. "
        f"{args.threads} threads in every runtime, float32, 400 classes, random input; each runtime in its own phase, "
        "its backbone and DCF models alternating call by call; median (quartiles) of the rounds in ms; the "
        "ratio is DCF / backbone per round.",
        "",
        f"Machine: {machine_description()}; onnxruntime {onnxruntime.__version__}, OpenVINO "
        f"{openvino.get_version().split('-')[0]}, onnx {onnx.__version__}.",
        "",
        "| model | batch | runtime | backbone ms | with DCF ms | DCF overhead |",
        "|---|---:|---|---:|---:|---:|",
        *rows,
        "",
        f"Logits against PyTorch (max relative error, batch {args.batches[0]}):",
        "",
        "| model | runtime | precision | max rel |",
        "|---|---|---|---:|",
        *errors,
        "",
    ]
    write_results(args.out, lines)


if __name__ == "__main__":
    main()
