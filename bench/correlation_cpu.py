"""Correlation op on CPU: the compiled kernel vs the naive loop, forward and backward.

The naive loop is ``dcf.ops.correlation_reference``: 2L*K*K shifted multiply-and-sum passes in
plain PyTorch. Shapes are the stage-2 inputs of the paper's networks (K=5, L=2):
X3D-S 13x160^2 -> (1, 12, 13, 40, 40); R(2+1)D-50 8x224^2 -> (1, 64, 8, 56, 56).

    python bench/correlation_cpu.py            # writes bench/results/correlation_cpu.md
"""

from __future__ import annotations

import argparse
import datetime
from pathlib import Path

import torch

from bench.common import machine_description, median_times, write_results
from dcf.ops import _cpu_kernel, correlation, correlation_reference

SHAPES = {
    "X3D-S stage 2": (1, 12, 13, 40, 40),
    "R(2+1)D-50 stage 2": (1, 64, 8, 56, 56),
}


def _forward_times(x: torch.Tensor, rounds: int) -> dict[str, float]:
    return median_times(
        {"naive": lambda: correlation_reference(x, 5, 2), "fast": lambda: correlation(x, 5, 2)}, rounds
    )


def _forward_backward_times(x: torch.Tensor, rounds: int) -> dict[str, float]:
    x = x.clone().requires_grad_(True)
    grad = torch.randn(x.shape[0], 100, *x.shape[2:])
    return median_times(
        {
            "naive": lambda: torch.autograd.grad(correlation_reference(x, 5, 2), x, grad),
            "fast": lambda: torch.autograd.grad(correlation(x, 5, 2), x, grad),
        },
        rounds,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    parser.add_argument(
        "--rounds", type=int, default=20, help="alternating timed blocks of 5 calls (default: 20)"
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "correlation_cpu.md")
    args = parser.parse_args()
    if not _cpu_kernel.available():
        raise SystemExit("the compiled CPU kernel is not available; nothing to compare")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    rows = []
    for label, shape in SHAPES.items():
        x = torch.randn(shape)
        fwd = _forward_times(x, args.rounds)
        bwd = _forward_backward_times(x, args.rounds)
        rows.append((label, shape, fwd, bwd))
        print(
            f"{label} {shape}: forward naive {fwd['naive'] * 1e3:.2f} ms, fast {fwd['fast'] * 1e3:.2f} ms "
            f"({fwd['naive'] / fwd['fast']:.1f}x); forward+backward naive {bwd['naive'] * 1e3:.2f} ms, "
            f"fast {bwd['fast'] * 1e3:.2f} ms ({bwd['naive'] / bwd['fast']:.1f}x)"
        )

    lines = [
        "# Correlation op on CPU: compiled kernel vs naive loop",
        "",
        f"Machine: {machine_description()}.",
        f"Date: {datetime.date.today().isoformat()}. Command: `python bench/correlation_cpu.py "
        f"--threads {args.threads} --rounds {args.rounds}`.",
        "K=5, L=2, float32, batch 1. Per-call median over "
        f'{args.rounds} alternating blocks of 5 back-to-back calls. "naive" = `correlation_reference` (2L*K*K shifted '
        'multiply-and-sum passes); "fast" = `dcf.ops.correlation` (compiled kernel). The backward '
        "columns time forward + backward (autograd through the naive loop vs the compiled backward).",
        "",
        "| shape | naive fwd (ms) | fast fwd (ms) | fwd speed-up | naive fwd+bwd (ms) | fast fwd+bwd (ms) "
        "| fwd+bwd speed-up | fast bwd / fast fwd |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, shape, fwd, bwd in rows:
        lines.append(
            f"| {label} `{list(shape)}` | {fwd['naive'] * 1e3:.2f} | {fwd['fast'] * 1e3:.2f} "
            f"| {fwd['naive'] / fwd['fast']:.1f}x | {bwd['naive'] * 1e3:.2f} | {bwd['fast'] * 1e3:.2f} "
            f"| {bwd['naive'] / bwd['fast']:.1f}x | {(bwd['fast'] - fwd['fast']) / fwd['fast']:.1f}x |"
        )
    write_results(args.out, lines)


if __name__ == "__main__":
    main()
