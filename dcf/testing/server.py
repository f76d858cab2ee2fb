"""A real ``dcf serve`` process (uvicorn) on a free loopback port, HTTP calls to it, and a loopback
listener that records connections (proof that nothing tried to fetch a URL). Needs httpx (the
``test`` extra)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx


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


@dataclass
class Listener:
    url: str
    connections: list[bytes] = field(default_factory=list)  # the first bytes each client sent


@contextmanager
def loopback_listener() -> Iterator[Listener]:
    """An HTTP-looking address on 127.0.0.1 that answers nothing and remembers who came."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.1)
    listener = Listener(f"http://127.0.0.1:{server.getsockname()[1]}")
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                client, _ = server.accept()
            except TimeoutError:
                continue
            with client:
                client.settimeout(1)
                try:
                    listener.connections.append(client.recv(4096))
                except OSError:
                    listener.connections.append(b"")

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener
    finally:
        stop.set()
        thread.join()
        server.close()
