"""The correlation as an OpenVINO operation, so OpenVINO runs custom-node ONNX files.

OpenVINO runs the portable graph (:mod:`dcf.export.portable`) too, but there the correlation's
MatMul/Slice/Pad chains and the layout changes around them cost 35-85% on top of the backbone
(issue #15). :func:`openvino_core` gives a ``Core`` that reads both kinds of file, mapping each
``dcf::DCFCorrelation`` node onto one of two operations:

* the C++ extension ``dcf/ops/csrc/correlation_openvino.cpp`` (the compiled CPU kernel, its rows on
  OpenVINO's own oneTBB threads). OpenVINO's wheel ships the headers and libraries it builds
  against, and an extension must match the OpenVINO that loads it, so :func:`compiled_extension`
  compiles it against the installed OpenVINO the first time (about 15 s, a C++ compiler needed),
  checks that it loads, and keeps it in :func:`cache_dir`, one build per OpenVINO version,
  compiler, command and source;
* else :class:`DCFCorrelation`, a Python operation whose ``evaluate`` runs the compiled CPU kernel
  on one thread: OpenVINO calls it from one of its worker threads, and a second (OpenMP) pool there
  fights OpenVINO's spinning workers for the cores (R(2+1)D-50's first correlation took 14-20 ms on
  two threads there against 5 ms on one, on this project's 2-core machine). Without the compiled
  kernel (or for windows above its 11) it falls back to PyTorch's path, correct and slower.

``DCF_CPU_KERNEL=0`` turns both compiled paths off.

:func:`fuse_correlations` then hands each correlation on the C++ operation what reads its volume:
the spatial pyramid's 2x2 average poolings (DESIGN.md section 2), as extra outputs, and the DCF
block's 1x1x1 convolution of the volume, computed from the volume in the cache. OpenVINO's CPU
plugin runs an extension operation in the planar layout only and reorders its output once per
consumer: the volume's reorders were DCF's largest cost there.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import openvino
import torch
from openvino.frontend.onnx import ConversionExtension
from openvino.utils.node_factory import NodeFactory

from dcf.export.names import CORRELATION_DOMAIN, CORRELATION_OP
from dcf.ops import _cpu_kernel

log = logging.getLogger(__name__)

KERNEL_THREADS = 1


class DCFCorrelation(openvino.Op):
    """``y = correlation(x, kernel_size, temporal_range)`` (DESIGN.md section 1); float32, and
    float16 (the fp16 export) computed in float32 and rounded once."""

    def __init__(
        self, inputs: list[Any] | None = None, kernel_size: int = 5, temporal_range: int = 2
    ) -> None:
        # Set before the base constructor: it validates the node, which reads them.
        self.kernel_size, self.temporal_range = int(kernel_size), int(temporal_range)
        super().__init__(self, inputs or [])

    @property
    def out_channels(self) -> int:
        return self.kernel_size * self.kernel_size * 2 * self.temporal_range

    def validate_and_infer_types(self) -> None:
        element = self.get_input_element_type(0)
        if element not in (openvino.Type.f32, openvino.Type.f16, openvino.Type.dynamic):
            raise ValueError(f"{CORRELATION_OP} in OpenVINO runs float32 or float16 inputs, got {element}")
        shape = self.get_input_partial_shape(0)
        if shape.rank.is_static and shape.rank.get_length() != 5:
            raise ValueError(f"{CORRELATION_OP} takes a 5-D input (N, C, T, H, W), got {shape}")
        if shape.rank.is_static:
            out = openvino.PartialShape([shape[0], openvino.Dimension(self.out_channels), *list(shape)[2:]])
        else:
            out = openvino.PartialShape.dynamic(5)
        self.set_output_type(0, element, out)

    def clone_with_new_inputs(self, new_inputs: list[Any]) -> DCFCorrelation:
        return DCFCorrelation(new_inputs, self.kernel_size, self.temporal_range)

    def visit_attributes(self, visitor: Any) -> bool:
        visitor.on_attributes({"kernel_size": self.kernel_size, "temporal_range": self.temporal_range})
        return True

    def has_evaluate(self) -> bool:
        return True

    def evaluate(self, outputs: list[Any], inputs: list[Any]) -> bool:
        x = np.ascontiguousarray(inputs[0].data, dtype=np.float32)
        n, _, t, h, w = x.shape
        outputs[0].shape = [n, self.out_channels, t, h, w]
        out = outputs[0].data
        y = out if out.dtype == np.float32 else np.empty(out.shape, np.float32)
        if _cpu_kernel.available() and self.kernel_size <= _cpu_kernel.MAX_KERNEL_SIZE:
            _cpu_kernel.forward_into(x, y, self.kernel_size, self.temporal_range, KERNEL_THREADS)
        else:
            from dcf.ops import correlation

            with torch.inference_mode():
                y[...] = correlation(torch.from_numpy(x), self.kernel_size, self.temporal_range).numpy()
        if y is not out:
            out[...] = y
        return True


def _convert(node: Any) -> list[Any]:
    """The ONNX frontend's conversion of one ``dcf::DCFCorrelation`` node."""
    op = DCFCorrelation(
        [node.get_input(0)], node.get_attribute("kernel_size"), node.get_attribute("temporal_range")
    )
    return op.outputs()


