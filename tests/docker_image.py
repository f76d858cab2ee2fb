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

ROOT = Path(__file__).resolve().parent.parent
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
    with tempfile.TemporaryDirectory(prefix="dcf-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        made = subprocess.run(
            [*DEBOOTSTRAP, str(rootfs), DEBIAN_MIRROR], capture_output=True, text=True, timeout=900
        )
        assert made.returncode == 0, made.stdout[-3000:] + made.stderr[-3000:]
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
    return tag


def _simple_index(files: Path, index: Path) -> None:
    """PEP 503 layout: one folder per normalised project name, holding that project's files."""
    for wheel in files.glob("*.whl"):
        project = re.sub(r"[-_.]+", "-", wheel.name.split("-")[0]).lower()
        (index / project).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(wheel, index / project / wheel.name)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def torch_index(work: Path) -> Iterator[str]:
    """A simple index with ``torch==2.13.0`` (CPU) and its dependencies, on 127.0.0.1; yields its URL."""
    files = work / "files"
    downloaded = subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--only-binary", ":all:", "-d", str(files), TORCH],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert downloaded.returncode == 0, downloaded.stderr[-3000:]
    torch_wheel = next(files.glob("torch-*.whl")).name
    assert "+cpu" in torch_wheel, f"{torch_wheel}: not a CPU build (a CUDA torch would weigh gigabytes)"
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


def build_cpu_image(base: str, index_url: str) -> tuple[str, float]:
    """``docker build --target cpu`` of the project with the stand-ins; (tag, seconds)."""
    started = time.perf_counter()
    docker(
        "build",
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
    return IMAGE, time.perf_counter() - started
