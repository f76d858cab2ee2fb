"""Shared fixtures: both backends of the correlation op, and GPU/TensorRT markers."""

from __future__ import annotations

import pytest
import torch

from dcf.ops import _cpu_kernel


@pytest.fixture(params=["kernel", "pure"])
def cpu_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs a test on the compiled CPU kernel and on the pure-PyTorch fallback."""
    if request.param == "kernel":
        if not _cpu_kernel.available():
            pytest.skip("compiled CPU kernel not built")
    else:
        monkeypatch.setattr(_cpu_kernel, "available", lambda: False)
    return str(request.param)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_gpu = pytest.mark.skip(reason="no CUDA GPU on this machine")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)
