"""``dcf predict --ray`` on real local Ray clusters (the ray extra): the same records as the
single-machine run, and every socket of the cluster on loopback, as ``ss`` sees them while it runs."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dcf.inference.backends import load_backend
from dcf.inference.bulk import JsonlResults, run_bulk
from dcf.inference.pipeline import PredictOptions
from dcf.testing import media
from tests.support.answers import assert_same_answer
from tests.support.sockets import Watch, watch_sockets

pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec("ray") is None or shutil.which("ss") is None,
        reason="needs the ray extra (pip install 'dcf[ray]'; .ci/run installs it) and ss (iproute2)",
    ),
    pytest.mark.slow,
]

FLAGS = ("--clips", "2", "--crops", "3", "--batch", "4")  # 6 views: a video spans model calls
OPTIONS = PredictOptions(clips=2, crops=3)


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict[str, object]]]:
    """A folder of real videos and one broken file, and their single-machine records."""
    folder = tmp_path_factory.mktemp("ray-videos")
    media.write_collection(folder, 6)
    (folder / "broken.mp4").write_bytes(b"not a video")
    out = folder.parent / f"{folder.name}-single.jsonl"
    results = JsonlResults(out)
    files = sorted(str(p) for p in folder.rglob("*.mp4"))
    run_bulk(load_backend("demo"), files, OPTIONS, results, batch=4)
    results.close()
    return folder, {r["file"]: r for r in map(json.loads, out.read_text().splitlines())}


def _predict_on_ray(folder: Path, out: Path, *ray: str, env: dict[str, str] | None = None) -> Watch:
    exe = shutil.which("dcf") or "dcf"
    command = [exe, "predict", str(folder), "--out", str(out), *FLAGS, "--ray", *ray]
    with watch_sockets() as watch:
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 1, done.stderr[-3000:]  # broken.mp4
    assert "6 answered, 1 failed (not_a_video 1)" in done.stderr
    return watch


def _assert_same_records(out: Path, single: dict[str, dict[str, object]]) -> None:
    records = {r["file"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert records.keys() == single.keys()
    for file, record in records.items():
        if "error" in record:
            assert record == single[file]
        else:
            assert_same_answer(record, {k: v for k, v in single[file].items() if k != "file"})


def _assert_loopback_only(watch: Watch) -> None:
    ray_sockets = [s for s in watch.seen if "raylet" in s.process or "gcs_server" in s.process]
    assert len(ray_sockets) >= 3, "the sampler saw the cluster's sockets"
    # Ray's processes (raylet, gcs_server, ray::..., its python workers and agents) and dcf.
    outside = sorted(str(s) for s in watch.new("python", "dcf", "ray", "gcs_server") if s.off_loopback)
    assert outside == [], "\n".join(outside)


def test_ray_local_cluster_gives_the_same_records_on_loopback(
    videos: tuple[Path, dict[str, dict[str, object]]], tmp_path: Path
) -> None:
    folder, single = videos
    watch = _predict_on_ray(folder, tmp_path / "ray.jsonl")
    _assert_same_records(tmp_path / "ray.jsonl", single)
    _assert_loopback_only(watch)


@pytest.fixture
def running_cluster() -> Iterator[tuple[str, dict[str, str]]]:
    """A Ray head started as a user would (``ray start --head``), on 127.0.0.1, stopped after."""
    from dcf.inference.ray_bulk import LOOPBACK_ENV

    temp = tempfile.mkdtemp(prefix="dcf-ray-")  # short: Ray's socket paths must fit in 107 bytes

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, **LOOPBACK_ENV, "RAY_AUTH_MODE": "token"}
    log = Path(temp) / "head.log"
    with log.open("w") as output:
        head = subprocess.Popen(
            [
                shutil.which("ray") or "ray",
                "start",
                "--head",
                "--block",
                "--node-ip-address=127.0.0.1",
                f"--port={port}",
                "--include-dashboard=false",
                "--disable-usage-stats",
                "--num-cpus=2",
                f"--temp-dir={temp}",
            ],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the teardown can end all of it
        )
    try:
        deadline = time.monotonic() + 60
        while "Ray runtime started" not in log.read_text():
            if head.poll() is not None or time.monotonic() > deadline:
                pytest.fail("ray start --head did not start:\n" + log.read_text()[-3000:])
            time.sleep(0.2)
        yield f"127.0.0.1:{port}", env
    finally:
        head.send_signal(signal.SIGINT)  # as Ctrl-C: it stops the processes it started
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:  # a loaded machine: Ray's shutdown outlasted a minute
            os.killpg(head.pid, signal.SIGKILL)
            head.wait(timeout=30)
        finally:
            with contextlib.suppress(ProcessLookupError):  # whatever of the group is left
                os.killpg(head.pid, signal.SIGKILL)
            shutil.rmtree(temp, ignore_errors=True)


def test_ray_joins_a_running_cluster(
    videos: tuple[Path, dict[str, dict[str, object]]],
    running_cluster: tuple[str, dict[str, str]],
    tmp_path: Path,
) -> None:
    folder, single = videos
    address, env = running_cluster
    watch = _predict_on_ray(folder, tmp_path / "ray.jsonl", address, env=env)
    _assert_same_records(tmp_path / "ray.jsonl", single)
    _assert_loopback_only(watch)
