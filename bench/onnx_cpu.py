"""Exported X3D-S+DCF in ONNX Runtime on CPU: the portable graph vs the backbone without DCF.

The goal (issue #4): at X3D-S's 13x160^2 on 2 CPU threads, the portable DCF model takes at most
1.15x the backbone's time (the paper's multiply-adds grow 10%). Rows, measured side by side in one
process (alternating blocks of calls, medians):

* ONNX Runtime, x3d_s exported without DCF (the baseline);
* ONNX Runtime, x3d_s_dcf, portable graph (dcf.export.portable: MatMul rows + skew, mirrored -tau);
* ONNX Runtime, x3d_s_dcf with a naive expansion: 2L*K*K Slice/Mul/ReduceSum chains;
* PyTorch eager on the same threads, for both models (correlation on the compiled CPU kernel),
  timed after the ONNX Runtime rows.

The DCF blocks get random batch-norm scales, so their output is not the identity (a fresh block's
last scale is zero) and each graph's logits are checked against PyTorch before timing.

    python -m bench.onnx_cpu            # writes bench/results/onnx_cpu.md
"""

from __future__ import annotations

import argparse
import datetime
import math
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch
from onnx import helper, numpy_helper
from torch import nn

from bench.common import machine_description, median_times, write_results
from dcf.checkpoint import CheckpointConfig, load_checkpoint, save_checkpoint
from dcf.data.spec import InputSpec
from dcf.export.onnx_export import export_onnx
from dcf.export.portable import make_portable
from dcf.inference.backends import onnxruntime_session

FRAMES, SIZE, CLASSES = 13, 160, 174


