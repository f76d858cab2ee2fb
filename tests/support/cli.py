"""The ``dcf`` command, run as a user would: a real subprocess of the installed entry point."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys


def run_dcf(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``dcf ARGS``, with ``env`` added to this process's environment."""
    exe = shutil.which("dcf")
    cmd = [exe, *args] if exe else [sys.executable, "-m", "dcf", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})})
