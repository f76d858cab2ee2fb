"""The plugin-free flavour: each ``dcf::DCFCorrelation`` node rewritten in standard ONNX ops.

The rewrite computes the op's meaning (DESIGN.md section 1) with ops every ONNX runtime has, and is
shaped for speed on CPU, where a literal decomposition (``2L*K*K`` Slice/Mul/ReduceSum chains, each
multiplying ``C*T*H*W`` values) costs almost as much as the whole backbone:

* The channel reduction runs in MatMul. For a positive offset ``tau`` and a window row ``ky``, one
  batched MatMul multiplies every frame row ``(t, i)`` of ``x`` (W x C) with the partner row
  ``(t + tau, i + dy)`` of the padded input (C x W+2R). The K displacements along the row are
  diagonals of that product, read with a "skew": the x rows get 2R+1 zero rows appended, so the
  (W+2R+1) x (W+2R) product reshapes, without a copy, to (W+2R) x (W+2R+1), where each diagonal
  is a column; one strided Slice takes the K of them.
* Negative offsets are not computed: ``<x[t, p], x[t - tau, p + delta]>`` is the ``+tau`` entry at
  ``(t - tau, p + delta)`` for the mirrored displacement, so each ``-tau`` channel is a shifted copy
  of a ``+tau`` channel (one multi-axis Slice each).
* Work is split per ``(tau, ky)`` so every intermediate stays cache-sized; one big batched product
  spills the cache and is slower.

Only C must be known (its square root scales the output); N, T, H and W may be dynamic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

from dcf.export.names import CORRELATION_DOMAIN, CORRELATION_OP

_INT64_MAX = np.iinfo(np.int64).max


def _end(start: int, padding: int) -> int:
    """Slice end for a window of the original length starting at ``start`` in an axis padded by
    ``padding`` in all: relative to the end, or "to the end" when the window reaches it."""
    return start - padding if start < padding else int(_INT64_MAX)


@dataclass
class _Builder:
    """Collects nodes and int64 constants under one unique name prefix."""

    prefix: str
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    initializers: list[onnx.TensorProto] = field(default_factory=list)
    _count: int = 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{self.prefix}/{hint}_{self._count}"

    def const(self, values: list[int], hint: str = "const") -> str:
        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(values, dtype=np.int64), name))
        return name

    def op(
        self, op_type: str, inputs: list[str], hint: str | None = None, output: str | None = None, **attrs
    ) -> str:
        out = output or self.name(hint or op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=self.name(op_type), **attrs))
        return out

    def slice(
        self, x: str, starts: list[int], ends: list[int], axes: list[int], steps: list[int] | None = None
    ) -> str:
        inputs = [x, self.const(starts), self.const(ends), self.const(axes)]
        if steps is not None:
            inputs.append(self.const(steps))
        return self.op("Slice", inputs)


def correlation_nodes(
    x: str, y: str, kernel_size: int, temporal_range: int, elem_type: int, prefix: str
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Standard-op nodes computing ``y = correlation(x, kernel_size, temporal_range)``."""
    k, big_l, r = kernel_size, temporal_range, kernel_size // 2
    pad_l = r * big_l  # spatial padding that covers the widest window (|tau| = L)
    g = _Builder(prefix)

    channels = g.op("Shape", [x], start=1, end=2)
    scale = g.op("Sqrt", [g.op("Cast", [channels], to=elem_type)])
    width = g.op("Shape", [x], start=4, end=5)
    tail = g.op("Shape", [x], start=2, end=5)  # (T, H, W)
    rows = g.op("Transpose", [g.op("Div", [x, scale])], perm=[0, 2, 3, 4, 1])  # N T H W C, scaled
    # Partners: N T H C W, padded at the end of T by L and on both sides of H and W by r*L.
    partners = g.op(
        "Pad",
        [
            g.op("Transpose", [x], perm=[0, 2, 3, 1, 4]),
            g.const([0, 0, pad_l, 0, pad_l, 0, big_l, pad_l, 0, pad_l]),
        ],
    )

    positive, negative = [], []
    for tau in range(1, big_l + 1):
        d, pad = tau, r * tau  # dilation and the half-window in pixels
        # Skew without a copy of the product: with 2R+1 zero rows appended to the W x-rows, the
        # (W+2R+1) x (W+2R) product reshapes exactly to (W+2R) x (W+2R+1), in which diagonal
        # element (j, j + s) sits at (j, s).
        padded_rows = g.op("Pad", [rows, g.const([0, 0, 0, 0, 0, 0, 0, 0, 2 * pad + 1, 0])])  # N T H W+2R+1 C
        wide = g.op("Add", [width, g.const([2 * pad])])
        skew_shape = g.op("Concat", [g.const([0, 0, 0]), wide, g.op("Add", [wide, g.const([1])])], axis=0)
        bands = []
        for ky in range(k):
            top = pad_l + (ky - r) * d
            left = pad_l - pad
            partner_rows = g.slice(
                partners,
                starts=[tau, top, left],
                ends=[_end(tau, big_l), _end(top, 2 * pad_l), _end(left + 2 * pad, 2 * pad_l)],
                axes=[1, 2, 4],
            )  # N T H C W+2R
            product = g.op("MatMul", [padded_rows, partner_rows])  # N T H W+2R+1 W+2R
            skewed = g.op("Reshape", [product, skew_shape])  # N T H W+2R W+2R+1
            band = g.slice(
                skewed, starts=[0, 0], ends=[_end(0, 2 * pad), (k - 1) * d + 1], axes=[3, 4], steps=[1, d]
            )  # N T H W kx
            bands.append(g.op("Unsqueeze", [band, g.const([1])]))
        stacked = g.op("Concat", bands, axis=1)  # N ky T H W kx
        volume = g.op(
            "Reshape",
            [
                g.op("Transpose", [stacked], perm=[0, 1, 5, 2, 3, 4]),
                g.op("Concat", [g.const([0, k * k]), tail], axis=0),
            ],
        )  # N K*K T H W: the +tau channels
        positive.append(volume)

        # -tau channel (ky, kx) at (t, i, j) = +tau channel (K-1-ky, K-1-kx) at (t-tau, i+dy, j+dx).
        shifted = g.op("Pad", [volume, g.const([0, 0, tau, pad, pad, 0, 0, 0, pad, pad])])
        mirrored = []
        for ky in range(k):
            for kx in range(k):
                source = (k - 1 - ky) * k + (k - 1 - kx)
                mirrored.append(
                    g.slice(
                        shifted,
                        starts=[source, 0, ky * d, kx * d],
                        ends=[source + 1, -tau, _end(ky * d, 2 * pad), _end(kx * d, 2 * pad)],
                        axes=[1, 2, 3, 4],
                    )
                )
        negative.append(g.op("Concat", mirrored, axis=1))

    g.op("Concat", [*reversed(negative), *positive], axis=1, output=y)  # tau = -L..-1, +1..+L
    return g.nodes, g.initializers


