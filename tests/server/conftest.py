"""The package's server: the demo model in a real ``dcf serve`` process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dcf.testing.server import Server, start_server, stop_server


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The demo model on CPU, with a 2 MiB upload limit so the 413 path is cheap to reach."""
    running = start_server(tmp_path_factory.mktemp("server"), "--max-upload-mb", "2")
    yield running
    stop_server(running)
