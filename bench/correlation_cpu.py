"""Correlation op on CPU: the compiled kernel vs the naive loop, forward and backward; and the
spatial pyramid's pooling: the compiled step vs PyTorch's ``avg_pool3d``.

The naive loop is ``dcf.ops.correlation_reference``: 2L*K*K shifted multiply-and-sum passes in
plain PyTorch. Shapes are the stage-2 inputs of the paper's networks (K=5, L=2):
X3D-S 13x160^2 -> (1, 12, 13, 40, 40); R(2+1)D-50 8x224^2 -> (1, 64, 8, 56, 56).

The pyramid table times, per network and batch, the poolings one inference runs (the volumes a
DCF network's ``pool_pyramid`` meets, taken from the network at its crop), each way, and the
memory traffic they need (each volume read once, its pooled quarter written once) as GB/s, beside
the time of reading the same volumes once (``torch.sum``), the floor of any pooling.

    python bench/correlation_cpu.py            # writes bench/results/correlation_cpu.md
"""

from __future__ import annotations

import argparse
import datetime
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import torch
import torch.nn.functional as F

from bench.common import machine_description, median_times, write_results
from dcf.models import build_model, dcf_net
from dcf.models.dcf_net import pool_pyramid
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


# The networks whose pyramids are timed, at their crops (frames, size).
PYRAMIDS = {"x3d_s_dcf": (13, 160), "r2plus1d_r50_dcf": (8, 224)}


def _pooled_volumes(name: str, frames: int, size: int) -> list[torch.Tensor]:
    """The volumes ``pool_pyramid`` pools in one inference of ``name`` at batch 1, in order,
    recorded from the network's own forward."""
    model = build_model(name, num_classes=400).eval()
    met: list[torch.Tensor] = []

    def recording(volume: torch.Tensor) -> torch.Tensor:
        met.append(volume.clone())
        return pool_pyramid(volume)

    with torch.inference_mode(), mock.patch.object(dcf_net, "pool_pyramid", recording):
        model(torch.randn(1, 3, frames, size, size))
    return met


def _pyramid_times(volumes: list[torch.Tensor], rounds: int) -> dict[str, float]:
    def pools(step: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[], list[torch.Tensor]]:
        return lambda: [step(v) for v in volumes]

    def avg_pool3d(v: torch.Tensor) -> torch.Tensor:
        return F.avg_pool3d(v, (1, 2, 2), (1, 2, 2), ceil_mode=bool(v.shape[-1] % 2 or v.shape[-2] % 2))

    with torch.inference_mode():
        return median_times(
            {
                "avg_pool3d": pools(avg_pool3d),
                "kernel": pools(_cpu_kernel.pyramid_step),
                "read": pools(torch.sum),
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

    pyramid_rows = []
    for name, (frames, size) in PYRAMIDS.items():
        volumes = _pooled_volumes(name, frames, size)
        for batch in (1, 8):
            batched = [v.expand(batch, *v.shape[1:]).contiguous() for v in volumes]
            times = _pyramid_times(batched, args.rounds)
            traffic = sum(
                v.nelement() * v.element_size() * 5 / 4 for v in batched
            )  # read + a quarter written
            pyramid_rows.append((name, batch, [list(v.shape) for v in volumes], times, traffic))
            print(
                f"{name} pyramid, batch {batch}: avg_pool3d {times['avg_pool3d'] * 1e3:.2f} ms, "
                f"kernel {times['kernel'] * 1e3:.2f} ms"
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
    lines += [
        "",
        "## The spatial pyramid's pooling: compiled step vs avg_pool3d",
        "",
        "The 2x2 average poolings one inference of each network runs (`pool_pyramid`: the volumes listed, "
        "at batch 1 and at batch 8), float32, through PyTorch's `avg_pool3d` and through the compiled step "
        "(`_cpu_kernel.pyramid_step`, what `pool_pyramid` runs at inference on the CPU); per-inference median "
        f"over {args.rounds} alternating blocks of 5. GB/s: the bytes each volume must move (read once, its "
        "quarter written once) over the time. Floor: reading the same volumes once (`torch.sum`, side by side).",
        "",
        "| network (volumes pooled at batch 1) | batch | avg_pool3d (ms) | kernel (ms) | speed-up "
        "| avg_pool3d GB/s | kernel GB/s | floor: read once (ms) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, batch, shapes, times, traffic in pyramid_rows:
        lines.append(
            f"| {name} `{shapes}` | {batch} | {times['avg_pool3d'] * 1e3:.2f} | {times['kernel'] * 1e3:.2f} "
            f"| {times['avg_pool3d'] / times['kernel']:.1f}x | {traffic / times['avg_pool3d'] / 1e9:.1f} "
            f"| {traffic / times['kernel'] / 1e9:.1f} | {times['read'] * 1e3:.2f} |"
        )
    write_results(args.out, lines)


if __name__ == "__main__":
    main()
