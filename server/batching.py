"""Dynamic batching: clips of concurrent requests share inference calls.

Requests queue their views; one loop forms a batch from the queue head (up to ``max_batch``
views, waiting at most ``max_wait`` for it to fill) and runs the model on a single inference
thread, so the event loop, and the decode threads, keep working meanwhile. The queue is bounded
in views: when full, :class:`Overloaded` tells the caller when to retry. Requests whose deadline
passed while queued are dropped before they cost inference time.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

T = TypeVar("T")


class Overloaded(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__(f"the inference queue is full; retry in {retry_after} s")
        self.retry_after = retry_after


class DeadlineExceeded(Exception):
    pass


@dataclass
class Timing:
    queue_s: float
    inference_s: float
    batch_views: int


@dataclass
class _Job:
    views: np.ndarray
    deadline: float
    future: asyncio.Future[tuple[np.ndarray, Timing]]
    enqueued: float = field(default_factory=time.perf_counter)


class DynamicBatcher:
    def __init__(
        self,
        predict: Callable[[np.ndarray], np.ndarray],
        *,
        max_batch: int,
        max_wait_s: float,
        max_queue: int,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self._predict = predict
        self.max_batch, self.max_wait_s, self.max_queue = max_batch, max_wait_s, max_queue
        self._on_batch = on_batch  # (views in the call, seconds)
        self._queue: collections.deque[_Job] = collections.deque()
        self._queued_views = 0
        self._side_views = 0  # clips of run_on_model_thread calls
        self._arrived = asyncio.Event()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="inference")
        self._task: asyncio.Task[None] | None = None
        self._seconds_per_view = 0.05  # running estimate, for Retry-After

    @property
    def queued_views(self) -> int:
        return self._queued_views + self._side_views

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="dcf-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        while self._queue:
            job = self._queue.popleft()
            if not job.future.done():
                job.future.set_exception(Overloaded(1))
        self._executor.shutdown(wait=True)

    async def submit(self, views: np.ndarray, deadline: float) -> tuple[np.ndarray, Timing]:
        """Logits of ``views`` (V, 3, T, S, S) and how long they queued and ran.

        Raises:
            Overloaded: The queue holds too many views to take these.
            DeadlineExceeded: ``deadline`` (a ``time.perf_counter`` value) passed before inference.
        """
        # An empty queue takes any request (views per request are bounded upstream).
        if self._queue and self._queued_views + self._side_views + len(views) > self.max_queue:
            backlog = self._queued_views + len(views)
            raise Overloaded(max(1, math.ceil(backlog * self._seconds_per_view)))
        job = _Job(views, deadline, asyncio.get_running_loop().create_future())
        self._queue.append(job)
        self._queued_views += len(views)
        self._arrived.set()
        return await job.future

    async def run_on_model_thread(self, work: Callable[[], T], views: int = 1) -> T:
        """``work()`` on the inference thread, between batches: other uses of the model (drawing
        its correlation field) share its thread, so they never add to its memory or its cores.
        They count as ``views`` queued clips while they wait or run.

        Raises:
            Overloaded: The queue holds too many clips to take these.
        """
        if self._queued_views + self._side_views + views > self.max_queue:
            raise Overloaded(max(1, math.ceil((self._queued_views + views) * self._seconds_per_view)))
        self._side_views += views
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, work)
        finally:
            self._side_views -= views

    def _take_batch(self) -> list[_Job]:
        jobs: list[_Job] = []
        views = 0
        now = time.perf_counter()
        while self._queue and (not jobs or views + len(self._queue[0].views) <= self.max_batch):
            job = self._queue.popleft()
            self._queued_views -= len(job.views)
            if job.future.done():  # the request went away
                continue
            if now > job.deadline:
                job.future.set_exception(DeadlineExceeded())
                continue
            jobs.append(job)
            views += len(job.views)
        return jobs

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        # A request with more views than max_batch runs alone, in max_batch chunks.
        return np.concatenate(
            [self._predict(batch[i : i + self.max_batch]) for i in range(0, len(batch), self.max_batch)]
        )

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._queue:
                self._arrived.clear()
                await self._arrived.wait()
            # Let the batch fill, at most max_wait after its oldest request arrived.
            while self._queued_views < self.max_batch:
                remaining = self._queue[0].enqueued + self.max_wait_s - time.perf_counter()
                if remaining <= 0:
                    break
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), remaining)
                except TimeoutError:
                    break
            jobs = self._take_batch()
            if not jobs:
                continue
            batch = np.concatenate([job.views for job in jobs])
            started = time.perf_counter()
            try:
                logits = await loop.run_in_executor(self._executor, self._infer, batch)
            except Exception as exc:  # the model failed: every request in the batch hears why
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            elapsed = time.perf_counter() - started
            self._seconds_per_view = 0.8 * self._seconds_per_view + 0.2 * elapsed / len(batch)
            if self._on_batch is not None:
                self._on_batch(len(batch), elapsed)
            offset = 0
            for job in jobs:
                n = len(job.views)
                if not job.future.done():
                    job.future.set_result(
                        (logits[offset : offset + n], Timing(started - job.enqueued, elapsed, len(batch)))
                    )
                offset += n