CSRC = Path(_cpu_kernel.__file__).parent / "csrc"
SOURCES = ("correlation_openvino.cpp", "correlation_kernel.h")


def cache_dir() -> Path:
    """Where compiled extensions are kept: ``$DCF_CACHE_DIR``, else ``$XDG_CACHE_HOME/dcf`` or
    ``~/.cache/dcf``, under ``openvino/``."""
    root = (
        os.environ.get("DCF_CACHE_DIR")
        or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dcf"
    )
    return Path(root) / "openvino"


_FALLBACK = "OpenVINO's correlation runs as a Python operation on one thread (slower)"


@functools.cache
def compiled_extension() -> Path | None:
    """The C++ extension built against the installed OpenVINO (compiled on first use, checked to
    load, then cached), or ``None`` where it cannot be: no compiler, a failed build or load, an
    unwritable cache, ``DCF_CPU_KERNEL=0``; each said once in the log."""
    if os.environ.get("DCF_CPU_KERNEL", "1") == "0":
        log.warning("dcf: %s: DCF_CPU_KERNEL=0 turns the compiled kernels off", _FALLBACK)
        return None
    try:
        return _build()
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        log.warning("dcf: %s: %s", _FALLBACK, exc)
        return None


def _build() -> Path:
    root = Path(openvino.__file__).parent
    libraries = [next(iter(sorted((root / "libs").glob(pattern))), None) for pattern in _LIBRARIES]
    compiler = shutil.which(os.environ.get("CXX", "c++")) or shutil.which("g++")
    if compiler is None:
        raise RuntimeError("no C++ compiler (CXX, c++, g++) to build its C++ extension")
    missing = [p for p, lib in zip(_LIBRARIES, libraries, strict=True) if lib is None]
    if missing or not (root / "include").is_dir():
        raise RuntimeError(
            f"OpenVINO's wheel lacks {missing or 'include/'} to build the C++ extension against"
        )
    command = [
        compiler,
        "-O3",
        "-std=c++17",
        "-fPIC",
        "-shared",
        "-fvisibility=hidden",
        "-Wno-psabi",
        "-Wl,-z,defs",
        f"-I{root / 'include'}",
        f"-I{CSRC}",
        str(CSRC / SOURCES[0]),
        *map(str, libraries),
        f"-Wl,-rpath,{root / 'libs'}",
        "-o",
    ]  # fmt: skip  (the output path last)
    identity = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=60).stdout
    digest = hashlib.sha256("\0".join([openvino.get_version(), identity, *command]).encode())
    for name in SOURCES:
        digest.update((CSRC / name).read_bytes())
    out = cache_dir() / digest.hexdigest()[:16] / "libdcf_openvino.so"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / ".lock", "w") as lock:  # one build per key at a time, across processes
        fcntl.flock(lock, fcntl.LOCK_EX)
        if out.is_file():
            return out
        log.info(
            "dcf: compiling the OpenVINO correlation extension for OpenVINO %s into %s (once, about 15 s)",
            openvino.get_version(),
            out,
        )
        handle, partial = tempfile.mkstemp(dir=out.parent, suffix=".so")
        os.close(handle)
        try:
            result = subprocess.run([*command, partial], capture_output=True, text=True, timeout=600)
            if result.returncode != 0:
                tail = "\n".join(result.stderr.strip().splitlines()[-8:])
                raise RuntimeError(f"compiling its C++ extension failed:\n{tail}")
            os.chmod(partial, 0o755)  # readable by every user of a shared cache (mkstemp makes 0600)
            try:
                openvino.Core().add_extension(partial)  # a library that does not load is never cached
            except RuntimeError as exc:
                raise RuntimeError(f"its C++ extension built but does not load: {exc}") from None
            os.replace(partial, out)
        finally:
            Path(partial).unlink(missing_ok=True)
    return out


