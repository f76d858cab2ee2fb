"""The CUDA correlation kernel on a GPU: against the naive PyTorch loop and the bandwidth floor.

At the paper's stage shapes (K=5; L=2 at stages 2-3, 1 at stage 4), batch 1 and 8, float32 and
float16. The floor is the time to read the input once and write the output once at the
device-to-device copy bandwidth measured in the same run; the goal (issue #5) is >= 50% of the
floor at batch 8. Build the kernel first (one line):

    cmake -S trt_plugins -B trt_plugins/build && cmake --build trt_plugins/build -j && python -m bench.correlation_cuda
"""

from __future__ import annotations

import argparse
import datetime
import statistics
from pathlib import Path

import torch

from bench.common import write_results
from dcf.ops import _cuda_kernel, correlation, correlation_reference

# (name, C, T, H, W, L) of the DCF inputs (channels already reduced) at 13x160^2 / 16x224^2 / 8x224^2.
STAGES = [
    ("X3D-S stage 2", 12, 13, 40, 40, 2),
    ("X3D-S stage 3", 24, 13, 20, 20, 2),
    ("X3D-S stage 4", 48, 13, 10, 10, 1),
    ("X3D-M stage 2", 12, 16, 56, 56, 2),
    ("X3D-M stage 3", 24, 16, 28, 28, 2),
    ("R(2+1)D-50 stage 2", 64, 8, 56, 56, 2),
    ("R(2+1)D-50 stage 3", 128, 8, 28, 28, 2),
    ("R(2+1)D-50 stage 4", 256, 8, 14, 14, 1),
]


def cuda_time(fn, repeats: int = 20) -> float:
    """Median seconds of ``fn`` by CUDA events (after warm-up)."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return statistics.median(times)


def copy_bandwidth() -> float:
    """Bytes per second of a large device-to-device copy (read + write)."""
    a = torch.empty(256 * 2**20, dtype=torch.uint8, device="cuda")
    b = torch.empty_like(a)
    return 2 * a.numel() / cuda_time(lambda: b.copy_(a))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "correlation_cuda.md")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU: this benchmark runs on a GPU machine")
    if not _cuda_kernel.available():
        raise SystemExit(
            "the CUDA kernel is not built: cmake -S trt_plugins -B trt_plugins/build && cmake --build trt_plugins/build -j"
        )
    bandwidth = copy_bandwidth()
    rows = []
    for name, c, t, h, w, big_l in STAGES:
        for batch in (1, 8):
            for dtype in (torch.float32, torch.float16):
                x = torch.randn(batch, c, t, h, w, device="cuda", dtype=dtype)
                kernel = cuda_time(lambda x=x, big_l=big_l: correlation(x, 5, big_l))
                naive = cuda_time(lambda x=x, big_l=big_l: correlation_reference(x, 5, big_l), repeats=5)
                element = x.element_size()
                floor = (x.numel() + x.numel() // c * 25 * 2 * big_l) * element / bandwidth
                rows.append((name, batch, str(dtype).removeprefix("torch."), kernel, naive, floor))
                print(rows[-1])
    device = torch.cuda.get_device_name()
    lines = [
        "# CUDA correlation kernel",
        "",
        f"`python -m bench.correlation_cuda`, {datetime.date.today()}, {device}, torch {torch.__version__}; "
        f"K=5; median of CUDA-event timings; copy bandwidth measured {bandwidth / 1e9:.0f} GB/s.",
        "",
        "| stage | batch | dtype | kernel ms | naive ms | speed-up | floor ms | % of floor |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for name, batch, dtype_name, kernel, naive, floor in rows:
        lines.append(
            f"| {name} | {batch} | {dtype_name} | {kernel * 1e3:.3f} | {naive * 1e3:.2f} | {naive / kernel:.1f}x | "
            f"{floor * 1e3:.3f} | {100 * floor / kernel:.0f}% |"
        )
    lines.append("")
    write_results(args.out, lines)


if __name__ == "__main__":
    main()
