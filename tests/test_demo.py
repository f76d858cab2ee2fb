"""The bundled demo model: loads offline by name and recognises freshly generated motion."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import dcf
from dcf.checkpoint import checkpoint_of, resolve_checkpoint
from dcf.data.synthetic import CLASS_NAMES, generate

SEED = 1234  # a split the demo model never saw (it trained on seed 0, selected on seed 1)


def test_demo_is_small_and_self_describing() -> None:
    path = resolve_checkpoint("demo")
    assert path.stat().st_size <= 10 * 2**20
    model = dcf.load_checkpoint("demo")
    config = checkpoint_of(model)
    assert not model.training
    assert sorted(config.classes) == sorted(CLASS_NAMES)
    assert config.architecture == "x3d_xs_dcf"
    assert config.input_spec.num_frames == 8


@pytest.mark.slow
def test_demo_recognises_unseen_videos(tmp_path: Path) -> None:
    generate(tmp_path, seed=SEED, videos_per_class=3, split="test", num_frames=24, size=96, progress=False)
    cmd = [
        sys.executable,
        "-m",
        "dcf",
        "eval",
        "--checkpoint",
        "demo",
        "--data",
        str(tmp_path),
        "--split",
        "test",
        "--json",
        "--workers",
        "0",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    scores = json.loads(result.stdout)
    assert scores["videos"] == 36
    assert scores["top1"] >= 75.0  # 36 videos: a ~90% model passes with a wide margin
