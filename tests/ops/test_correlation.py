"""The correlation op against its definition (DESIGN.md section 1)."""

from __future__ import annotations

import ctypes
import itertools
import logging
import math
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from dcf.ops import _cpu_kernel, correlation, correlation_macs, correlation_reference
from dcf.ops.reference import correlation_backward_reference, temporal_offsets
from tests.support.correlation import backward_inputs, kernel_backward

ROOT = Path(__file__).resolve().parents[2]

# Written tolerances. Float64: both paths sum the same products, only the order differs.
# Float32: relative 1e-5 of the output scale. Half types are computed in float32 and rounded once,
# so the error is half an ulp of the output: 2^-11 for float16, 2^-8 for bfloat16 (relative).
F64_TOL = {"rtol": 1e-12, "atol": 1e-12}
F32_TOL = {"rtol": 1e-5, "atol": 1e-5}
HALF_TOL = {torch.float16: {"rtol": 1e-3, "atol": 1e-3}, torch.bfloat16: {"rtol": 8e-3, "atol": 8e-3}}


def literal_correlation(x: torch.Tensor, k: int, big_l: int) -> torch.Tensor:
    """DESIGN.md section 1 word for word, one output element at a time (tiny inputs only)."""
    n_, c_, t_, h_, w_ = x.shape
    r = k // 2
    y = torch.zeros(n_, k * k * 2 * big_l, t_, h_, w_, dtype=torch.float64)
    for n, t, i, j in itertools.product(range(n_), range(t_), range(h_), range(w_)):
        for tau_index, tau in enumerate(temporal_offsets(big_l)):
            d = abs(tau)
            for ky, kx in itertools.product(range(k), range(k)):
                dy, dx = (ky - r) * d, (kx - r) * d
                c_out = (tau_index * k + ky) * k + kx
                tp, ip, jp = t + tau, i + dy, j + dx
                if 0 <= tp < t_ and 0 <= ip < h_ and 0 <= jp < w_:
                    dot = sum(float(x[n, c, t, i, j]) * float(x[n, c, tp, ip, jp]) for c in range(c_))
                    y[n, c_out, t, i, j] = dot / math.sqrt(c_)
    return y


# --- hand-computed cases -------------------------------------------------------------------------


def test_two_frames_one_pixel(cpu_backend: str) -> None:
    # C=1, T=2, 1x1 frames holding a=2 and b=3; K=1, L=1: channels are tau=-1 then tau=+1.
    x = torch.tensor([2.0, 3.0]).reshape(1, 1, 2, 1, 1)
    y = correlation(x, 1, 1)
    assert y.shape == (1, 2, 2, 1, 1)
    # tau=-1: frame 0 has no past (0); frame 1 meets frame 0: 3*2. tau=+1: 2*3, then no future.
    torch.testing.assert_close(y.flatten(), torch.tensor([0.0, 6.0, 6.0, 0.0]))


def test_scale_and_spatial_window(cpu_backend: str) -> None:
    # C=2, T=2, one row of 3 pixels, K=3, L=1. Pixels as (c0, c1): frame 0 = (1,0) (0,1) (1,1),
    # frame 1 = (2,0) (0,2) (1,-1).
    f0 = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])  # (C, W)
    f1 = torch.tensor([[2.0, 0.0, 1.0], [0.0, 2.0, -1.0]])
    x = torch.stack([f0, f1], dim=1).reshape(1, 2, 2, 1, 3)
    y = correlation(x, 3, 1)  # (1, 18, 2, 1, 3)
    s = 1 / math.sqrt(2)
    # tau=+1 is tau_index 1; dy=0 is ky=1; channel = (1*3 + 1)*3 + kx.
    plus = y[0, 12:15, 0, 0]  # frame 0 against frame 1; rows kx = 0, 1, 2 (dx = -1, 0, +1)
    expected = s * torch.tensor(
        [
            [0.0, 0.0, 2.0],  # dx=-1: j=0 outside; <(0,1),(2,0)> = 0; <(1,1),(0,2)> = 2
            [2.0, 2.0, 0.0],  # dx=0:  <(1,0),(2,0)> = 2; <(0,1),(0,2)> = 2; <(1,1),(1,-1)> = 0
            [0.0, -1.0, 0.0],  # dx=+1: <(1,0),(0,2)> = 0; <(0,1),(1,-1)> = -1; j=2 outside
        ]
    )
    torch.testing.assert_close(plus, expected)
    # Rows dy=-1 and dy=+1 fall outside the one-row frame: zero. So does tau=-1 at frame 0.
    assert y[0, 9:12].abs().sum() == 0 and y[0, 15:18].abs().sum() == 0
    assert y[0, 0:9, 0].abs().sum() == 0


