"""Shared helpers for the benchmarks: the machine's name and robust timing."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch


def machine_description() -> str:
    """CPU model, logical cores, threads used, OS, Python and torch versions, in one line."""
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{model}, {os.cpu_count()} logical cores, {torch.get_num_threads()} torch threads, "
        f"{platform.system()} {platform.machine()}, Python {platform.python_version()}, "
        f"torch {torch.__version__}"
    )


def median_times(
    fns: dict[str, Callable[[], object]], rounds: int, calls: int = 5, warmup: int = 3
) -> dict[str, float]:
    """Median seconds per call of each function, side by side in one process.

    Each round times a block of ``calls`` back-to-back calls of every function in turn (steady
    state, as ``timeit`` does); alternating the blocks spreads any drift of the machine over all
    functions alike. Returns the median over rounds of the per-call time.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            samples[name].append((time.perf_counter() - start) / calls)
    return {name: statistics.median(values) for name, values in samples.items()}


def write_results(path: Path, lines: list[str]) -> None:
    """Writes a results table (Markdown lines) to ``path`` and prints it."""
    text = "\n".join(lines) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(text, end="", flush=True)
    print(f"wrote {path}", flush=True)