# The libraries the extension links: OpenVINO's core, and its oneTBB (whose arena it runs in).
_LIBRARIES = ("libopenvino.so.*[0-9]", "libtbb.so.12")


def openvino_core(custom_nodes: bool = True) -> openvino.Core:
    """An OpenVINO ``Core`` that reads custom-node ONNX files (``custom_nodes``: else a plain one),
    with the C++ extension where it builds and loads, else the Python operation. (No IR: an ONNX
    file reads and compiles in 0.15-0.35 s here, so IR would not start a server faster.)"""
    core = openvino.Core()
    if not custom_nodes:
        return core
    extension = compiled_extension()
    if extension is not None:
        try:
            core.add_extension(str(extension))
            _node_factory(str(extension))  # the library stays loaded while nodes may outlive the Core
            return core
        except RuntimeError as exc:  # e.g. a cached build this process's libstdc++ cannot load
            log.warning("dcf: %s: %s does not load: %s", _FALLBACK, extension, exc)
    core.add_extension(ConversionExtension(CORRELATION_OP, CORRELATION_DOMAIN, _convert))
    return core


class Fusions(NamedTuple):
    """What :func:`fuse_correlations` did to a model."""

    pyramids: int  # correlations that took the spatial pyramid's poolings of their volume
    convolutions: int  # correlations fused with the convolution that reads their volume


def fuse_correlations(model: openvino.Model, convolutions: bool = True) -> Fusions:
    """Fuses into each correlation on the C++ operation what reads its volume, so that OpenVINO's
    CPU plugin, which runs an extension operation in the planar layout only and reorders its output
    once per consumer, never reorders the volume:

    * the spatial pyramid's poolings (:func:`dcf.models.dcf_net.pool_pyramid`: 2x2 spatial AvgPool,
      repeated once per later stride-2 stage): the operation gains one output per pooling level,
      and the poolings' consumers read those;
    * then, where the only other reader of the volume is a 1x1x1 convolution with fewer output
      channels than the volume has (the DCF block's conv2 of its own volume: X3D's 100 volume
      channels into 24 or 48), the operation becomes ``DCFCorrelationConv``, whose output 0 is that
      convolution's output: the volume is convolved row by row in the cache and never written.

    Correlations on the Python operation are left as they are; a second pass fuses nothing more.
    ``convolutions=False`` fuses the poolings only (to time the two side by side,
    ``bench.openvino_fusion``).

    Only poolings of exactly that meaning are taken: kernel and stride (1, 2, 2), no padding or
    dilation, and either an even height and width known from the graph (rounding and pad counting
    do not matter there) or rounding up with a cut window averaging the values it holds (the
    export's odd sizes). Only convolutions with stride and dilation 1, no padding and a constant
    weight are taken."""
    extension = compiled_extension()
    if extension is None:
        return Fusions(0, 0)
    fused = Fusions(0, 0)
    for node in model.get_ordered_ops():
        if (
            node.get_type_name() != CORRELATION_OP
            or node.get_type_info().version_id != CORRELATION_DOMAIN
            or node.get_attributes()["pyramid_levels"]  # fused already
        ):
            continue
        levels: list[list[Any]] = []  # the AvgPool nodes of each level
        outputs = [node.output(0)]
        while pools := [
            target.get_node()
            for output in outputs
            for target in output.get_target_inputs()
            if _is_pyramid_pool(target.get_node())
        ]:
            levels.append(pools)
            outputs = [pool.output(0) for pool in pools]
        # The volume's other readers (levels[0] are its readers that are pyramid poolings).
        readers = [
            t.get_node() for t in node.output(0).get_target_inputs() if not _is_pyramid_pool(t.get_node())
        ]
        weight = _volume_convolution_weight(readers[0], node) if convolutions and len(readers) == 1 else None
        if not levels and weight is None:
            continue
        attributes = {**node.get_attributes(), "pyramid_levels": len(levels)}
        factory = _node_factory(str(extension))
        if weight is None:
            replacement = factory.create(CORRELATION_OP, [node.input_value(0)], attributes)
            node.output(0).replace(replacement.output(0))
        else:
            replacement = factory.create(
                CORRELATION_CONV_OP,
                [node.input_value(0), openvino.opset13.constant(weight).output(0)],
                attributes,
            )
            readers[0].output(0).replace(replacement.output(0))
            fused = fused._replace(convolutions=fused.convolutions + 1)
        replacement.set_friendly_name(node.get_friendly_name())
        for level, pools in enumerate(levels, start=1):
            for pool in pools:
                pool.output(0).replace(replacement.output(level))
        fused = fused._replace(pyramids=fused.pyramids + bool(levels))
    if any(fused):
        model.validate_nodes_and_infer_types()
    return fused