def test_dilation_grows_with_temporal_step(cpu_backend: str) -> None:
    # Impulses at frame 0 pixel (0, 0) and frame 2 pixel (2, 2): seen from frame 2 at tau=-2
    # the partner sits at displacement (-2, -2) = (-1, -1) * d with d=2, i.e. ky=kx=0.
    x = torch.zeros(1, 1, 3, 3, 3)
    x[0, 0, 0, 0, 0] = 5.0
    x[0, 0, 2, 2, 2] = 7.0
    y = correlation(x, 3, 2)  # offsets (-2, -1, +1, +2), 9 channels each
    assert y[0, 0, 2, 2, 2] == 35.0  # tau=-2 (index 0), ky=0, kx=0
    assert y[0, 3 * 9 + 8, 0, 0, 0] == 35.0  # tau=+2 (index 3), ky=2, kx=2 from frame 0
    assert torch.count_nonzero(y) == 2  # no other pair of non-zero pixels is in reach


def test_matches_literal_definition(cpu_backend: str) -> None:
    torch.manual_seed(1)
    x = torch.randn(2, 3, 4, 4, 5, dtype=torch.float64)
    for k, big_l in [(1, 1), (3, 2), (5, 1), (3, 3)]:
        torch.testing.assert_close(correlation(x, k, big_l), literal_correlation(x, k, big_l), **F64_TOL)
        torch.testing.assert_close(
            correlation_reference(x, k, big_l), literal_correlation(x, k, big_l), **F64_TOL
        )


# --- fast paths against the reference ----------------------------------------------------------

SHAPES = [
    (1, 4, 5, 6, 7),
    (2, 3, 1, 5, 5),  # T = 1: every partner frame is outside
    (1, 2, 4, 2, 3),  # H, W smaller than the window
    (1, 5, 3, 9, 33),  # W over several register blocks, odd: a half-block tail
    (3, 1, 6, 4, 17),
]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("k", "big_l"), [(1, 1), (3, 1), (3, 2), (5, 2), (5, 3), (7, 1), (7, 3)])
def test_matches_reference(shape: tuple[int, ...], k: int, big_l: int, cpu_backend: str) -> None:
    torch.manual_seed(hash((shape, k, big_l)) % 2**31)
    x = torch.randn(shape, dtype=torch.float64)
    expected = correlation_reference(x, k, big_l)
    torch.testing.assert_close(correlation(x, k, big_l), expected, **F64_TOL)
    torch.testing.assert_close(correlation(x.float(), k, big_l), expected.float(), **F32_TOL)


@pytest.mark.parametrize(
    ("shape", "k", "big_l"),
    [
        ((2, 3, 5, 6, 19), 5, 2),
        ((1, 2, 4, 3, 40), 3, 3),
        ((1, 1, 2, 9, 5), 7, 1),
        ((3, 3200, 2, 32, 16), 1, 1),  # 26 MB padded per element: passes of 2 elements, then 1
        ((1, 8200, 2, 32, 16), 1, 1),  # 67 MB, over the kept 64 MiB: scratch for this call only
    ],
)
def test_kernel_writes_every_output_element(shape: tuple[int, ...], k: int, big_l: int) -> None:
    # The kernel never relies on a zeroed output: start from NaN and expect the exact reference.
    lib = _cpu_kernel._library()
    if lib is None:
        pytest.skip("compiled CPU kernel not built")
    x = torch.randn(shape, dtype=torch.float64)
    y = torch.full((shape[0], k * k * 2 * big_l, *shape[2:]), float("nan"), dtype=torch.float64)
    status = lib.dcf_correlation_forward_f64(x.data_ptr(), y.data_ptr(), *shape, k, big_l, 2)
    assert status == 0
    torch.testing.assert_close(y, correlation_reference(x, k, big_l), **F64_TOL)
    grad_y = torch.randn_like(y)
    grad_x = torch.full_like(x, float("nan"))
    status = lib.dcf_correlation_backward_f64(
        grad_y.data_ptr(), x.data_ptr(), grad_x.data_ptr(), *shape, k, big_l, 2
    )
    assert status == 0
    torch.testing.assert_close(grad_x, correlation_backward_reference(grad_y, x, k, big_l), **F64_TOL)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_kernel_writes_every_output_element_at_every_width(dtype: torch.dtype) -> None:
    # Rows of 1 to 37 columns: whole register blocks of 16, 8 or 4 columns, then one block as narrow
    # as covers the rest, often partial (masked stores that must write inside the row only).
    lib = _cpu_kernel._library()
    if lib is None:
        pytest.skip("compiled CPU kernel not built")
    forward = lib.dcf_correlation_forward_f32 if dtype == torch.float32 else lib.dcf_correlation_forward_f64
    tol = F32_TOL if dtype == torch.float32 else F64_TOL
    for w in range(1, 38):
        for k, big_l in [(5, 2), (3, 1)]:
            x = torch.randn(1, 3, 3, 4, w, dtype=torch.float64)
            xd = x.to(dtype)  # kept alive for the call
            y = torch.full((1, k * k * 2 * big_l, 3, 4, w), float("nan"), dtype=dtype)
            assert forward(xd.data_ptr(), y.data_ptr(), 1, 3, 3, 4, w, k, big_l, 2) == 0
            torch.testing.assert_close(y, correlation_reference(x, k, big_l).to(dtype), **tol, msg=f"W={w}")


