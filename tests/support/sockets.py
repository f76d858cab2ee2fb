"""Which addresses processes use while a test runs: ``ss`` sampled on a thread, for checks that a
component (a Ray cluster) talks over loopback only."""

from __future__ import annotations

import re
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

_LOOPBACK = re.compile(r"^(127\.\d+\.\d+\.\d+|\[::ffff:127\.\d+\.\d+\.\d+\]|\[::1\]|localhost)(%\w+)?:")
_ANY_PEER = {"0.0.0.0:*", "*:*", "[::]:*"}  # a listening or unconnected socket has no peer yet


@dataclass(frozen=True)
class Socket:
    protocol: str
    state: str
    local: str
    peer: str
    process: str  # ss's users:(...) column; empty once the socket has no owner (TIME-WAIT)

    @property
    def off_loopback(self) -> bool:
        return not _LOOPBACK.match(self.local) or (
            self.peer not in _ANY_PEER and not _LOOPBACK.match(self.peer)
        )


def sockets() -> set[Socket]:
    """The machine's TCP and UDP sockets now, as ``ss -tanup`` lists them."""
    out = subprocess.run(["ss", "-tanupH"], capture_output=True, text=True, check=True).stdout
    found = set()
    for line in out.splitlines():
        parts = line.split(None, 6)
        if len(parts) >= 6:
            found.add(Socket(parts[0], parts[1], parts[4], parts[5], parts[6] if len(parts) > 6 else ""))
    return found


@dataclass
class Watch:
    seen: set[Socket] = field(default_factory=set)
    before: set[Socket] = field(default_factory=set)

    def new(self, *processes: str) -> set[Socket]:
        """Sockets that appeared while watching (not those there before it started), of the named
        processes (a part of ss's users:(...) column) or of none: a connection closed between two
        samples stays listed in TIME-WAIT, without its process, for a minute."""
        key = {(s.protocol, s.local, s.peer) for s in self.before}
        return {
            s
            for s in self.seen
            if (s.protocol, s.local, s.peer) not in key
            and (not s.process or any(name in s.process for name in processes))
        }


@contextmanager
def watch_sockets(interval_s: float = 0.1) -> Iterator[Watch]:
    """Samples :func:`sockets` every ``interval_s`` until the block ends."""
    watch = Watch(before=sockets())
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(interval_s):
            watch.seen |= sockets()

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield watch
    finally:
        stop.set()
        sampler.join()
        watch.seen |= sockets()
