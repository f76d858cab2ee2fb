"""A real ``dcf serve`` process (uvicorn) on a free loopback port, and helpers to call it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Client:
    """HTTP calls to a running ``dcf serve`` (a process here, or a container)."""

    url: str

    def predict(
        self, data: bytes, filename: str = "clip.mp4", timeout: float = 60, **params: object
    ) -> httpx.Response:
        return httpx.post(
            f"{self.url}/v1/predict",
            files={"file": (filename, data, "application/octet-stream")},
            params={k: str(v) for k, v in params.items()},
            timeout=timeout,
        )

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", timeout=30)

    def metric(self, name: str) -> float:
        """The value of one unlabelled Prometheus metric."""
        for line in self.get("/metrics").text.splitlines():
            if line.startswith(f"{name} "):
                return float(line.split()[1])
        raise KeyError(name)


@dataclass
class Server(Client):
    """A ``dcf serve`` process started by :func:`start_server`."""

    process: subprocess.Popen[bytes]
    log: Path

    def rss_mb(self, field: str = "VmRSS") -> float:
        """Resident memory of the server process (Linux /proc); ``VmHWM`` for its peak."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"no {field}")

    def reset_peak_rss(self) -> None:
        """Restart ``VmHWM`` from the current resident memory (Linux clear_refs)."""
        Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")


def start_server(tmp: Path, *args: str, env: dict[str, str] | None = None) -> Server:
    port = free_port()
    exe = shutil.which("dcf")
    cmd = [exe] if exe else [sys.executable, "-m", "dcf"]
    log = tmp / f"server-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*cmd, "serve", "--port", str(port), "--log-level", "warning", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
    server = Server(f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"dcf serve exited with {process.returncode}:\n{log.read_text()}")
        try:
            if server.get("/readyz").status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"dcf serve did not become ready:\n{log.read_text()}")


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.process.kill()


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The demo model on CPU, with a 2 MiB upload limit so the 413 path is cheap to reach."""
    running = start_server(tmp_path_factory.mktemp("server"), "--max-upload-mb", "2")
    yield running
    stop_server(running)
