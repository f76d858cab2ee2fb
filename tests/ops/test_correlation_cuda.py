"""``dcf.ops.correlation`` on CUDA tensors: the plugin's kernel against the reference (needs a GPU;
the module builds ``trt_plugins`` for the device it finds)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from dcf.ops import _cuda_kernel, correlation
from dcf.ops.reference import correlation_backward_reference, correlation_reference
from tests.support.builds import cuda_kernel

pytestmark = pytest.mark.gpu

# fp32: summation order only. fp16: inputs and outputs rounded to 11 bits, accumulation in fp32.
FP32 = {"rtol": 1e-5, "atol": 1e-5}
FP16 = {"rtol": 2e-3, "atol": 2e-3}

SHAPES = [
    ((1, 12, 13, 40, 40), 5, 2),  # X3D-S stage 2
    ((2, 24, 13, 20, 20), 5, 2),  # X3D-S stage 3
    ((2, 48, 13, 10, 10), 5, 1),  # X3D-S stage 4
    ((1, 64, 8, 56, 56), 5, 2),  # R(2+1)D-50 stage 2
    ((3, 5, 1, 7, 9), 3, 3),  # one frame, fewer frames than L
    ((1, 4, 6, 3, 2), 7, 2),  # maps smaller than the window
    ((2, 3, 4, 33, 65), 9, 1),  # odd sizes, the largest window
    ((0, 4, 3, 8, 8), 5, 2),  # empty batch
]


@pytest.fixture(scope="module", autouse=True)
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with cuda_kernel(tmp_path_factory.mktemp("cuda")):
        yield


@pytest.mark.parametrize(("shape", "k", "big_l"), SHAPES)
def test_forward_and_backward_fp32(shape, k: int, big_l: int) -> None:
    x = torch.randn(shape, device="cuda", requires_grad=True)
    y = correlation(x, k, big_l)
    torch.testing.assert_close(y, correlation_reference(x.detach().double(), k, big_l).float(), **FP32)
    grad_y = torch.randn_like(y)
    (grad_x,) = torch.autograd.grad(y, x, grad_y)
    expected = correlation_backward_reference(grad_y.double(), x.detach().double(), k, big_l).float()
    torch.testing.assert_close(grad_x, expected, **FP32)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_types(dtype: torch.dtype) -> None:
    x = torch.randn(2, 12, 5, 17, 23, device="cuda").to(dtype)
    y = correlation(x, 5, 2)
    assert y.dtype == dtype
    expected = correlation_reference(x.double(), 5, 2).float()
    tolerance = FP16 if dtype == torch.float16 else {"rtol": 1e-2, "atol": 1e-2}
    torch.testing.assert_close(y.float(), expected, **tolerance)


def test_non_contiguous_input_and_side_stream() -> None:
    base = torch.randn(2, 8, 6, 20, 30, device="cuda")
    x = base[:, :, :, :, ::2]  # non-contiguous
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        y = correlation(x, 5, 2)
    stream.synchronize()
    torch.testing.assert_close(y, correlation_reference(x.double(), 5, 2).float(), **FP32)


def test_every_output_element_is_written() -> None:
    import ctypes

    x = torch.randn(1, 6, 4, 9, 11, device="cuda")
    y = torch.full((1, 50, 4, 9, 11), float("nan"), device="cuda")
    lib = _cuda_kernel._library()
    assert lib is not None
    status = lib.dcf_correlation_cuda_forward(
        0,
        x.data_ptr(),
        y.data_ptr(),
        1,
        6,
        4,
        9,
        11,
        5,
        2,
        ctypes.c_void_p(torch.cuda.current_stream().cuda_stream),
    )
    torch.cuda.synchronize()
    assert status == 0 and not y.isnan().any()


def test_float64_takes_the_reference() -> None:
    x = torch.randn(1, 3, 3, 6, 6, device="cuda", dtype=torch.float64, requires_grad=True)
    assert not _cuda_kernel.supports(x, 5)
    assert torch.autograd.gradcheck(lambda t: correlation(t, 3, 1), (x,))


def test_too_tall_input_takes_the_reference() -> None:
    # One row more than the launch grid covers: the kernel would refuse it, the op falls back.
    x = torch.randn(1, 2, 2, _cuda_kernel.MAX_HEIGHT + 1, 1, device="cuda", requires_grad=True)
    assert not _cuda_kernel.supports(x, 1)
    y = correlation(x, 1, 1)
    torch.testing.assert_close(y, correlation_reference(x.detach().double(), 1, 1).float(), **FP32)
    grad_y = torch.randn_like(y)
    (grad_x,) = torch.autograd.grad(y, x, grad_y)
    expected = correlation_backward_reference(grad_y.double(), x.detach().double(), 1, 1).float()
    torch.testing.assert_close(grad_x, expected, **FP32)
