"""Backbones, DCF networks and the registry (DESIGN.md sections 2 and 4)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import dcf
from dcf.models import DCFConfig, DCFNet, count_macs, count_parameters, get_model_entry
from dcf.models.dcf_net import pool_pyramid
from dcf.models.layers import DCFBlock
from dcf.models.registry import register_model
from dcf.models.zoo import PAPER_TABLE3
from dcf.ops import _cpu_kernel

ALL_NAMES = [
    "r2plus1d_r101",
    "r2plus1d_r101_dcf",
    "r2plus1d_r50",
    "r2plus1d_r50_dcf",
    "x3d_l",
    "x3d_l_dcf",
    "x3d_m",
    "x3d_m_dcf",
    "x3d_s",
    "x3d_s_dcf",
    "x3d_xs",
    "x3d_xs_dcf",
]


def test_registry_lists_the_design_names() -> None:
    assert dcf.list_models() == ALL_NAMES


def test_unknown_name_suggests() -> None:
    with pytest.raises(ValueError, match=r"unknown model 'x3d_sdcf'\. Did you mean 'x3d_s_dcf'"):
        dcf.build_model("x3d_sdcf")


def test_duplicate_registration_fails() -> None:
    with pytest.raises(ValueError, match="model 'x3d_s' is already registered"):
        register_model("x3d_s", lambda **kw: nn.Identity(), num_frames=1, crop_size=1, description="")


@pytest.mark.parametrize("name", ALL_NAMES)
def test_forward_shape(name: str) -> None:
    torch.manual_seed(0)
    model = dcf.build_model(name, num_classes=7).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 4, 48, 48))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("size", [36, 50, 33])
def test_pyramid_handles_odd_sizes(size: int) -> None:
    # Stage outputs round up (stride-2 convs with padding 1); the pyramid pooling must agree.
    model = dcf.build_model("x3d_xs_dcf", num_classes=3).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 3, size, size)).shape == (1, 3)


@pytest.mark.skipif(not _cpu_kernel.available(), reason="the compiled CPU kernel is not built")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "shape",
    [
        (2, 100, 3, 40, 40),
        (1, 6, 2, 7, 9),
        (1, 3, 2, 13, 5),
        (2, 4, 1, 3, 2),
        (1, 2, 2, 2, 7),
        (0, 4, 2, 6, 6),
    ],
)
def test_pyramid_step_on_the_compiled_kernel_is_avg_pool3d_rounding_up(
    shape: tuple[int, ...], dtype: torch.dtype
) -> None:
    # At inference on the CPU, pool_pyramid runs the compiled step; its meaning is PyTorch's
    # avg_pool3d rounding up (a cut window averages what it holds), to float rounding: the kernel
    # sums a window's rows first (written tolerance: 2 ulp of the largest value).
    volume = torch.randn(shape, dtype=dtype, generator=torch.Generator().manual_seed(3)) * 10
    expected = nn.functional.avg_pool3d(volume, (1, 2, 2), (1, 2, 2), ceil_mode=True)
    with torch.inference_mode():
        assert _cpu_kernel.pools(volume)
        actual = pool_pyramid(volume)
    eps = torch.finfo(dtype).eps
    scale = float(volume.abs().amax()) if volume.numel() else 1.0
    torch.testing.assert_close(actual, expected, rtol=2 * eps, atol=2 * eps * scale)


def test_pyramid_step_keeps_avg_pool3d_where_gradients_or_tracers_need_it() -> None:
    # Training (a volume that requires grad), half precision and the exporters'
    # fake tensors take avg_pool3d; the gradient is avg_pool3d's.
    volume = torch.randn(1, 4, 2, 6, 6, requires_grad=True)
    assert not _cpu_kernel.pools(volume)
    pool_pyramid(volume).sum().backward()
    assert volume.grad is not None
    torch.testing.assert_close(volume.grad, torch.full_like(volume, 0.25))
    assert not _cpu_kernel.pools(volume.detach().half())
    with torch._subclasses.FakeTensorMode():
        assert not _cpu_kernel.pools(torch.empty(1, 4, 2, 6, 6))


@pytest.mark.parametrize("name", ["x3d_xs_dcf", "r2plus1d_r50_dcf"])
def test_gradients_reach_every_parameter(name: str) -> None:
    torch.manual_seed(0)
    model = dcf.build_model(name, num_classes=5)
    # A fresh DCF block is the identity (zero-scale last norm), which also blocks its gradient;
    # give those scales a value so that the test sees every path.
    for block in model.blocks.values():
        nn.init.constant_(block.bn2.weight, 0.5)
    model.train()
    loss = nn.functional.cross_entropy(model(torch.randn(2, 3, 4, 64, 64)), torch.tensor([1, 3]))
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


@pytest.mark.parametrize(("channels", "concatenate"), [(32, False), (256, True)])
def test_both_forms_of_conv2_compute_the_convolution_of_the_concatenation(
    channels: int, concatenate: bool
) -> None:
    # DCFBlock._conv2 reads [S, *pyramid] (200 channels) as one convolution of the concatenation
    # (output no narrower) or as one per volume, summed (narrower output): either is the
    # convolution of the concatenation (float64 reference).
    torch.manual_seed(0)
    block = DCFBlock(channels, 8, temporal_range=1, pyramid_channels=50 + 100).double()
    assert block.concatenate_volumes is concatenate
    parts = [torch.randn(2, c, 3, 5, 7, dtype=torch.float64) for c in (50, 50, 100)]
    expected = nn.functional.conv3d(torch.cat(parts, dim=1), block.conv2.weight)
    torch.testing.assert_close(block._conv2(parts), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("backbone", "variant"), [("x3d_xs", "x3d_xs_dcf"), ("r2plus1d_r50", "r2plus1d_r50_dcf")]
)
def test_fresh_dcf_network_equals_its_backbone(backbone: str, variant: str) -> None:
    # Inserting DCF into a (pretrained) backbone must not change what it computes.
    torch.manual_seed(0)
    base = dcf.build_model(backbone, num_classes=6).eval()
    net = dcf.build_model(variant, num_classes=6).eval()
    net.backbone.load_state_dict(base.state_dict())
    x = torch.randn(1, 3, 4, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(net(x), base(x))


def test_dcf_blocks_follow_the_paper() -> None:
    net = dcf.build_model("x3d_s_dcf")
    assert isinstance(net, DCFNet)
    blocks = net.blocks
    assert list(blocks) == ["stage2", "stage3", "stage4"]
    # X3D halves the stage channels; L = 2, 2, 1; each block also reads all earlier volumes.
    assert [b.conv1.out_channels for b in blocks.values()] == [12, 24, 48]
    assert [b.correlation.temporal_range for b in blocks.values()] == [2, 2, 1]
    assert [b.conv2.in_channels for b in blocks.values()] == [100, 200, 250]
    r50 = dcf.build_model("r2plus1d_r50_dcf")
    assert [b.conv1.out_channels for b in r50.blocks.values()] == [64, 128, 256]  # a quarter


def test_dcf_config_variants() -> None:
    no_pyramid = dcf.build_model("x3d_xs_dcf", dcf=DCFConfig(pyramid=False))
    assert [b.conv2.in_channels for b in no_pyramid.blocks.values()] == [100, 100, 50]
    two = dcf.build_model("x3d_xs_dcf", dcf=DCFConfig(stages=(2, 4), temporal_ranges=(2, 1)))
    assert [b.conv2.in_channels for b in two.blocks.values()] == [100, 150]
    with torch.no_grad():
        assert two.eval()(torch.randn(1, 3, 3, 64, 64)).shape == (1, 400)
    with pytest.raises(ValueError, match="one temporal range per stage"):
        DCFConfig(stages=(2, 3), temporal_ranges=(1,))
    with pytest.raises(ValueError, match="stages must be increasing stage numbers >= 2"):
        DCFConfig(stages=(3, 2), temporal_ranges=(1, 1))
    with pytest.raises(ValueError, match=r"the backbone has stages 2\.\.5"):
        dcf.build_model("x3d_xs_dcf", dcf=DCFConfig(stages=(6,), temporal_ranges=(1,)))


@pytest.mark.parametrize("name", sorted(PAPER_TABLE3))
def test_table3_figures_within_ten_percent(name: str) -> None:
    entry = get_model_entry(name)
    with torch.device("meta"):
        model = entry.builder(num_classes=174)
    params = count_parameters(model)
    macs = count_macs(model, (1, 3, entry.num_frames, entry.crop_size, entry.crop_size))
    paper_params, paper_macs = PAPER_TABLE3[name]
    assert abs(params / paper_params - 1) <= 0.10, (params, paper_params)
    assert abs(macs / paper_macs - 1) <= 0.10, (macs, paper_macs)


def test_count_macs_leaves_a_real_model_alone() -> None:
    model = dcf.build_model("x3d_xs", num_classes=5)
    before = next(model.parameters()).clone()
    assert count_macs(model, (1, 3, 4, 64, 64)) > 0
    assert next(model.parameters()).device.type == "cpu"
    torch.testing.assert_close(next(model.parameters()), before)
