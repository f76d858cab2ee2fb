"""The ``dcf`` command, run as a user would: a real subprocess of the installed entry point."""

from __future__ import annotations

import shutil
import subprocess
import sys


def run_dcf(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("dcf")
    cmd = [exe, *args] if exe else [sys.executable, "-m", "dcf", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)
