"""A few ``dcf train`` steps on a GPU: mixed precision, the correlation op on the CUDA kernel
(needs a GPU and PyAV for the synthetic videos: ``tools/gpu_check.sh`` carries its wheel)."""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dcf.training.engine import read_metrics
from tests.support.builds import cuda_kernel

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module", autouse=True)
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with cuda_kernel(tmp_path_factory.mktemp("cuda")):
        yield


def test_dcf_train_steps_on_cuda(tmp_path: Path) -> None:
    from dcf.data.synthetic import generate  # PyAV

    data = tmp_path / "synth"
    generate(data, seed=0, videos_per_class=2, split="train", num_frames=16, size=64, progress=False)
    generate(data, seed=1, videos_per_class=1, split="val", num_frames=16, size=64, progress=False)
    out = tmp_path / "run"
    sets = [
        'model.architecture="x3d_xs_dcf"',
        "data.num_frames=8",
        "data.crop_size=64",
        "data.workers=2",
        "optim.batch_size=8",
        "optim.epochs=2",
        "optim.amp=true",
        f'data.root="{data}"',
        f'run.out="{out}"',
    ]
    command = [
        sys.executable,
        "-m",
        "dcf",
        "train",
        "--no-progress",
        *[a for s in sets for a in ("--set", s)],
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "device cuda" in done.stderr, done.stderr
    assert "CUDA correlation kernel not built" not in done.stderr
    metrics = read_metrics(out / "metrics.jsonl")
    assert [m["epoch"] for m in metrics] == [1, 2]
    assert all(math.isfinite(m["loss"]) for m in metrics)
    assert (out / "best.safetensors").is_file()
