"""Builds the project's CPU image with a real Docker engine, on machines that cannot pull images.

Two stand-ins, both for what the network gives elsewhere:

* **The base image.** ``python:3.11-slim-bookworm`` cannot be pulled here. A Debian bookworm root
  filesystem made by ``debootstrap`` (minbase, with Python 3.11, pip, venv and CA certificates),
  shaped like the official image (``python``/``pip`` on ``/usr/local/bin``, no
  ``EXTERNALLY-MANAGED`` marker) and imported with ``docker import`` takes its place. It carries
  this host's CA bundle and a ``pip.conf`` naming it, which is what this host's own pip needs to
  reach PyPI. It is cached by a tag that names its recipe, so later runs reuse it.
* **The torch index.** The CPU image installs torch from PyTorch's CPU index (build argument
  ``TORCH_INDEX_URL``), which these machines cannot reach. ``pip download torch==2.13.0`` on the
  host (a CPU build, and its dependencies) laid out as a PEP 503 simple index and served on
  loopback replaces it.

Everything else is real: the Dockerfile's ``cpu`` target built by the engine (the legacy builder:
BuildKit wants Docker Hub for the ``# syntax=`` line; ``--target cpu``: the legacy builder would
otherwise build the GPU stages, whose base cannot be pulled), pip installing the project's wheel
and its dependencies from PyPI, and the container run with host networking on loopback.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TORCH = "torch==2.13.0"
BASE_REPOSITORY = "dcf-test/python"
IMAGE = "dcf-test/dcf:cpu"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
DEBOOTSTRAP = [
    "debootstrap",
    "--variant=minbase",
    "--include=python3,python3-pip,python3-venv,ca-certificates",
    "bookworm",
]
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def docker(*args: str, timeout: float = 120, check: bool = True, **kwargs: str) -> str:
    """``docker ARGS``; its stdout. ``kwargs`` go to the environment (``DOCKER_BUILDKIT="0"``)."""
    result = subprocess.run(
        ["docker", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **kwargs},
    )
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} exited {result.returncode}:\n{result.stderr[-4000:]}")
    return result.stdout


def require_engine() -> None:
    """Skips, saying why, where no Docker engine answers."""
    if shutil.which("docker") is None:
        pytest.skip("no docker client on PATH (Debian: apt-get install docker.io)")
    result = subprocess.run(
        ["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True
    )
    if result.returncode != 0 or not result.stdout.strip():
        pytest.skip(
            "no Docker engine answers (start one: dockerd --bridge=none --iptables=false; .ci/run does): "
            + result.stderr.strip()[-300:]
        )


def _recipe() -> str:
    """What the base image is made of; its tag is this text's hash."""
    bundle = hashlib.sha256(HOST_CA_BUNDLE.read_bytes()).hexdigest() if HOST_CA_BUNDLE.exists() else "none"
    return " ".join([*DEBOOTSTRAP, DEBIAN_MIRROR, "ca", bundle, "v1"])


def base_image() -> str:
    """The stand-in for ``python:3.11-slim-bookworm``: cached by recipe, made when missing (~1 min)."""
    tag = f"{BASE_REPOSITORY}:bookworm-{hashlib.sha256(_recipe().encode()).hexdigest()[:12]}"
    if subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0:
        return tag
    if shutil.which("debootstrap") is None:
        pytest.skip("making the base image needs debootstrap (Debian: apt-get install debootstrap)")
    if os.geteuid() != 0:
        pytest.skip("debootstrap needs root to make the base image")
    tmp = Path(tempfile.mkdtemp(prefix="dcf-rootfs-"))
    try:
        _make_base(tmp / "rootfs", tag)
    finally:
        # debootstrap bind-mounts /dev/shm, /dev/pts, /proc and /sys into the root filesystem and
        # unmounts them only when it exits normally: never delete through a mount that is left.
        if _unmount_under(tmp):
            shutil.rmtree(tmp)
    return tag


def _mounts_under(folder: Path) -> list[str]:
    prefix = str(folder.resolve()) + "/"
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        points = [line.split()[1] for line in mounts]
    return [point for point in points if point.startswith(prefix)]


def _unmount_under(folder: Path) -> bool:
    """Unmounts what is mounted inside ``folder``; whether nothing is left mounted there."""
    for point in sorted(_mounts_under(folder), key=len, reverse=True):
        subprocess.run(["umount", "--lazy", point], capture_output=True)
    left = _mounts_under(folder)
    if left:
        print(f"not deleting {folder}: still mounted there: {left}", file=sys.stderr)
    return not left


