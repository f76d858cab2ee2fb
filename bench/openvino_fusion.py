"""What the fusions of :func:`dcf.export.openvino_op.fuse_correlations` buy in OpenVINO, side by side.

For each backbone (X3D-S at 13x160^2, R(2+1)D-50 at 8x224^2) and batch, four compiled models of the
same custom-node exports, their calls alternating round by round:

* the backbone;
* its DCF network with no fusion (the correlation operation alone, OpenVINO's own poolings and
  convolutions reading the volume);
* the pyramid's poolings fused (``convolutions=False``);
* everything fused (what the ``openvino`` backend runs): the pyramid, and the DCF block's 1x1x1
  convolution of its volume where it is narrower than the volume (``DCFCorrelationConv``).

Every DCF variant's logits are checked against the unfused one first; the DCF overhead is each
variant / backbone per round (median and quartiles), float32 on ``--threads`` threads.

    python -m bench.openvino_fusion     # writes bench/results/openvino_fusion.md
"""

from __future__ import annotations

import datetime
import functools
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import openvino

from bench.common import machine_description, write_results
from bench.cpu_runtimes import CLASSES, MODELS, parse_arguments, quartiles, timed
from bench.onnx_cpu import random_bn_checkpoint
from dcf.export.onnx_export import export_onnx
from dcf.export.openvino_op import fuse_correlations, openvino_core

VARIANTS = ("no fusion", "pyramid fused", "pyramid and convolution fused")


def _requests(
    core: openvino.Core, backbone: Path, dcf: Path, threads: int
) -> tuple[dict[str, Any], list[str]]:
    """The four compiled models' infer requests, and what each DCF variant fused."""
    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads}
    requests = {
        "backbone": core.compile_model(core.read_model(str(backbone)), "CPU", config).create_infer_request()
    }
    fused: list[str] = []
    for variant in VARIANTS:
        model = core.read_model(str(dcf))
        if variant != "no fusion":
            done = fuse_correlations(model, convolutions=variant == VARIANTS[2])
            fused.append(f"{variant}: {done.pyramids} pyramids, {done.convolutions} convolutions")
        requests[variant] = core.compile_model(model, "CPU", config).create_infer_request()
    return requests, fused


def main() -> None:
    args = parse_arguments(__doc__, 15, "openvino_fusion.md")
    core = openvino_core()
    rows: list[str] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for base in args.models:
            frames, size = MODELS[base]
            files = {}
            for name in (base, f"{base}_dcf"):
                files[name] = tmp / f"{name}.onnx"
                export_onnx(random_bn_checkpoint(name, tmp, frames, size, CLASSES), files[name])
            requests, fused = _requests(core, files[base], files[f"{base}_dcf"], args.threads)
            notes.append(f"- {base}_dcf: " + "; ".join(fused))
            rng = np.random.default_rng(1)
            for batch in args.batches:
                video = rng.standard_normal((batch, 3, frames, size, size), dtype=np.float32)
                logits = {key: np.array(r.infer({0: video}).to_tuple()[0]) for key, r in requests.items()}
                for variant in VARIANTS[1:]:
                    rel = (
                        np.abs(logits[variant] - logits["no fusion"]).max()
                        / np.abs(logits["no fusion"]).max()
                    )
                    assert rel < 1e-5, (
                        f"{base} {variant}: logits differ from the unfused graph's by {rel:.1e}"
                    )
                    notes.append(
                        f"- {base}_dcf batch {batch}, {variant} against no fusion: max rel {rel:.1e}"
                    )
                times = timed(
                    {key: functools.partial(r.infer, {0: video}) for key, r in requests.items()}, args.rounds
                )
                backbone = np.asarray(times["backbone"]) * 1e3
                for variant in VARIANTS:
                    ms = np.asarray(times[variant]) * 1e3
                    ratio = ms / backbone
                    rows.append(
                        f"| {base} {frames}x{size}^2 | {batch} | {variant} | {quartiles(backbone)} | {quartiles(ms)} | "
                        f"{np.median(ratio):.3f}x ({np.percentile(ratio, 25):.3f}-{np.percentile(ratio, 75):.3f}) |"
                    )
                    print(rows[-1], flush=True)
    lines = [
        "# OpenVINO: what fusing the correlation's readers buys",
        "",
        f"`python -m bench.openvino_fusion {' '.join(sys.argv[1:])}`, {datetime.date.today()}. "
        f"OpenVINO {openvino.get_version().split('-')[0]}, float32, {args.threads} threads, custom-node exports with "
        "random batch-norm scales, random input; the backbone and the three DCF variants alternating call by call; "
        "median (quartiles) of the rounds in ms; the overhead is variant / backbone per round.",
        "",
        f"Machine: {machine_description()}.",
        "",
        "| model | batch | DCF variant | backbone ms | DCF ms | DCF overhead |",
        "|---|---:|---|---:|---:|---:|",
        *rows,
        "",
        "What each variant fused, and its logits against the unfused graph's:",
        "",
        *notes,
        "",
    ]
    write_results(args.out, lines)


if __name__ == "__main__":
    main()
