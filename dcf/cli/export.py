"""``dcf export``: ONNX files, TensorRT engines, and their verification against PyTorch."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

DESCRIPTION = """\
Export a checkpoint for deployment and check the result.

  onnx       one dcf::DCFCorrelation node per correlation, for TensorRT with the plugin and
             OpenVINO on CPU (the compiled CPU kernel);
             --portable writes the op in standard ONNX ops for any ONNX runtime (CPU or GPU)
  tensorrt   build a TensorRT engine from an exported ONNX file (needs TensorRT and a GPU)
  verify     compare exported models with PyTorch on random and decoded clips
  triton     a model repository for NVIDIA Triton Inference Server

examples:
  dcf export onnx --checkpoint demo --out demo.onnx
  dcf export onnx --checkpoint demo --out demo.portable.onnx --portable --dynamic-frames
  dcf export verify --checkpoint demo --onnx demo.onnx --onnx demo.portable.onnx
  dcf export tensorrt --onnx demo.onnx --out demo.plan --plugin trt_plugins/build/libdcf_trt_plugins.so
  dcf export triton --onnx demo.portable.onnx --out model_repository
"""

TRITON_DESCRIPTION = """\
Write a model repository for NVIDIA Triton Inference Server: REPO/NAME/config.pbtxt (dynamic
batching, instance group), REPO/NAME/1/model.onnx or model.plan, labels.txt and dcf.json (the
input spec). Triton serves batches of preprocessed clips; decoding and sampling stay in dcf serve.
ONNX files must be portable (Triton's ONNX Runtime backend has no DCFCorrelation kernel); engines
need the plugin preloaded in tritonserver (LD_PRELOAD=libdcf_trt_plugins_preload.so, see README).

examples:
  dcf export triton --onnx demo.portable.onnx --out model_repository --kind cpu
  dcf export triton --engine demo.plan --out model_repository --max-batch 16 --instances 2
"""

ONNX_DESCRIPTION = """\
Export a checkpoint to ONNX. The input 'video' is (batch, 3, frames, height, width), float32,
normalised as the checkpoint's input spec says; the output 'logits' is (batch, classes). The batch
axis is always dynamic. The file carries its labels, input spec, architecture and the dcf version
as metadata, so a server needs nothing else.

examples:
  dcf export onnx --checkpoint demo --out demo.onnx                       custom node: TensorRT, OpenVINO
  dcf export onnx --checkpoint demo --out demo.portable.onnx --portable   any ONNX runtime
  dcf export onnx --checkpoint run/best.safetensors --out m.onnx --precision fp16 --dynamic-frames
"""

TENSORRT_DESCRIPTION = """\
Build a TensorRT engine (10.x or 11.x) from a file written by 'dcf export onnx'. Precision follows
the ONNX file (export with --precision fp16 for a half-precision engine): the network is strongly
typed, as TensorRT 11 requires. Writes PLAN and PLAN.json (labels, input spec, TensorRT and plugin
versions), which a server reads to refuse a mismatched engine.

examples:
  dcf export tensorrt --onnx demo.onnx --out demo.plan --plugin trt_plugins/build/libdcf_trt_plugins.so
  dcf export tensorrt --onnx m.onnx --out m.plan --plugin LIB --batch 1:8:32 --frames 8:16:32 \\
      --timing-cache trt.cache
"""

VERIFY_DESCRIPTION = """\
Run the checkpoint in PyTorch (float32) and each exported model on the same inputs: random clips
(another seed than the export traced with; other frame counts and sizes where the file is dynamic)
and one decoded video clip (--video, or a synthetic clip encoded to H.264 and decoded back).
Prints max abs / rel logit error and top-1 agreement per runtime and input, and passes or fails
each against its tolerance (fp32: rel <= 1e-4; fp16: rel <= 2e-2; bf16: rel <= 5e-2). Files run
in ONNX Runtime (custom-node files with the dcf op library, on the compiled CPU kernel, where it is
built), and custom-node files also in the onnx reference evaluator with a Python DCFCorrelation
(slow, independent of the kernel); with --openvino every file runs in OpenVINO too (custom-node files with
the compiled CPU kernel), at --openvino-precision; engines run in TensorRT. Exits 1 when any check fails.

examples:
  dcf export verify --checkpoint demo --onnx demo.onnx --onnx demo.portable.onnx
  dcf export verify --checkpoint demo --onnx demo.onnx --openvino --openvino-precision bf16
  dcf export verify --checkpoint demo --engine demo.plan --plugin LIB --video clip.mp4
"""


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export to ONNX, TensorRT or Triton, and verify",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="export_command", metavar="TARGET", required=True)
    raw = argparse.RawDescriptionHelpFormatter

    onnx_parser = commands.add_parser(
        "onnx", help="export to ONNX", description=ONNX_DESCRIPTION, formatter_class=raw
    )
    onnx_parser.add_argument("--checkpoint", required=True, help="checkpoint (.safetensors), or 'demo'")
    onnx_parser.add_argument("--out", type=Path, required=True, help="ONNX file to write")
    onnx_parser.add_argument(
        "--portable",
        action="store_true",
        help="write the correlation in standard ONNX ops (no plugin needed)",
    )
    onnx_parser.add_argument(
        "--precision", choices=["fp32", "fp16"], default="fp32", help="weights and compute (default: fp32)"
    )
    onnx_parser.add_argument("--dynamic-frames", action="store_true", help="make the frames axis dynamic")
    onnx_parser.add_argument(
        "--dynamic-size", action="store_true", help="make height and width dynamic (multiples of 32)"
    )
    onnx_parser.add_argument("--opset", type=int, default=18, help="ONNX opset (default: 18)")
    onnx_parser.set_defaults(run=run_onnx)

    trt_parser = commands.add_parser(
        "tensorrt", help="build a TensorRT engine", description=TENSORRT_DESCRIPTION, formatter_class=raw
    )
    trt_parser.add_argument("--onnx", type=Path, required=True, help="file from 'dcf export onnx'")
    trt_parser.add_argument("--out", type=Path, required=True, help="engine (.plan) to write")
    trt_parser.add_argument(
        "--plugin", type=Path, help="DCFCorrelation plugin library (needed for custom-node files)"
    )
    trt_parser.add_argument(
        "--batch", default="1:1:8", help="batch MIN:OPT:MAX of the profile (default: 1:1:8)"
    )
    trt_parser.add_argument(
        "--frames", help="frames MIN:OPT:MAX (for --dynamic-frames exports; default 2:T:2T)"
    )
    trt_parser.add_argument(
        "--size",
        help="height and width MIN:OPT:MAX, multiples of 32 (for --dynamic-size exports; default 64:S:2S)",
    )
    trt_parser.add_argument("--timing-cache", type=Path, help="timing cache file to read and update")
    trt_parser.add_argument(
        "--workspace", type=float, default=4.0, help="builder workspace in GiB (default: 4)"
    )
    trt_parser.set_defaults(run=run_tensorrt)

    verify_parser = commands.add_parser(
        "verify",
        help="compare exported models with PyTorch",
        description=VERIFY_DESCRIPTION,
        formatter_class=raw,
    )
    verify_parser.add_argument(
        "--checkpoint", required=True, help="the checkpoint the files were exported from"
    )
    verify_parser.add_argument(
        "--onnx", type=Path, action="append", default=[], help="exported ONNX file (repeatable)"
    )
    verify_parser.add_argument("--engine", type=Path, help="TensorRT engine from 'dcf export tensorrt'")
    verify_parser.add_argument("--plugin", type=Path, help="plugin library, for --engine")
    verify_parser.add_argument(
        "--video", type=Path, help="video for the decoded-clip check (default: synthetic)"
    )
    verify_parser.add_argument("--seed", type=int, default=1, help="seed of the random clips (default: 1)")
    verify_parser.add_argument(
        "--openvino",
        action="store_true",
        help="also run every file in OpenVINO (the openvino extra; custom-node files with the CPU kernel)",
    )
    verify_parser.add_argument(
        "--openvino-precision",
        default="fp32",
        choices=["fp32", "bf16", "fp16"],
        help="OpenVINO's compute precision, checked against its tolerance (default: fp32)",
    )
    verify_parser.add_argument(
        "--threads", type=int, default=0, help="ONNX Runtime and OpenVINO threads (default: all)"
    )
    verify_parser.add_argument("--json", action="store_true", help="print the results as JSON")
    verify_parser.set_defaults(run=run_verify)

    triton_parser = commands.add_parser(
        "triton", help="write a Triton model repository", description=TRITON_DESCRIPTION, formatter_class=raw
    )
    triton_parser.add_argument("--onnx", type=Path, help="portable ONNX file (onnxruntime backend)")
    triton_parser.add_argument(
        "--engine", type=Path, help="TensorRT engine with its .json sidecar (tensorrt backend)"
    )
    triton_parser.add_argument("--out", type=Path, required=True, help="model repository folder")
    triton_parser.add_argument("--name", help="model name (default: the file's stem)")
    triton_parser.add_argument("--max-batch", type=int, default=8, help="max_batch_size (default: 8)")
    triton_parser.add_argument(
        "--max-queue-delay-us", type=int, default=5000, help="dynamic batching delay (default: 5000)"
    )
    triton_parser.add_argument("--instances", type=int, default=1, help="model instances (default: 1)")
    triton_parser.add_argument(
        "--kind", choices=["gpu", "cpu"], default="gpu", help="instance kind (default: gpu)"
    )
    triton_parser.set_defaults(run=run_triton)


def run_onnx(args: argparse.Namespace) -> int:
    from dcf.checkpoint import load_checkpoint
    from dcf.export.onnx_export import export_onnx

    model = load_checkpoint(args.checkpoint)
    metadata = export_onnx(
        model,
        args.out,
        portable=args.portable,
        precision=args.precision,
        dynamic_frames=args.dynamic_frames,
        dynamic_size=args.dynamic_size,
        opset=args.opset,
    )
    print(
        f"wrote {args.out}: {metadata.architecture}, {len(metadata.classes)} classes, {metadata.flavour}, "
        f"{metadata.precision}; check it with: dcf export verify --checkpoint {args.checkpoint} --onnx {args.out}"
    )
    return 0


def run_tensorrt(args: argparse.Namespace) -> int:
    from dcf.export.tensorrt import ShapeRange, build_engine

    batch = ShapeRange.parse(args.batch, "--batch")
    frames = ShapeRange.parse(args.frames, "--frames") if args.frames else None
    size = ShapeRange.parse(args.size, "--size") if args.size else None
    build_engine(
        args.onnx,
        args.out,
        plugin=args.plugin,
        batch=batch,
        frames=frames,
        size=size,
        timing_cache=args.timing_cache,
        workspace_gib=args.workspace,
    )
    print(f"wrote {args.out} and {args.out}.json")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from dcf.export import onnxruntime_op, verify
    from dcf.export.metadata import read_onnx_metadata
    from dcf.inference.backends import Backend, BackendName, load_backend

    if not args.onnx and args.engine is None:
        raise ValueError("nothing to verify: pass --onnx FILE (repeatable) and/or --engine PLAN")
    if args.plugin is not None and args.engine is None:
        raise ValueError("--plugin only applies to --engine")
    if args.openvino_precision != "fp32" and not args.openvino:
        raise ValueError("--openvino-precision needs --openvino")
    reference = load_backend(args.checkpoint, "torch")
    candidates: list[tuple[str, Backend]] = []
    for path in args.onnx:
        # Custom-node files run in the reference evaluator (its DCFCorrelation is independent of the
        # compiled kernel, which the checkpoint runs on too), and in ONNX Runtime with the op library.
        portable = read_onnx_metadata(path).flavour == "portable"
        runtimes: list[BackendName] = []
        if portable or onnxruntime_op.library() is not None:
            runtimes.append("onnxruntime")
        if not portable:
            runtimes.append("onnx-reference")
        candidates += [(path, load_backend(path, runtime, threads=args.threads)) for runtime in runtimes]
        if args.openvino:
            candidates.append(
                (
                    path,
                    load_backend(path, "openvino", threads=args.threads, precision=args.openvino_precision),
                )
            )
    if args.engine is not None:
        candidates.append(
            (args.engine, load_backend(args.engine, "tensorrt", device="cuda", plugin=args.plugin))
        )
    for path, candidate in candidates:
        verify.check_same_model(reference.info, candidate.info, str(path))
    named = [(f"{c.info.backend} ({Path(path).name})", c) for path, c in candidates]
    exported = [c.info for _, c in candidates]
    inputs = verify.verification_inputs(
        reference.info.input_spec,
        # Dynamic axes are exercised where every file has them.
        dynamic_frames=all(m.dynamic_frames for m in exported),
        dynamic_size=all(m.dynamic_size for m in exported),
        video=args.video,
        seed=args.seed,
    )
    results = verify.verify(reference, named, inputs)
    if args.json:
        print(json.dumps(verify.results_json(results), indent=2))
    else:
        print(verify.format_report(results))
    return 0 if all(r.passed for r in results) else 1


def run_triton(args: argparse.Namespace) -> int:
    from dcf.export.triton import write_repository

    folder = write_repository(
        args.out,
        onnx=args.onnx,
        engine=args.engine,
        name=args.name,
        max_batch=args.max_batch,
        max_queue_delay_us=args.max_queue_delay_us,
        instances=args.instances,
        kind=args.kind,
    )
    print(f"wrote {folder} (serve with: tritonserver --model-repository={args.out})")
    return 0