@pytest.mark.skipif(
    not _cpu_kernel.available() or _cpu_kernel.instruction_set() == "baseline",
    reason="the compiled kernel is not built, or this CPU runs its baseline kernels only",
)
@pytest.mark.parametrize("isa", ["avx2", "baseline"])
def test_narrower_instruction_sets_match_the_reference(isa: str) -> None:
    # The row kernels differ per instruction set (register blocks of 16, 8 or 4 float32 columns):
    # run the reference comparisons again with the kernel capped at the narrower ones. The cap is
    # read once per process, hence the child pytest.
    if isa == "avx2" and _cpu_kernel.instruction_set() != "avx512":
        pytest.skip("this CPU's widest kernel is avx2: the main run covers it")
    env = {**os.environ, "DCF_CPU_ISA": isa}
    code = "from dcf.ops import _cpu_kernel; print(_cpu_kernel.instruction_set())"
    used = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert used.stdout.strip() == isa
    selection = "(matches_reference or literal or backward_matches or gradcheck) and kernel or writes_every"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__, "-k", selection],
        env=env, capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:]
    assert " passed" in result.stdout and "failed" not in result.stdout


KEPT_SCRATCH_BYTES = 64 << 20  # kKeptScratchBytes in csrc/correlation_cpu.cpp
# A backward (K=5, L=2) whose padded copies take 232 MB for the whole batch, 39 MB for one
# element (mostly grad_y's 100 channels on 184-pixel rows), so it runs in passes of one element.
LARGE_SHAPE = (6, 8, 8, 56, 184)
SMALL_SHAPE = (1, 4, 3, 8, 8)


def test_kernel_scratch_does_not_grow_with_the_batch() -> None:
    lib = _cpu_kernel._library()
    if lib is None:
        pytest.skip("compiled CPU kernel not built")
    scratch_bytes = lib.dcf_correlation_scratch_bytes  # what the calling thread keeps between calls
    scratch_bytes.restype = ctypes.c_int64
    kept: list[int] = []

    def calls() -> None:  # in a fresh thread, which keeps nothing yet
        kept.append(scratch_bytes())
        kernel_backward(*backward_inputs(SMALL_SHAPE))
        kept.append(scratch_bytes())
        kernel_backward(*backward_inputs(LARGE_SHAPE))
        kept.append(scratch_bytes())

    thread = threading.Thread(target=calls)
    thread.start()
    thread.join()
    fresh, small, large = kept
    assert fresh == 0 and small > 0  # a small call's scratch stays for the next call
    assert large <= 2 * KEPT_SCRATCH_BYTES  # float32 copies of x and grad_y, whatever the batch


def test_kernel_returns_large_scratch_to_the_system() -> None:
    # The resident set size (VmRSS) a fresh process gains in its first large backward, inputs and
    # output already resident: one pass's padded copies (39 MB) stay for the next call; the old
    # grow-only scratch kept the whole batch's 232 MB.
    if _cpu_kernel._library() is None:
        pytest.skip("compiled CPU kernel not built")
    if not Path("/proc/self/status").is_file():
        pytest.skip("needs /proc/self/status (Linux) to read the resident set size")
    code = f"""
from tests.support.correlation import backward_inputs, kernel_backward

def rss():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:"))

kernel_backward(*backward_inputs({SMALL_SHAPE}))  # starts the thread pool
large = backward_inputs({LARGE_SHAPE})
before = rss()
kernel_backward(*large)
print(rss() - before)
"""
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    held = int(result.stdout.strip().splitlines()[-1])
    assert held <= 2 * KEPT_SCRATCH_BYTES, f"{held / 2**20:.0f} MiB still resident after the call"


