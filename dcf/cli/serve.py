"""``dcf serve``: the HTTP inference service under uvicorn."""

from __future__ import annotations

import argparse
from typing import Any, get_args

from dcf.inference.backends import ComputePrecision, ServedBackend

DESCRIPTION = """\
Serve a model over HTTP (FastAPI under uvicorn). With no arguments: the bundled demo model, on CPU,
at http://127.0.0.1:8000 (API docs at /docs).

Endpoints: POST /v1/predict (multipart field 'file'; query top_k, clips, crops, sampling,
timeline, window_s), GET /v1/models, /healthz, /readyz, /metrics (Prometheus).
Every option can also be set as an environment variable DCF_<NAME> (e.g. DCF_MAX_BATCH=16).

examples:
  dcf serve
  curl -F file=@clip.mp4 'http://127.0.0.1:8000/v1/predict?top_k=3'
  dcf serve --model demo.portable.onnx --port 8080 --max-batch 16
  dcf serve --model model.plan --device cuda --plugin trt_plugins/build/libdcf_trt_plugins.so
"""


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve a model over HTTP",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model", help="checkpoint or 'demo', exported .onnx, or TensorRT .plan (default: demo)"
    )
    parser.add_argument(
        "--backend",
        choices=get_args(ServedBackend),
        help="default: from the file (.onnx on CPU: openvino where installed); openvino on a checkpoint "
        "exports it at start-up",
    )
    parser.add_argument(
        "--precision",
        choices=get_args(ComputePrecision),
        help="compute precision (default: fp32; bf16, fp16: openvino)",
    )
    parser.add_argument("--device", choices=["cpu", "cuda"], help="default: cpu")
    parser.add_argument("--plugin", help="TensorRT plugin library, for .plan models")
    parser.add_argument("--host", help="default: 127.0.0.1 (use 0.0.0.0 in a container)")
    parser.add_argument("--port", type=int, help="default: 8000")
    parser.add_argument("--threads", type=int, help="inference threads (default: the runtime's)")
    parser.add_argument("--max-batch", type=int, help="clips per inference call (default: 8)")
    parser.add_argument("--max-wait-ms", type=float, help="how long a batch waits to fill (default: 5)")
    parser.add_argument("--max-queue", type=int, help="queued clips before answering 503 (default: 64)")
    parser.add_argument("--decode-workers", type=int, help="decoding threads (default: 2)")
    parser.add_argument("--max-upload-mb", type=float, help="largest upload (default: 100)")
    parser.add_argument("--request-timeout-s", type=float, help="per-request deadline (default: 30)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn
    from pydantic import ValidationError

    from dcf.server.app import create_app
    from dcf.server.service import load_backend_for
    from dcf.server.settings import ServerSettings

    overrides = {
        name: getattr(args, name)
        for name in (
            "model", "backend", "precision", "device", "plugin", "host", "port", "threads", "max_batch", "max_wait_ms",
            "max_queue", "decode_workers", "max_upload_mb", "request_timeout_s",
        )
        if getattr(args, name) is not None
    }  # fmt: skip
    try:
        settings = ServerSettings(**overrides)
    except ValidationError as exc:
        raise ValueError(
            "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        ) from None
    # Load before starting uvicorn, so that a bad model is one clear line, not a failed startup.
    backend = load_backend_for(settings)
    app = create_app(settings, backend)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=args.log_level)
    return 0
