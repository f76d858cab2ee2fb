"""Builds the optional compiled CPU kernel and ONNX Runtime op library; everything else is declared
in pyproject.toml.

Both are plain C++ shared libraries with no PyTorch or ONNX Runtime libraries to link:

* ``dcf.ops._correlation_cpu``: the kernel's C ABI, loaded with ctypes by the PyTorch and OpenVINO
  ops.
* ``dcf.ops._correlation_ort``: the ``dcf::DCFCorrelation`` custom op for ONNX Runtime's CPU
  execution provider (``dcf/export/onnxruntime_op.py``). It compiles against ONNX Runtime's C API
  header, ``onnxruntime_c_api.h``, which the onnxruntime wheel does not ship: it is looked for in
  ``$DCF_ONNXRUNTIME_INCLUDE``, then ``/usr/include/onnxruntime`` and
  ``/usr/local/include/onnxruntime`` (Debian's and Ubuntu's ``libonnxruntime-dev``, or the
  ``include/`` folder of an ONNX Runtime release archive; ``tools/onnxruntime_headers.sh`` fetches
  one). Without it the library is skipped and ONNX Runtime runs portable files only; with
  ``DCF_ONNXRUNTIME_INCLUDE`` set, a missing header or a failed build fails the installation.

The OpenVINO extension (``dcf/ops/csrc/correlation_openvino.cpp``) is not built here: it must match
the OpenVINO that loads it, so ``dcf/export/openvino_op.py`` compiles it against the installed one
on first use.

``optional=True`` keeps installation working without a compiler: the op then falls back to pure
PyTorch and says so.
"""

import os
from pathlib import Path

from setuptools import Extension, setup

FLAGS = ["-O3", "-std=c++17", "-fvisibility=hidden", "-Wno-psabi"]
ORT_HEADER = "onnxruntime_c_api.h"


def onnxruntime_include() -> tuple[str | None, bool]:
    """The folder holding the header, and whether it was asked for (then the build must succeed)."""
    asked = os.environ.get("DCF_ONNXRUNTIME_INCLUDE", "")
    if asked:
        if not (Path(asked) / ORT_HEADER).is_file():
            raise SystemExit(f"dcf: DCF_ONNXRUNTIME_INCLUDE={asked} holds no {ORT_HEADER}")
        return asked, True
    found = [
        d
        for d in ("/usr/include/onnxruntime", "/usr/local/include/onnxruntime")
        if (Path(d) / ORT_HEADER).is_file()
    ]
    return (found[0] if found else None), False


extensions = [
    Extension(
        "dcf.ops._correlation_cpu",
        sources=["dcf/ops/csrc/correlation_cpu.cpp"],
        depends=["dcf/ops/csrc/correlation_kernel.h"],
        language="c++",
        extra_compile_args=[*FLAGS, "-fopenmp"],
        extra_link_args=["-fopenmp"],
        optional=True,
    )
]
include, asked = onnxruntime_include()
if include is None:
    print(
        f"dcf: {ORT_HEADER} not found (DCF_ONNXRUNTIME_INCLUDE, /usr/include/onnxruntime, "
        "/usr/local/include/onnxruntime): skipping the ONNX Runtime op library; ONNX Runtime will run "
        "portable ONNX files only"
    )
else:
    extensions.append(
        Extension(
            "dcf.ops._correlation_ort",
            sources=["dcf/ops/csrc/correlation_ort.cpp"],
            depends=["dcf/ops/csrc/correlation_kernel.h"],
            include_dirs=[include],
            language="c++",
            extra_compile_args=FLAGS,
            optional=not asked,  # a header found by itself may be too old; one asked for must build
        )
    )

setup(ext_modules=extensions)