def test_kernel_rejects_bad_arguments() -> None:
    lib = _cpu_kernel._library()
    if lib is None:
        pytest.skip("compiled CPU kernel not built")
    x = torch.randn(1, 2, 2, 3, 3)
    y = torch.empty(1, 8 * 2, 2, 3, 3)
    assert lib.dcf_correlation_forward_f32(x.data_ptr(), y.data_ptr(), 1, 2, 2, 3, 3, 4, 1, 1) == 2  # even K
    assert lib.dcf_correlation_forward_f32(x.data_ptr(), y.data_ptr(), 1, 2, 2, 3, 3, 3, 0, 1) == 2  # L < 1


def test_non_contiguous_input(cpu_backend: str) -> None:
    torch.manual_seed(2)
    base = torch.randn(2, 6, 5, 7, 9, dtype=torch.float64)
    for x in (base[:, ::2], base.transpose(3, 4), base[..., 1:-1]):
        assert not x.is_contiguous()
        torch.testing.assert_close(
            correlation(x, 3, 2), correlation_reference(x.contiguous(), 3, 2), **F64_TOL
        )


def test_empty_batch(cpu_backend: str) -> None:
    y = correlation(torch.randn(0, 4, 3, 5, 5), 5, 2)
    assert y.shape == (0, 100, 3, 5, 5)
    x = torch.randn(0, 4, 3, 5, 5, requires_grad=True)
    y = correlation(x, 3, 1)
    (grad,) = torch.autograd.grad(y.sum(), x)
    assert grad.shape == x.shape


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision(dtype: torch.dtype, cpu_backend: str) -> None:
    torch.manual_seed(3)
    x = torch.randn(1, 8, 4, 6, 10).to(dtype)
    y = correlation(x, 5, 2)
    assert y.dtype == dtype
    expected = correlation_reference(x.double(), 5, 2)
    torch.testing.assert_close(y.double(), expected, **HALF_TOL[dtype])


# 64 channels all 40: each in-frame entry sums 64 * 1600 = 102400 before the 1/sqrt(64) scale, past
# float16's 65504; summed in float32 it is exactly 12800. The gradient (grad_y all 40) sums 1600 per
# in-frame product, 72 of them at the centre (2L*K*K = 36 as first factor, as many as partner):
# 115200, exactly 14400 after the scale. Every value is exact in float16.
OVERFLOW_X = torch.full((1, 64, 5, 5, 5), 40.0, dtype=torch.float16)
OVERFLOW_GRAD_Y = torch.full((1, 36, 5, 5, 5), 40.0, dtype=torch.float16)  # K=3, L=2


def _check_half_sums(actual: torch.Tensor, expected: torch.Tensor) -> None:
    assert actual.dtype == torch.float16 and torch.isfinite(actual).all()
    torch.testing.assert_close(actual, expected, **HALF_TOL[torch.float16])
    assert torch.equal(actual, expected)  # the sums are exact, so is the one rounding


def test_half_forward_sums_in_float32(cpu_backend: str) -> None:
    expected = correlation_reference(OVERFLOW_X.float(), 3, 2).half()
    assert set(expected.unique().tolist()) == {0.0, 12800.0}
    _check_half_sums(correlation_reference(OVERFLOW_X, 3, 2), expected)
    _check_half_sums(correlation(OVERFLOW_X, 3, 2), expected)


def test_half_backward_sums_in_float32(cpu_backend: str) -> None:
    expected = correlation_backward_reference(OVERFLOW_GRAD_Y.float(), OVERFLOW_X.float(), 3, 2).half()
    assert torch.all(expected[0, :, 2, 2, 2] == 14400.0)
    _check_half_sums(correlation_backward_reference(OVERFLOW_GRAD_Y, OVERFLOW_X, 3, 2), expected)
    x = OVERFLOW_X.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(correlation(x, 3, 2), x, OVERFLOW_GRAD_Y)
    _check_half_sums(grad, expected)


# --- gradients and registration -----------------------------------------------------------------


@pytest.mark.parametrize(("k", "big_l"), [(3, 1), (3, 2), (5, 1)])
def test_gradcheck(k: int, big_l: int, cpu_backend: str) -> None:
    torch.manual_seed(4)
    x = torch.randn(1, 2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: correlation(t, k, big_l), (x,))


