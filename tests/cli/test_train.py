"""A tiny real training run through the CLI: train, kill, resume, evaluate; and DDP on CPU."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from dcf.checkpoint import CheckpointConfig, load_checkpoint, save_checkpoint
from dcf.data.spec import IMAGENET_MEAN, IMAGENET_STD, InputSpec
from dcf.data.synthetic import CLASS_NAMES, generate
from dcf.testing.media import write_broken_split
from dcf.testing.server import free_port
from dcf.training.engine import read_metrics
from tests.support.cli import run_dcf

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
    assert set(scores) == {"top1", "top5", "videos", "failed"} and scores["videos"] == 12
    assert scores["failed"] == []
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
def _add_broken_videos(split: Path, folder: Path) -> None:
    """The broken files of :func:`write_broken_split` (written into ``folder``) copied into two
    classes of ``split``: empty, cut short, and text named .mp4."""
    write_broken_split(folder)
    for name in ("a/empty.mp4", "b/cut.mp4", "b/text.mp4"):
        shutil.copy(folder / name, split / CLASS_NAMES[name[0] == "b"] / name[2:])


def _torchrun(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    port = str(free_port())
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", port]
    return subprocess.run([*cmd, "-m", "dcf", *args], capture_output=True, text=True, timeout=300, env=env)


def test_ddp_two_processes_on_cpu(dataset: Path, tmp_path: Path) -> None:
    """Two ranks (gloo) through a frozen and an unfrozen epoch, with broken videos in the training
    split and a validation split where one rank's only video is broken (that rank skips the forward:
    no collective may hang on it); then the broken-video stop, taken by both ranks alike."""
    data = tmp_path / "data"
    shutil.copytree(dataset / "train", data / "train")
    _add_broken_videos(data / "train", tmp_path / "broken")
    for label in CLASS_NAMES:
        (data / "val" / label).mkdir(parents=True)
    shutil.copy(next((dataset / "val" / CLASS_NAMES[0]).iterdir()), data / "val" / CLASS_NAMES[0])
    shutil.copy(tmp_path / "broken" / "b/text.mp4", data / "val" / CLASS_NAMES[1] / "text.mp4")
    out = tmp_path / "ddp"
    result = _torchrun(
        *train_args(data, out, 2), "--set", "data.max_broken=0.2", "--set", "optim.batch_size=4",
        "--freeze-backbone-epochs", "1",  # a DDP wrapper per phase: each reduces the parameters that train in it
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert epochs_logged(out) == [1, 2]  # rank 0 alone writes
    records = read_metrics(out / "metrics.jsonl")
    assert [r["backbone_frozen"] for r in records] == [True, False]
    assert all(r["val_failed"] == 1 and r["train_skipped"] >= 3 for r in records)
    for name in ("empty.mp4", "cut.mp4", "text.mp4"):  # each rank learns the other's: rank 0 warns once
        assert result.stderr.count(f"{name} (another video is drawn)") == 1, result.stderr[-3000:]
    assert "2 process(es)" in result.stderr
    assert load_checkpoint(out / "last.safetensors").classes

    strict = _torchrun(*train_args(data, tmp_path / "strict", 1), "--set", "data.max_broken=0.1")
    assert strict.returncode != 0
    assert (
        strict.stderr.count("more than data.max_broken=0.1 of the split allows (1); stopping") == 2
    )  # both ranks


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


def _tensorboard_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in the TensorBoard event files under ``folder``, read with TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    events = EventMultiplexer().AddRunsFromDirectory(str(folder))
    events.Reload()
    scalars: dict[str, list[tuple[int, float]]] = {}
    for run in events.Runs():
        for tag in events.GetAccumulator(run).Tags()["scalars"]:
            scalars.setdefault(tag, []).extend((e.step, e.value) for e in events.Scalars(run, tag))
    return {tag: sorted(points) for tag, points in scalars.items()}


@pytest.mark.slow  # 16-37 s; the other train tests exercise its libraries (tensorboard too) at the floors
def test_fine_tune_from_init_through_broken_videos(dataset: Path, tmp_path: Path) -> None:
    """``--init`` a converted-style checkpoint (5 classes, ImageNet colours, interval sampling) onto
    the 12-class split with broken files in it, the backbone frozen for the first epoch, TensorBoard
    on; then resumed past the freeze; the threshold; ``dcf eval`` reporting the broken video."""
    pytest.importorskip("tensorboard", reason="needs the tensorboard extra (in the test extra)")
    data = tmp_path / "data"
    shutil.copytree(dataset, data)
    _add_broken_videos(data / "train", tmp_path / "broken")
    shutil.copy(tmp_path / "broken" / "b/text.mp4", data / "val" / CLASS_NAMES[3] / "text.mp4")
    spec = InputSpec.for_crop(4, 32, mean=IMAGENET_MEAN, std=IMAGENET_STD, sampling="interval", interval=2)
    kwargs = {"widths": [8, 16, 32, 64], "stem_width": 8, "head_width": 32}
    init = CheckpointConfig("x3d_xs_dcf", tuple("vwxyz"), spec, model_kwargs=kwargs)
    torch.manual_seed(1)
    save_checkpoint(tmp_path / "init.safetensors", init.build(), init)
    out, board = tmp_path / "run", tmp_path / "tb"
    sets = [
        f'data.root="{data}"', f'run.out="{out}"', "data.workers=0", "optim.batch_size=5", "optim.lr=0.05",
        "data.max_broken=0.2",  # 3 of 15 videos
    ]  # fmt: skip
    args = [
        "train",
        "--no-progress",
        *[a for s in sets for a in ("--set", s)],
        "--init",
        str(tmp_path / "init.safetensors"),
    ]
    first = run_dcf(
        *args, "--freeze-backbone-epochs", "1", "--tensorboard", str(board), "--set", "optim.epochs=1"
    )
    assert first.returncode == 0, first.stderr
    assert "every tensor loaded but the head, new for 12 classes (the checkpoint's has 5)" in first.stderr
    assert "training the DCF blocks and the head" in first.stderr
    for name in ("empty.mp4", "cut.mp4", "text.mp4"):
        assert first.stderr.count(f"{name} (another video is drawn)") == 1, first.stderr
    assert "cannot evaluate" in first.stderr and "text.mp4" in first.stderr
    (epoch1,) = read_metrics(out / "metrics.jsonl")
    # Every video is drawn once per epoch (3 steps of 5): each broken one was skipped, and a
    # replacement may have been broken too.
    assert epoch1["train_skipped"] >= 3 and (epoch1["val_failed"], epoch1["backbone_frozen"]) == (1, True)
    trained = load_checkpoint(out / "last.safetensors")
    assert trained.input_spec == spec and len(trained.classes) == 12  # the init's clip, the dataset's classes
    before, after = load_file(tmp_path / "init.safetensors"), trained.state_dict()
    frozen = [n for n in before if n.startswith("backbone.") and not n.startswith("backbone.head.")]
    assert frozen and all(torch.equal(before[n], after[n]) for n in frozen)  # weights and norm statistics
    assert not torch.equal(before["blocks.stage2.conv1.weight"], after["blocks.stage2.conv1.weight"])

    second = run_dcf(
        *args,
        "--freeze-backbone-epochs",
        "1",
        "--tensorboard",
        str(board),
        "--set",
        "optim.epochs=2",
        "--resume",
    )
    assert second.returncode == 0, second.stderr
    records = read_metrics(out / "metrics.jsonl")
    assert [r["backbone_frozen"] for r in records] == [True, False]
    after = load_file(out / "last.safetensors")
    assert not torch.equal(before["backbone.stem.0.weight"], after["backbone.stem.0.weight"])
    straight = run_dcf(
        *args,
        "--freeze-backbone-epochs",
        "1",
        "--set",
        "optim.epochs=2",
        "--set",
        f'run.out="{tmp_path / "straight"}"',
    )
    assert straight.returncode == 0, straight.stderr
    resumed = load_file(out / "last.safetensors")  # resumed across the end of the freeze: bit for bit
    assert all(
        torch.equal(t, resumed[n]) for n, t in load_file(tmp_path / "straight" / "last.safetensors").items()
    )
    scalars = _tensorboard_scalars(board)
    for key, tag in (
        ("val_top1", "val/top1"),
        ("loss", "train/loss"),
        ("lr", "train/lr"),
        ("train_skipped", "train/skipped_broken"),
    ):
        assert scalars[tag] == [(r["epoch"], pytest.approx(r[key], rel=1e-6)) for r in records], tag
    assert {"train/clips_per_s", "train/epoch_s", "val/top5", "val/failed", "train/loss_step"} <= set(scalars)

    strict = run_dcf(
        *args[:-2],
        "--set",
        "optim.epochs=1",
        "--set",
        "data.max_broken=0.1",
        "--set",
        f'run.out="{tmp_path / "strict"}"',
    )
    assert strict.returncode == 2 and "Traceback" not in strict.stderr
    assert "training videos seen so far cannot be decoded, more than data.max_broken=0.1" in strict.stderr
    assert f"dcf data check {data} --format folder --split train" in strict.stderr

    scored = run_dcf(
        "eval", "--checkpoint", str(out / "last.safetensors"), "--data", str(data), "--json", "--workers", "0"
    )
    assert scored.returncode == 1, scored.stderr
    result = json.loads(scored.stdout)
    assert result["videos"] == 12 and [Path(f["file"]).name for f in result["failed"]] == ["text.mp4"]
    assert "not a media container" in result["failed"][0]["error"]


def test_init_refuses_what_does_not_fit(dataset: Path, tmp_path: Path) -> None:
    spec = InputSpec.for_crop(4, 32)
    init = CheckpointConfig("x3d_xs", tuple("abc"), spec, model_kwargs={"widths": [8, 16, 32, 64]})
    save_checkpoint(tmp_path / "init.safetensors", init.build(), init)
    base = [
        "train",
        "--no-progress",
        "--set",
        f'data.root="{dataset}"',
        "--set",
        f'run.out="{tmp_path}"',
        "--init",
        str(tmp_path / "init.safetensors"),
    ]
    other = run_dcf(*base, "--set", 'model.architecture="x3d_xs_dcf"')
    assert other.returncode == 2 and "but the init checkpoint" in other.stderr and "is x3d_xs" in other.stderr
    wider = run_dcf(*base, "--set", "model.kwargs={widths=[16, 16, 32, 64]}")
    assert wider.returncode == 2 and "its weights do not fit x3d_xs" in wider.stderr
    assert "Traceback" not in other.stderr + wider.stderr


def test_a_split_where_nothing_decodes_stops_training(tmp_path: Path) -> None:
    for split in ("train", "val"):
        write_broken_split(tmp_path / split)
        for good in (tmp_path / split).glob("*/good.mp4"):
            good.unlink()
    result = run_dcf(
        *train_args(tmp_path, tmp_path / "run", 1),
        "--set",
        "data.max_broken=1",
        "--set",
        "optim.batch_size=2",
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "10 training videos drawn in a row could not be decoded" in result.stderr
    assert f"dcf data check {tmp_path} --format folder --split train" in result.stderr