CORRELATION_CONV_OP = "DCFCorrelationConv"  # the C++ extension's fused operation


def _volume_convolution_weight(node: Any, correlation: Any) -> np.ndarray | None:
    """The float32 weight (Q, O, 1, 1, 1) of ``node`` where it is a convolution that
    :func:`fuse_correlations` fuses into ``correlation``, else ``None``."""
    if node.get_type_name() != "Convolution" or node.input_value(0) != correlation.output(0):
        return None
    attributes = node.get_attributes()
    if (
        any(value != 1 for key in ("strides", "dilations") for value in attributes[key])
        or any(attributes["pads_begin"])
        or any(attributes["pads_end"])
        or attributes["auto_pad"] not in _NO_PADDING
        or correlation.get_attributes()["kernel_size"] > _cpu_kernel.MAX_KERNEL_SIZE
    ):
        return None
    source = node.input_value(1).get_node()
    if source.get_type_name() != "Constant":
        return None
    weight = np.asarray(source.get_data(), dtype=np.float32)
    channels = correlation.output(0).get_partial_shape()[1]
    if weight.ndim != 5 or weight.shape[2:] != (1, 1, 1) or not channels.is_static:
        return None
    return weight if weight.shape[1] == channels.get_length() > weight.shape[0] else None


def _is_pyramid_pool(node: Any) -> bool:
    if node.get_type_name() != "AvgPool":
        return False
    attributes = node.get_attributes()
    if list(attributes["kernel"]) != [1, 2, 2] or list(attributes["strides"]) != [1, 2, 2]:
        return False
    if (
        any(attributes["pads_begin"])
        or any(attributes["pads_end"])
        or attributes["auto_pad"] not in _NO_PADDING
    ):
        return False
    if any(dilation != 1 for dilation in attributes.get("dilations", ())):
        return False
    shape = node.get_input_partial_shape(0)
    even = shape.rank.is_static and all(
        shape[axis].is_static and shape[axis].get_length() % 2 == 0 for axis in (3, 4)
    )
    # PyTorch's rounding up never counts the cut part of a window (torch.onnx writes it so for
    # odd sizes); ONNX's counts it unless padding is excluded.
    rounding = attributes["rounding_type"]
    return even or rounding == "ceil_torch" or (rounding == "ceil" and attributes["exclude-pad"])


_NO_PADDING = ("explicit", "notset", "valid")


@functools.cache
def _node_factory(extension: str) -> NodeFactory:
    """A factory of the C++ extension's operations, kept for the process: it keeps the library
    loaded, whose code every node of its operation runs, also those a Core made (a node that
    outlived its Core crashed the interpreter at exit)."""
    factory = NodeFactory()
    factory.add_extension(extension)
    return factory
