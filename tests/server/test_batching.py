"""The dynamic batcher: batches across requests, bounded queue, deadlines, model failures."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from dcf.server.batching import DeadlineExceeded, DynamicBatcher, Overloaded


def _run(coro):
    return asyncio.run(coro)


def test_batcher_batches_concurrent_requests_and_routes_results() -> None:
    calls: list[int] = []

    def predict(batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        time.sleep(0.01)
        return batch.reshape(len(batch), -1)[:, :2] * 2

    async def scenario():
        batcher = DynamicBatcher(predict, max_batch=8, max_wait_s=0.05, max_queue=64)
        batcher.start()
        requests = [np.full((n, 3), float(i)) for i, n in enumerate([1, 2, 3, 1])]
        results = await asyncio.gather(*(batcher.submit(r, time.perf_counter() + 5) for r in requests))
        await batcher.stop()
        return requests, results

    requests, results = _run(scenario())
    assert calls == [7]  # one call for all four requests
    for request, (logits, timing) in zip(requests, results, strict=True):
        np.testing.assert_array_equal(logits, request[:, :2] * 2)
        assert timing.batch_views == 7


def test_batcher_refuses_when_full_and_drops_expired_requests() -> None:
    seen: list[float] = []

    def predict(batch: np.ndarray) -> np.ndarray:
        seen.extend(batch[:, 0].tolist())
        time.sleep(0.05)
        return batch

    async def scenario():
        batcher = DynamicBatcher(predict, max_batch=2, max_wait_s=0, max_queue=2)
        batcher.start()
        first = asyncio.ensure_future(batcher.submit(np.full((2, 1), 1.0), time.perf_counter() + 5))
        await asyncio.sleep(0.01)  # the first batch is running
        expired = asyncio.ensure_future(batcher.submit(np.full((1, 1), 2.0), time.perf_counter() - 1))
        await asyncio.sleep(0)
        with pytest.raises(Overloaded) as full:
            await batcher.submit(np.full((2, 1), 3.0), time.perf_counter() + 5)
        await first
        with pytest.raises(DeadlineExceeded):
            await expired
        await batcher.stop()
        return full.value

    full = _run(scenario())
    assert full.retry_after >= 1
    assert seen == [1.0, 1.0]  # the expired request never reached the model


def test_batcher_reports_model_failures_to_every_request() -> None:
    def predict(batch: np.ndarray) -> np.ndarray:
        raise RuntimeError("CUDA out of memory")

    async def scenario():
        batcher = DynamicBatcher(predict, max_batch=4, max_wait_s=0.01, max_queue=8)
        batcher.start()
        outcome = await asyncio.gather(
            *(batcher.submit(np.zeros((1, 1)), time.perf_counter() + 5) for _ in range(2)),
            return_exceptions=True,
        )
        await batcher.stop()
        return outcome

    assert all(isinstance(e, RuntimeError) and "out of memory" in str(e) for e in _run(scenario()))


def test_other_model_work_shares_the_model_thread_and_the_queue_bound() -> None:
    threads: list[str] = []

    def predict(batch: np.ndarray) -> np.ndarray:
        threads.append(threading.current_thread().name)
        return batch

    def draw() -> str:
        time.sleep(0.1)
        threads.append(threading.current_thread().name)
        return "picture"

    async def scenario():
        batcher = DynamicBatcher(predict, max_batch=2, max_wait_s=0, max_queue=1)
        batcher.start()
        drawing = asyncio.ensure_future(batcher.run_on_model_thread(draw))
        await asyncio.sleep(0.01)
        assert batcher.queued_views == 1  # the drawing counts as a queued clip
        with pytest.raises(Overloaded):
            await batcher.run_on_model_thread(draw)
        picture = await drawing
        logits, _ = await batcher.submit(np.ones((1, 1)), time.perf_counter() + 5)
        await batcher.stop()
        return picture, logits

    picture, logits = _run(scenario())
    assert picture == "picture" and logits.shape == (1, 1)
    assert len(set(threads)) == 1 and threads[0].startswith("inference")
