"""A tiny real training run through the CLI: train, kill, resume, evaluate; and DDP on CPU."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from dcf.checkpoint import load_checkpoint
from dcf.data.synthetic import generate
from dcf.training.engine import read_metrics

TINY = [
    'model.architecture="x3d_xs_dcf"',
    "model.kwargs={widths=[8, 16, 32, 64], stem_width=8, head_width=32}",
    "data.num_frames=4",
    "data.crop_size=32",
    "data.workers=0",
    "optim.batch_size=6",
    "optim.lr=0.05",
    "optim.warmup_epochs=0.5",
]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    generate(root, seed=0, videos_per_class=1, split="train", num_frames=8, size=40, progress=False)
    generate(root, seed=1, videos_per_class=1, split="val", num_frames=8, size=40, progress=False)
    return root


def dcf_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "dcf", *args]


def train_args(data: Path, out: Path, epochs: int) -> list[str]:
    sets = [*TINY, f'data.root="{data}"', f'run.out="{out}"', f"optim.epochs={epochs}"]
    return ["train", "--no-progress", *[a for s in sets for a in ("--set", s)]]


def epochs_logged(out: Path) -> list[int]:
    return [record["epoch"] for record in read_metrics(out / "metrics.jsonl")]


@pytest.mark.slow
def test_train_kill_resume_eval(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = subprocess.Popen(
        dcf_cmd(*train_args(dataset, out, 6)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 240
    while len(epochs_logged(out)) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = epochs_logged(out)
    assert 2 <= len(done) < 6, "the run should have been killed mid-way"
    assert (out / "last.safetensors").exists() and (out / "last.state.safetensors").exists()
    # The kill may land after an epoch's last.safetensors was written and before its state was: make
    # that case certain. The resume must take weights and optimizer from the state file, of one epoch
    # (reading last.safetensors, it trained an epoch twice: BatchNorm counters one epoch ahead).
    with safe_open(str(out / "last.safetensors"), framework="pt") as f:
        metadata = f.metadata()
    ahead = {name: value + 1 for name, value in load_file(out / "last.safetensors").items()}
    save_file(ahead, out / "last.safetensors", metadata=metadata)

    resumed = subprocess.run(
        dcf_cmd(*train_args(dataset, out, 6), "--resume"), capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {out} after epoch" in resumed.stderr
    assert epochs_logged(out) == list(range(1, 7))  # nothing skipped, nothing logged twice

    model = load_checkpoint(out / "best.safetensors")
    assert len(model.classes) == 12
    result = subprocess.run(
        dcf_cmd(
            "eval",
            "--checkpoint",
            str(out / "best.safetensors"),
            "--data",
            str(dataset),
            "--split",
            "val",
            "--json",
            "--workers",
            "0",
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    scores = json.loads(result.stdout)
    assert set(scores) == {"top1", "top5", "videos"} and scores["videos"] == 12
    assert 0 <= scores["top1"] <= scores["top5"] <= 100

    # The same run without the kill, started afresh in the used directory: its own log, and the
    # same weights (resume restores optimizer, RNG and data order exactly).
    resumed_weights = load_file(out / "last.safetensors")
    fresh = subprocess.run(dcf_cmd(*train_args(dataset, out, 6)), capture_output=True, text=True, timeout=300)
    assert fresh.returncode == 0, fresh.stderr
    assert epochs_logged(out) == list(range(1, 7))
    straight_weights = load_file(out / "last.safetensors")
    assert resumed_weights.keys() == straight_weights.keys()
    for name, value in straight_weights.items():
        assert torch.equal(resumed_weights[name], value), name


@pytest.mark.slow
def test_ddp_two_processes_on_cpu(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        "29561",
        "-m",
        "dcf",
        *train_args(dataset, out, 1),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert epochs_logged(out) == [1]  # rank 0 alone writes
    assert "2 process(es)" in result.stderr
    assert load_checkpoint(out / "last.safetensors").classes


def test_eval_rejects_a_bad_checkpoint(tmp_path: Path, dataset: Path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint")
    result = subprocess.run(
        dcf_cmd("eval", "--checkpoint", str(bad), "--data", str(dataset)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "is not a valid safetensors file" in result.stderr and "Traceback" not in result.stderr