def _make_base(rootfs: Path, tag: str) -> None:
    with subprocess.Popen(
        [*DEBOOTSTRAP, str(rootfs), DEBIAN_MIRROR],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as made:
        try:
            output, _ = made.communicate(timeout=900)
        except subprocess.TimeoutExpired:
            made.terminate()  # not kill: debootstrap's exit trap unmounts what it mounted
            output, _ = made.communicate(timeout=60)
            raise AssertionError(f"debootstrap took over 900 s:\n{output[-3000:]}") from None
    if made.returncode != 0 and "Failed getting release file" in output:
        pytest.skip(f"debootstrap cannot reach {DEBIAN_MIRROR}: {output.strip()[-300:]}")
    assert made.returncode == 0, output[-3000:]
    (rootfs / "usr/lib/python3.11/EXTERNALLY-MANAGED").unlink(missing_ok=True)
    (rootfs / "usr/local/bin/python").symlink_to("/usr/bin/python3")
    pip = rootfs / "usr/local/bin/pip"
    pip.write_text('#!/bin/sh\nexec /usr/bin/python3 -m pip "$@"\n')
    pip.chmod(0o755)
    if HOST_CA_BUNDLE.exists():
        shutil.copyfile(HOST_CA_BUNDLE, rootfs / "etc/ssl/certs/ca-certificates.crt")
    (rootfs / "etc/pip.conf").write_text("[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n")
    for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for entry in (rootfs / cache).glob("*"):
            if entry.is_file():
                entry.unlink()
    with subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE) as tar:
        imported = subprocess.run(
            ["docker", "import", "-", tag], stdin=tar.stdout, capture_output=True, text=True, timeout=600
        )
    assert tar.returncode == 0 and imported.returncode == 0, imported.stderr


def _simple_index(files: Path, index: Path) -> None:
    """PEP 503 layout: one folder per normalised project name, holding that project's files."""
    for wheel in files.glob("*.whl"):
        project = re.sub(r"[-_.]+", "-", wheel.name.split("-")[0]).lower()
        (index / project).mkdir(parents=True, exist_ok=True)
        os.link(wheel, index / project / wheel.name)  # 0.9 GB: linked, not copied


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def torch_index(work: Path) -> Iterator[str]:
    """A simple index with ``torch==2.13.0`` (CPU) and its dependencies, on 127.0.0.1; yields its URL."""
    files = work / "files"
    # For the image's Python (Debian bookworm's 3.11), whatever the host's is.
    target = ["--python-version", "3.11", "--platform", "manylinux_2_28_x86_64", "--only-binary", ":all:"]
    downloaded = subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", *target, "-d", str(files), TORCH],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if downloaded.returncode != 0:
        pytest.skip(f"pip download {TORCH} failed on this host: {downloaded.stderr.strip()[-300:]}")
    torch_wheel = next(files.glob("torch-*.whl")).name
    if "+cpu" not in torch_wheel:
        shutil.rmtree(files)
        pytest.skip(
            f"this host's pip gives {torch_wheel}, not a CPU build of torch (a CUDA one weighs gigabytes); "
            "configure pip with a CPU index (https://download.pytorch.org/whl/cpu) to run the image tests"
        )
    _simple_index(files, work / "simple")
    handler = functools.partial(_QuietHandler, directory=str(work / "simple"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        shutil.rmtree(work)


def build_cpu_image(base: str, index_url: str) -> tuple[str, float]:
    """``docker build --target cpu`` of the project with the stand-ins; (tag, seconds)."""
    previous = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", IMAGE], capture_output=True
    )
    started = time.perf_counter()
    docker(
        "build",
        "--force-rm",
        "--network",
        "host",
        "--target",
        "cpu",
        "--build-arg",
        f"PYTHON_IMAGE={base}",
        "--build-arg",
        f"TORCH_INDEX_URL={index_url}",
        "-t",
        IMAGE,
        str(ROOT),
        timeout=1500,
        DOCKER_BUILDKIT="0",
    )
    seconds = time.perf_counter() - started
    old = previous.stdout.decode().strip()
    if (
        previous.returncode == 0
        and old
        and old != docker("image", "inspect", "--format", "{{.Id}}", IMAGE).strip()
    ):
        # The torch index's port is new in every run, so the layers from the torch install on are new
        # too; the last build's (a GB) would stay behind untagged.
        subprocess.run(["docker", "rmi", old], capture_output=True)
    return IMAGE, seconds