# (x, y, kernel_size, temporal_range, elem_type, prefix) -> (nodes, int64 constants)
Expansion = Callable[[str, str, int, int, int, str], tuple[list[onnx.NodeProto], list[onnx.TensorProto]]]


def make_portable(model: onnx.ModelProto, expansion: Expansion = correlation_nodes) -> onnx.ModelProto:
    """A copy of ``model`` with every ``dcf::DCFCorrelation`` node replaced by standard ops
    (``expansion`` writes them; the benchmark passes a naive one to compare)."""
    portable = onnx.ModelProto()
    portable.CopyFrom(model)
    graph = portable.graph
    elem_types = {v.name: v.type.tensor_type.elem_type for v in [*graph.input, *graph.value_info]}
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        if (node.domain, node.op_type) != (CORRELATION_DOMAIN, CORRELATION_OP):
            nodes.append(node)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.input[0] not in elem_types:
            raise ValueError(
                f"{node.name}: the graph does not record the element type of its input {node.input[0]!r}"
            )
        expanded, constants = expansion(
            node.input[0],
            node.output[0],
            int(attrs["kernel_size"]),
            int(attrs["temporal_range"]),
            elem_types[node.input[0]],
            node.name,
        )
        nodes.extend(expanded)
        graph.initializer.extend(constants)
    del graph.node[:]
    graph.node.extend(nodes)
    kept = [o for o in portable.opset_import if o.domain != CORRELATION_DOMAIN]
    del portable.opset_import[:]
    portable.opset_import.extend(kept)
    return portable
