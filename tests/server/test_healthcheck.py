"""The image's HEALTHCHECK script (``docker/healthcheck.py``) against a real server, on the host."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from dcf.testing.server import Server, free_port

HEALTHCHECK_SCRIPT = Path(__file__).resolve().parents[2] / "docker" / "healthcheck.py"


def _healthcheck(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DCF_")}
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK_SCRIPT)],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_healthcheck_follows_dcf_host_and_port(server: Server) -> None:
    port = server.url.rsplit(":", 1)[1]
    for host in ("0.0.0.0", "127.0.0.1"):
        ready = _healthcheck({"DCF_HOST": host, "DCF_PORT": port})
        assert ready.returncode == 0, ready.stdout
        assert ready.stdout.strip() == f"http://127.0.0.1:{port}/readyz: 200"
    silent = _healthcheck({"DCF_PORT": str(free_port())})  # nothing listens there
    assert silent.returncode == 1 and "Connection refused" in silent.stdout, silent.stdout
    assert "[::1]" in _healthcheck({"DCF_HOST": "::", "DCF_PORT": port}).stdout
