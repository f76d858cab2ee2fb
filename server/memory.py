"""The server process's memory: what it holds, and giving the allocator's free pages back.

A serving process allocates and frees buffers of every size all the time: uploads (up to
``max_upload_mb``), decoded views (hundreds of KiB each), batches, the runtime's activations.
glibc's ``malloc`` keeps what is freed for reuse: each allocating thread may get its own arena, and
the size above which a buffer gets its own mapping (returned to the system on ``free``) rises to the
largest buffer freed so far, up to 32 MiB. Free pages that sit below a live block stay resident, so
under a steady mixed load the RSS crept up by about 9 MB/min for ten minutes.

:func:`release_free_memory` (``malloc_trim``) hands those free pages back; the server calls it every
``memory_release_s`` seconds (10; ``DCF_MEMORY_RELEASE_S``), off the event loop. Measured side by side (3-minute soaks,
``bench/results/server_soak.md`` for the 10-minute one): with it the RSS floor is flat and the
throughput unchanged (36.5 vs 37.0 requests/s); the alternatives cost more. A fixed 1 MiB mmap
threshold made the RSS lower (about 450 MB instead of 650 MB) but cost a third of the throughput
(24.6 requests/s: every large activation becomes a fresh, zeroed mapping), and two arenas alone
did not stop the creep. It is a no-op where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import os


def _glibc() -> ctypes.CDLL | None:
    """The C library this process runs on, when it is glibc (the process's own symbols: no search)."""
    try:
        libc = ctypes.CDLL(None)
        libc.malloc_trim  # noqa: B018 - glibc's; musl and others lack it
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _glibc()


def release_free_memory() -> None:
    """Returns the free pages of every ``malloc`` arena to the system (glibc ``malloc_trim``)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def resident_bytes() -> int:
    """This process's resident memory (Linux ``/proc``; 0 elsewhere)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0