def naive_correlation_nodes(
    x: str, y: str, kernel_size: int, temporal_range: int, elem_type: int, prefix: str, channels: int
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """The literal decomposition: per (tau, dy, dx) a Slice of the padded input, Mul, ReduceSum."""
    r, big_l = kernel_size // 2, temporal_range
    pad = r * big_l
    dtype = helper.tensor_dtype_to_np_dtype(elem_type)
    consts = [
        numpy_helper.from_array(np.array([0, 0, big_l, pad, pad] * 2, np.int64), f"{prefix}/pads"),
        numpy_helper.from_array(np.array([1], np.int64), f"{prefix}/axis1"),
        numpy_helper.from_array(np.array([2, 3, 4], np.int64), f"{prefix}/axes"),
        numpy_helper.from_array(np.array(math.sqrt(channels), dtype), f"{prefix}/sqrt_c"),
    ]
    nodes = [helper.make_node("Pad", [x, f"{prefix}/pads"], [f"{prefix}/padded"])]
    sums: list[str] = []
    offsets = [*range(-big_l, 0), *range(1, big_l + 1)]
    for tau in offsets:
        d = abs(tau)
        for ky in range(kernel_size):
            for kx in range(kernel_size):
                i = len(sums)
                dy, dx = (ky - r) * d, (kx - r) * d
                starts = [big_l + tau, pad + dy, pad + dx]
                ends = [
                    s - 2 * e if s < 2 * e else np.iinfo(np.int64).max
                    for s, e in zip(starts, (big_l, pad, pad), strict=True)
                ]
                consts += [
                    numpy_helper.from_array(np.array(starts, np.int64), f"{prefix}/s{i}"),
                    numpy_helper.from_array(np.array(ends, np.int64), f"{prefix}/e{i}"),
                ]
                nodes += [
                    helper.make_node("Slice", [f"{prefix}/padded", f"{prefix}/s{i}", f"{prefix}/e{i}", f"{prefix}/axes"], [f"{prefix}/p{i}"]),
                    helper.make_node("Mul", [x, f"{prefix}/p{i}"], [f"{prefix}/m{i}"]),
                    helper.make_node("ReduceSum", [f"{prefix}/m{i}", f"{prefix}/axis1"], [f"{prefix}/r{i}"], keepdims=1),
                ]  # fmt: skip
                sums.append(f"{prefix}/r{i}")
    nodes += [
        helper.make_node("Concat", sums, [f"{prefix}/cat"], axis=1),
        helper.make_node("Div", [f"{prefix}/cat", f"{prefix}/sqrt_c"], [y]),
    ]
    return nodes, consts


def random_bn_checkpoint(
    name: str, tmp: Path, frames: int = FRAMES, size: int = SIZE, classes: int = CLASSES
) -> nn.Module:
    """A checkpoint saved to ``tmp`` and loaded back, its batch-norm scales random so that the
    DCF blocks are not the identity."""
    config = CheckpointConfig(name, tuple(f"c{i}" for i in range(classes)), InputSpec.for_crop(frames, size))
    model = config.build()
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():  # DCF blocks that are not the identity
        if isinstance(module, nn.BatchNorm3d):
            module.weight.data = torch.rand(module.num_features, generator=generator) + 0.5
    save_checkpoint(tmp / f"{name}.safetensors", model, config)
    return load_checkpoint(tmp / f"{name}.safetensors")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "onnx_cpu.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        backbone, dcf_model = random_bn_checkpoint("x3d_s", tmp), random_bn_checkpoint("x3d_s_dcf", tmp)
        export_onnx(backbone, tmp / "backbone.onnx")
        export_onnx(dcf_model, tmp / "custom.onnx")
        custom = onnx.load(str(tmp / "custom.onnx"))
        onnx.save(make_portable(custom), str(tmp / "portable.onnx"))
        channels = {
            v.name: v.type.tensor_type.shape.dim[1].dim_value
            for v in custom.graph.value_info
            if len(v.type.tensor_type.shape.dim) == 5
        }

        def naive(x: str, y: str, k: int, big_l: int, elem_type: int, prefix: str):
            return naive_correlation_nodes(x, y, k, big_l, elem_type, prefix, channels[x])

        onnx.save(make_portable(custom, naive), str(tmp / "naive.onnx"))
        sessions = {
            name: onnxruntime_session(tmp / f"{name}.onnx", threads=args.threads)
            for name in ("backbone", "portable", "naive")
        }

        video = np.random.default_rng(1).standard_normal((1, 3, FRAMES, SIZE, SIZE), dtype=np.float32)
        tensor = torch.from_numpy(video)
        with torch.no_grad():
            reference = {"backbone": backbone(tensor).numpy(), "dcf": dcf_model(tensor).numpy()}
        errors = {}
        for name, session in sessions.items():
            expected = reference["backbone" if name == "backbone" else "dcf"]
            out = session.run(None, {"video": video})[0]
            errors[name] = float(np.abs(out - expected).max() / np.abs(expected).max())
            assert errors[name] < 1e-4, f"{name}: logits differ from PyTorch by {errors[name]:.2e} (relative)"

        def run(session: onnxruntime.InferenceSession):
            return lambda: session.run(None, {"video": video})

        def eager(model: nn.Module):
            def call() -> None:
                with torch.no_grad():
                    model(tensor)

            return call

        # Two phases, each side by side: PyTorch's OpenMP workers spin for a while after each call
        # and would steal the cores from an ONNX Runtime call right after it (and the reverse).
        times = median_times(
            {
                "ort backbone": run(sessions["backbone"]),
                "ort dcf portable": run(sessions["portable"]),
                "ort dcf naive": run(sessions["naive"]),
            },
            rounds=args.rounds,
            calls=3,
        )
        times |= median_times(
            {"torch backbone": eager(backbone), "torch dcf": eager(dcf_model)}, rounds=args.rounds, calls=3
        )

    base = times["ort backbone"]
    rows = [
        ("ONNX Runtime", "x3d_s (no DCF)", "ort backbone", errors["backbone"]),
        ("ONNX Runtime", "x3d_s_dcf, portable graph", "ort dcf portable", errors["portable"]),
        ("ONNX Runtime", "x3d_s_dcf, naive Slice/Mul/ReduceSum", "ort dcf naive", errors["naive"]),
        ("PyTorch eager", "x3d_s (no DCF)", "torch backbone", None),
        ("PyTorch eager", "x3d_s_dcf (compiled CPU kernel)", "torch dcf", None),
    ]
    lines = [
        "# Exported X3D-S+DCF on CPU (ONNX Runtime)",
        "",
        f"`python -m bench.onnx_cpu --threads {args.threads}`, {datetime.date.today()}, one clip 1x3x{FRAMES}x{SIZE}x{SIZE}, "
        f"{args.threads} threads (ONNX Runtime intra-op and torch), median of {args.rounds} rounds of 3 calls, "
        "the ONNX Runtime rows measured side by side in one process, then the PyTorch rows (so that neither "
        "runtime's idle-spinning threads slow the other).",
        "",
        f"Machine: {machine_description()}; onnxruntime {onnxruntime.__version__}, onnx {onnx.__version__}.",
        "",
        "| runtime | model | median ms | vs ONNX Runtime backbone | logits vs PyTorch (max rel) |",
        "|---|---|---:|---:|---:|",
    ]
    for runtime, model_name, key, error in rows:
        err = f"{error:.1e}" if error is not None else "-"
        lines.append(
            f"| {runtime} | {model_name} | {times[key] * 1e3:.1f} | {times[key] / base:.3f}x | {err} |"
        )
    lines += [
        "",
        "Goal: portable x3d_s_dcf <= 1.15x the backbone in ONNX Runtime. "
        f"Measured: **{times['ort dcf portable'] / base:.3f}x**.",
        "",
    ]
    write_results(args.out, lines)


if __name__ == "__main__":
    main()
