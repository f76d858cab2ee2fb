"""The correlation as an ONNX Runtime custom op, so ONNX Runtime runs custom-node ONNX files.

ONNX Runtime runs the portable graph (:mod:`dcf.export.portable`) too, but there the correlation's
MatMul/Slice/Pad chains cost 16-32% on top of the backbone (``bench/results/cpu_runtimes.md``).
The op library ``dcf.ops._correlation_ort`` (``dcf/ops/csrc/correlation_ort.cpp``) registers
``dcf::DCFCorrelation`` on ONNX Runtime's CPU execution provider on the compiled CPU kernel, its
rows on the session's own intra-op threads. It is built at install time where ONNX Runtime's C API
header is found (``setup.py`` says where it looks); :func:`library` is ``None`` where it was not,
or where ``DCF_CPU_KERNEL=0`` turns the compiled kernels off.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

MODULE = "dcf.ops._correlation_ort"


def library() -> str | None:
    """The path of the built op library, or ``None`` (see :func:`missing_reason`)."""
    if os.environ.get("DCF_CPU_KERNEL", "1") == "0":
        return None
    spec = importlib.util.find_spec(MODULE)
    return spec.origin if spec is not None else None


def missing_reason() -> str:
    """Why :func:`library` is ``None``, and what to do, in one sentence."""
    if os.environ.get("DCF_CPU_KERNEL", "1") == "0":
        return "DCF_CPU_KERNEL=0 turns the compiled kernels off"
    return (
        "it was not built: reinstall with DCF_ONNXRUNTIME_INCLUDE=$(tools/onnxruntime_headers.sh) "
        "or with libonnxruntime-dev installed, see setup.py"
    )


def register(options: Any) -> None:
    """Registers the op library on an ``onnxruntime.SessionOptions``.

    Raises:
        RuntimeError: If the library is not built or disabled (:func:`missing_reason`).
    """
    path = library()
    if path is None:
        raise RuntimeError(missing_reason())
    options.register_custom_ops_library(path)