def test_backward_matches_autograd_of_reference(cpu_backend: str) -> None:
    torch.manual_seed(5)
    x = torch.randn(2, 4, 5, 6, 19, dtype=torch.float64, requires_grad=True)
    grad_y = torch.randn(2, 100, 5, 6, 19, dtype=torch.float64)
    (expected,) = torch.autograd.grad(correlation_reference(x, 5, 2), x, grad_y)
    (actual,) = torch.autograd.grad(correlation(x, 5, 2), x, grad_y)
    torch.testing.assert_close(actual, expected, **F64_TOL)
    torch.testing.assert_close(correlation_backward_reference(grad_y, x.detach(), 5, 2), expected, **F64_TOL)
    (actual32,) = torch.autograd.grad(correlation(x.float(), 5, 2), x, grad_y.float())
    torch.testing.assert_close(actual32, expected, rtol=1e-5, atol=1e-4, check_dtype=False)


def test_opcheck(cpu_backend: str) -> None:
    x = torch.randn(2, 3, 4, 5, 6, requires_grad=True)
    torch.library.opcheck(torch.ops.dcf.correlation.default, (x, 3, 2))
    grad = torch.randn(2, 36, 4, 5, 6)
    torch.library.opcheck(torch.ops.dcf.correlation_backward.default, (grad, x.detach(), 3, 2))


def test_export_sees_one_op() -> None:
    class Net(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return correlation(x, 5, 2) * 2

    program = torch.export.export(Net(), (torch.randn(1, 4, 3, 8, 8),))
    targets = [node.target for node in program.graph.nodes if node.op == "call_function"]
    assert targets.count(torch.ops.dcf.correlation.default) == 1


def test_compile_without_graph_breaks() -> None:
    x = torch.randn(1, 4, 3, 8, 8, requires_grad=True)
    compiled = torch.compile(
        lambda t: correlation(t, 3, 1).square().sum(), fullgraph=True, backend="aot_eager"
    )
    (grad,) = torch.autograd.grad(compiled(x), x)
    (expected,) = torch.autograd.grad(correlation_reference(x, 3, 1).square().sum(), x)
    torch.testing.assert_close(grad, expected, **F32_TOL)


def test_flop_counter_counts_the_op() -> None:
    x = torch.randn(2, 12, 13, 10, 10, requires_grad=True)
    macs = correlation_macs(x.shape, 5, 2)
    assert macs == 2 * 13 * 10 * 10 * 12 * 25 * 4
    with FlopCounterMode(display=False) as counter:
        y = correlation(x, 5, 2)
    assert counter.get_total_flops() == 2 * macs  # a multiply-add is 2 FLOPs for the counter
    with FlopCounterMode(display=False) as counter:
        y.sum().backward()
    assert counter.get_total_flops() == 4 * macs


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("op", [correlation, torch.ops.dcf.correlation])
def test_error_messages(op) -> None:  # type: ignore[no-untyped-def]
    x = torch.randn(1, 2, 3, 4, 4)
    with pytest.raises(
        ValueError,
        match=r"^correlation: expected a 5-D input \(N, C, T, H, W\), got a 4-D tensor of shape \(2, 3, 4, 4\)$",
    ):
        op(x[0], 3, 1)
    with pytest.raises(ValueError, match=r"^correlation: kernel_size must be a positive odd integer, got 4$"):
        op(x, 4, 1)
    with pytest.raises(ValueError, match=r"^correlation: temporal_range must be >= 1, got 0$"):
        op(x, 3, 0)
    with pytest.raises(ValueError, match=r"^correlation: expected a floating-point input, got torch.int64$"):
        op(x.long(), 3, 1)


def test_large_kernel_falls_back_to_reference() -> None:
    # The compiled kernel covers K <= 11; larger windows still compute, through the reference.
    torch.manual_seed(6)
    x = torch.randn(1, 2, 2, 3, 14, dtype=torch.float64)
    torch.testing.assert_close(correlation(x, 13, 1), literal_correlation(x, 13, 1), **F64_TOL)


def test_disabled_kernel_logs_and_still_computes() -> None:
    code = (
        "import torch, dcf\n"
        "x = torch.randn(1, 3, 4, 5, 6, dtype=torch.float64)\n"
        "from dcf.ops import correlation_reference\n"
        "assert torch.equal(dcf.correlation(x, 3, 2), correlation_reference(x, 3, 2))\n"
    )
    env = {**os.environ, "DCF_CPU_KERNEL": "0"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert "compiled CPU correlation kernel disabled by DCF_CPU_KERNEL=0" in result.stderr
    assert "pure-PyTorch path" in result.stderr


def test_kernel_availability_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        correlation(torch.randn(1, 2, 2, 3, 3), 3, 1)
    assert not [r for r in caplog.records if "kernel" in r.getMessage()]  # loaded earlier, silently
