"""The ONNX Runtime op library: ``dcf::DCFCorrelation`` on ONNX Runtime's CPU execution provider,
against the pure-PyTorch reference op by op and against the checkpoint model by model, on inputs
other than the export's trace."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto

from dcf.checkpoint import load_checkpoint
from dcf.export import onnxruntime_op
from dcf.export.names import CORRELATION_DOMAIN
from dcf.export.onnx_export import export_onnx
from dcf.inference.backends import load_backend, onnxruntime_session
from dcf.ops.reference import correlation_reference
from tests.support.checkpoints import tiny_checkpoint
from tests.support.onnx_graphs import correlation_model

built = pytest.mark.skipif(onnxruntime_op.library() is None, reason=onnxruntime_op.missing_reason())


def test_the_library_is_built_where_the_header_was_given() -> None:
    """CI passes the header (tools/onnxruntime_headers.sh): there the library must exist, so that the
    tests below do not skip unseen."""
    if not os.environ.get("DCF_ONNXRUNTIME_INCLUDE"):
        pytest.skip("DCF_ONNXRUNTIME_INCLUDE not set: the library is optional")
    assert onnxruntime_op.library() is not None, onnxruntime_op.missing_reason()


def correlation_graph(elem_type: int, kernel_size: int, temporal_range: int, rank: int = 5) -> bytes:
    return correlation_model(elem_type, kernel_size, temporal_range, rank).SerializeToString()


def session(model: bytes | str | Path, threads: int = 1) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    onnxruntime_op.register(options)
    return ort.InferenceSession(
        model if isinstance(model, bytes) else str(model), options, providers=["CPUExecutionProvider"]
    )


@built
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(
    ("shape", "kernel_size", "temporal_range"),
    [((2, 5, 4, 7, 9), 3, 1), ((1, 12, 6, 10, 8), 5, 2), ((1, 3, 3, 4, 13), 1, 2), ((1, 4, 5, 6, 6), 11, 3)],
)
def test_the_op_matches_the_reference_in_float32(
    shape: tuple[int, ...], kernel_size: int, temporal_range: int, threads: int
) -> None:
    x = np.random.default_rng(sum(shape)).standard_normal(shape, dtype=np.float32)
    (y,) = session(correlation_graph(TensorProto.FLOAT, kernel_size, temporal_range), threads).run(
        None, {"x": x}
    )
    expected = correlation_reference(torch.from_numpy(x).double(), kernel_size, temporal_range).numpy()
    assert y.dtype == np.float32 and y.shape == expected.shape
    # float32 sums of C products against float64: a few ulps of the largest output.
    np.testing.assert_allclose(y, expected, rtol=0, atol=1e-5 * np.abs(expected).max())


@built
def test_the_op_in_float16_is_float32_rounded_once() -> None:
    x = np.random.default_rng(3).standard_normal((2, 8, 5, 9, 7)).astype(np.float16)
    (y,) = session(correlation_graph(TensorProto.FLOAT16, 5, 2)).run(None, {"x": x})
    expected = correlation_reference(torch.from_numpy(x).double(), 5, 2).numpy()
    assert y.dtype == np.float16
    # The float32 result rounded to float16: half an ulp of float16 (2^-11 relative), plus float32's sum.
    np.testing.assert_allclose(
        y.astype(np.float64), expected, rtol=2**-11, atol=1e-5 * np.abs(expected).max()
    )


@built
def test_float16_rounding_is_numpys_through_subnormals_and_overflow() -> None:
    """Magnitudes from 1e-4 to 1000: products from float16's subnormals to past its 65504. The
    float16 op is the float32 op on the widened input, rounded to nearest even, bit for bit."""
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((1, 6, 4, 8, 8)) * 10 ** rng.uniform(-4, 3, (1, 6, 4, 8, 8))).astype(np.float16)
    (y16,) = session(correlation_graph(TensorProto.FLOAT16, 3, 1)).run(None, {"x": x})
    (y32,) = session(correlation_graph(TensorProto.FLOAT, 3, 1)).run(None, {"x": x.astype(np.float32)})
    with np.errstate(over="ignore"):  # the overflow to infinity is the point
        rounded = y32.astype(np.float16)
    assert np.isinf(rounded).any() and (np.abs(rounded[rounded != 0]) < np.finfo(np.float16).tiny).any()
    np.testing.assert_array_equal(y16.view(np.uint16), rounded.view(np.uint16))


@built
@pytest.mark.parametrize(
    ("kernel_size", "temporal_range", "message"),
    [
        (4, 1, "kernel_size must be odd and at most 11 in ONNX Runtime, got 4"),
        (
            13,
            1,
            "got 13 \\(larger windows: export with --portable, or run the file with --backend openvino\\)",
        ),
        (3, 0, "temporal_range must be from 1 to 119304647, got 0"),
        (3, 2**32 + 1, "temporal_range must be from 1 to 119304647, got 4294967297"),
    ],
)
def test_bad_attributes_are_refused_when_the_session_loads(
    kernel_size: int, temporal_range: int, message: str
) -> None:
    with pytest.raises(Exception, match=message):
        session(correlation_graph(TensorProto.FLOAT, kernel_size, temporal_range))


@built
def test_a_bad_rank_is_refused_when_it_runs() -> None:
    model = session(correlation_graph(TensorProto.FLOAT, 3, 1, rank=4))
    with pytest.raises(Exception, match="expects a 5-D input"):
        model.run(None, {"x": np.zeros((1, 2, 3, 4), np.float32)})


@built
@pytest.mark.parametrize("architecture", ["x3d_xs_dcf", "r2plus1d_r50_dcf"])
def test_custom_node_files_give_the_checkpoints_logits(
    architecture: str, dynamic_size_exports: dict[str, Path], tmp_path: Path
) -> None:
    """Exported with dynamic frames and size, run at another batch, frame count and size than the
    trace, in the backend the server uses, on one and two threads."""
    if architecture == "x3d_xs_dcf":  # the shared export (64 px)
        path, model = dynamic_size_exports["custom"], load_checkpoint(dynamic_size_exports["checkpoint"])
    else:
        model = tiny_checkpoint(tmp_path, architecture, size=64, seed=7)
        path = tmp_path / "model.onnx"
        export_onnx(model, path, dynamic_frames=True, dynamic_size=True)
    assert any(n.domain == CORRELATION_DOMAIN for n in onnx.load(str(path)).graph.node)
    x = np.random.default_rng(8).standard_normal((3, 3, 6, 96, 64), dtype=np.float32)
    with torch.inference_mode():
        expected = model(torch.from_numpy(x)).numpy()
    for threads in (1, 2):
        backend = load_backend(path, "onnxruntime", threads=threads)
        assert (backend.info.backend, backend.info.dynamic_size) == ("onnxruntime", True)
        np.testing.assert_allclose(backend(x), expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


@built
def test_sessions_with_other_thread_counts_agree_and_outlive_each_other(
    tiny_exports: dict[str, Path],
) -> None:
    """Each session registers the library again (a domain per registration); dropping one leaves
    the other running, with the same logits to the bit on another thread count."""
    x = np.random.default_rng(2).standard_normal((1, 3, 4, 32, 32), dtype=np.float32)
    first = onnxruntime_session(tiny_exports["custom"], threads=1, custom_ops=True)
    expected = first.run(None, {"video": x})[0]
    second = onnxruntime_session(tiny_exports["custom"], threads=2, custom_ops=True)
    del first
    np.testing.assert_array_equal(second.run(None, {"video": x})[0], expected)


def test_without_the_library_registering_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DCF_CPU_KERNEL", "0")
    assert onnxruntime_op.library() is None
    with pytest.raises(RuntimeError, match="DCF_CPU_KERNEL=0 turns the compiled kernels off"):
        onnxruntime_op.register(ort.SessionOptions())
