"""JSON and TOML give lists where our frozen configs hold tuples."""

from __future__ import annotations

from typing import Any


def lists_to_tuples(data: dict[str, Any], *, keep: tuple[str, ...] = ()) -> dict[str, Any]:
    """A copy of ``data`` with each list value made a tuple, except under the keys in ``keep``."""
    return {k: tuple(v) if isinstance(v, list) and k not in keep else v for k, v in data.items()}
