"""The DCF networks on a GPU under mixed precision, with the correlation op on the CUDA kernel
(needs a GPU: ``tools/gpu_check.sh`` runs it there)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from dcf.models import build_model
from dcf.ops import _cuda_kernel
from tests.support.builds import cuda_kernel

pytestmark = pytest.mark.gpu

NETWORKS = [("x3d_s_dcf", 13, 160), ("r2plus1d_r50_dcf", 8, 224)]  # the paper's clip shapes


@pytest.fixture(scope="module", autouse=True)
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with cuda_kernel(tmp_path_factory.mktemp("cuda")):
        yield


@pytest.mark.parametrize(("name", "frames", "size"), NETWORKS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_forward_and_backward_under_autocast(
    name: str, frames: int, size: int, dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(0)
    model = build_model(name, num_classes=10).cuda()
    for block in model.blocks.values():  # a fresh block is the identity: make it count
        torch.nn.init.normal_(block.bn2.weight, std=0.5)
    clips = torch.randn(2, 3, frames, size, size, device="cuda")
    launched: list[torch.dtype] = []
    forward = _cuda_kernel.forward

    def counted(x: torch.Tensor, kernel_size: int, temporal_range: int) -> torch.Tensor:
        launched.append(x.dtype)
        return forward(x, kernel_size, temporal_range)

    monkeypatch.setattr(_cuda_kernel, "forward", counted)
    model.eval()
    with torch.no_grad():
        full = model(clips)  # float32, on the same kernel
        with torch.autocast("cuda", dtype=dtype):
            mixed = model(clips).float()
    assert dtype in launched  # the autocast pass ran the kernel on half-precision features
    # Mixed precision against float32: a few units of the 8- or 11-bit mantissa, relative to the logits.
    scale = full.abs().max()
    tolerance = 0.05 if dtype == torch.bfloat16 else 0.01
    assert (mixed - full).abs().max() <= tolerance * scale, ((mixed - full).abs().max(), scale)
    model.train()  # and training: forward and backward under autocast
    with torch.autocast("cuda", dtype=dtype):
        logits = model(clips)
    logits.float().square().mean().backward()
    assert torch.isfinite(logits).all()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
