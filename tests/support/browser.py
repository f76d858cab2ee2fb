"""A real browser for page tests: Debian's Chromium, driven headless by Playwright.

Playwright cannot download its own browsers here, so it drives the system ``chromium`` (installed
by ``.ci/run``). The browser is kept offline: no background networking, and every host name but
loopback resolves to nothing, so a page that needs a CDN shows it by failing.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

ARGS = [
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]


@contextmanager
def chromium() -> Iterator[Any]:
    """A Playwright ``Browser`` (skips the test, saying why, where there is no Chromium)."""
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.skip("no Chromium on this machine (.ci/run installs Debian's chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()
