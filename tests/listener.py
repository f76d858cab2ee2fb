"""A loopback TCP listener that records every connection: proof that nothing tried to fetch a URL."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


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
