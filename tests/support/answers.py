"""Comparing answers of one video made along different paths (one request, bulk, Ray)."""

from __future__ import annotations

from typing import Any

import numpy as np

Record = dict[str, Any]


def assert_same_answer(record: Record, answer: dict[str, Any]) -> None:
    """Equal but for the last digits of the scores (other batches, other summation order)."""
    assert {k: v for k, v in record.items() if k not in ("file", "predictions")} == {
        k: v for k, v in answer.items() if k != "predictions"
    }
    got, want = record["predictions"], answer["predictions"]
    assert [(p["label"], p["index"]) for p in got] == [(p["label"], p["index"]) for p in want]
    assert np.allclose([p["score"] for p in got], [p["score"] for p in want], rtol=0, atol=2e-6)
