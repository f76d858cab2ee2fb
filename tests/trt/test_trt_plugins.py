"""``trt_plugins/`` built with CMake, and the plugin checked through its creator.

Without a GPU or TensorRT's runtime: the CUDA library builds for sm_80 and sm_90; with TensorRT's
headers (``TENSORRT_ROOT``) the plugin builds too and the harness (``trt_plugins/tests/
pluginHarness.cpp``) checks name, version, fields, output shapes, types, formats, the
serialisation round trip, and that missing, out-of-range or mistyped fields are refused with an
error saying what was expected. On a GPU, the plugin's ``enqueue`` is compared with the reference.
"""

from __future__ import annotations

import ctypes
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from dcf.export.names import CORRELATION_OP
from dcf.ops.reference import correlation_reference
from tests.support.builds import build, tensorrt_root


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("trt_plugins"), "80;90")


def test_cuda_library_builds_and_exports_its_abi(built: Path) -> None:
    library = built / "libdcf_correlation_cuda.so"
    assert library.is_file()
    symbols = subprocess.run(
        ["nm", "-D", "--defined-only", str(library)], capture_output=True, text=True
    ).stdout
    for name in (
        "dcf_correlation_cuda_forward",
        "dcf_correlation_cuda_backward",
        "dcf_correlation_cuda_abi_version",
    ):
        assert name in symbols
    assert ctypes.CDLL(str(library)).dcf_correlation_cuda_abi_version() == 1  # loads without a GPU


@pytest.fixture(scope="module")
def plugin(built: Path) -> Path:
    if tensorrt_root() is None:
        pytest.skip(
            "TensorRT headers not found: set TENSORRT_ROOT to a folder with include/NvInfer.h to build the plugin"
        )
    library = built / "libdcf_trt_plugins.so"
    assert library.is_file()
    return library


def test_plugin_exports_the_registry_entry_points(plugin: Path) -> None:
    symbols = subprocess.run(
        ["nm", "-D", "--defined-only", str(plugin)], capture_output=True, text=True
    ).stdout
    exported = {line.split()[-1] for line in symbols.splitlines() if " T " in line}
    assert exported == {"getCreators", "setLoggerFinder"}


def test_plugin_harness(plugin: Path) -> None:
    result = subprocess.run(
        [str(plugin.parent / "dcf_plugin_harness"), str(plugin)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 failure(s)" in result.stdout
    assert f"PASS plugin name {CORRELATION_OP}" in result.stdout  # the ONNX node's op_type


@pytest.mark.gpu
@pytest.mark.parametrize(("precision", "tolerance"), [("fp32", 1e-5), ("fp16", 2e-3)])
def test_plugin_enqueue_matches_the_reference(
    plugin: Path, tmp_path: Path, precision: str, tolerance: float
) -> None:
    shape, k, big_l = (2, 12, 5, 17, 23), 5, 2
    x = torch.randn(shape, generator=torch.Generator().manual_seed(3))
    (tmp_path / "in.bin").write_bytes(x.numpy().astype(np.float32).tobytes())
    result = subprocess.run(
        [str(plugin.parent / "dcf_plugin_harness"), str(plugin), "--enqueue", str(tmp_path / "in.bin"),
         str(tmp_path / "out.bin"), *map(str, shape), str(k), str(big_l), precision],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    out = np.frombuffer((tmp_path / "out.bin").read_bytes(), np.float32).reshape(
        shape[0], k * k * 2 * big_l, *shape[2:]
    )
    source = x.half().float() if precision == "fp16" else x
    expected = correlation_reference(source.double(), k, big_l).numpy()
    np.testing.assert_allclose(out, expected, rtol=tolerance, atol=tolerance * np.abs(expected).max())


def test_plugin_name_and_version_match_the_onnx_node() -> None:
    """The exporter's op_type and domain version are the plugin's name and version (DESIGN.md §3)."""
    from dcf.export.names import CORRELATION_OP_VERSION
    from tests.support.builds import SOURCE

    header = (SOURCE / "correlationPlugin" / "correlationPlugin.h").read_text()
    assert f'kCorrelationPluginName{{"{CORRELATION_OP}"}}' in header
    assert f'kCorrelationPluginVersion{{"{CORRELATION_OP_VERSION}"}}' in header
