"""Giving the allocator's free pages back (``dcf.server.memory``), measured in a fresh process's RSS."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time

import pytest

from dcf.server import memory

CODE = """
    import numpy as np
    from dcf.server import memory
    MB = 2**20
    def rss():
        return memory.resident_bytes() / MB
    base = rss()
    blocks = [np.ones(64 * 1024, np.uint8) for _ in range(1600)]  # 100 MiB of heap blocks
    top = np.ones(64 * 1024, np.uint8)  # keeps the heap's top in use: free() trims nothing
    del blocks
    freed = rss() - base
    memory.release_free_memory()
    print(round(freed), round(rss() - base))
"""


@pytest.mark.skipif(memory._LIBC is None, reason="malloc_trim is glibc's")
def test_free_pages_below_a_live_block_stay_resident_until_released() -> None:
    # The allocator's own settings from the environment (an mmap threshold, say) would change the test.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CODE)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    freed, released = (int(mib) for mib in result.stdout.split())
    assert freed >= 90, (freed, released)  # MiB above the start, after the blocks were freed
    assert released <= 10, (freed, released)


def test_resident_bytes_is_this_process_s_rss() -> None:
    with open("/proc/self/status", encoding="ascii") as status:
        kib = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    assert abs(memory.resident_bytes() - kib * 1024) < 16 * 2**20


@pytest.mark.parametrize(("seconds", "expect_calls"), [(0.05, True), (0.0, False)])
def test_the_server_releases_every_memory_release_s(
    monkeypatch: pytest.MonkeyPatch, seconds: float, expect_calls: bool
) -> None:
    """The app's lifespan (demo model loaded and warmed up, as under uvicorn) runs the release every
    ``memory_release_s`` while it serves, stops it at shutdown, and never runs it for 0."""
    from dcf.server import app as server_app
    from dcf.server.settings import ServerSettings

    calls: list[float] = []
    monkeypatch.setattr(server_app, "release_free_memory", lambda: calls.append(time.monotonic()))
    app = server_app.create_app(ServerSettings(memory_release_s=seconds, max_batch=1))

    async def serve_briefly() -> int:
        async with app.router.lifespan_context(app):
            assert app.state.service.ready
            await asyncio.sleep(0.5)
        count = len(calls)
        await asyncio.sleep(0.2)
        assert len(calls) == count  # stopped with the app
        return count

    count = asyncio.run(serve_briefly())
    assert (count >= 3) if expect_calls else (count == 0), calls
