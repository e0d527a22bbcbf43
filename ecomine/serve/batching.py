"""Dynamic batching of a model arm: the next batch is formed when the model is free.

Sits in ``ecomine.serve`` under the model deployments (``deployments._ModelServer``
submits every job here). Hand-written instead of ``@serve.batch``, for one
reason measured on 2 cores: ``@serve.batch`` closes the next batch
``batch_wait_timeout_s`` after its first request even while the previous batch
still computes, so under load batches stop growing with the queue (ecomine's
batching added nothing over max_batch_size 1), and with nothing else in flight
each request still waits the full timeout. Here a batch is cut only when the
model is idle: at c=1 a request runs at once, under load it takes everything
that queued meanwhile (up to ``max_batch_size``). ``wait_s`` (the settings'
``batch_wait_timeout_s``) is how long an idle model waits for a fuller batch
when fewer than ``max_batch_size`` are queued (0: never). ``weight`` counts a job as that many
toward ``max_batch_size`` (live events: a call's number of events); a job heavier than the cap
runs in a batch of its own.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["Batcher"]


class Batcher:
    """``await batcher.submit(job)`` -> the job's result from ``run(list of jobs) -> list of results``."""

    def __init__(
        self, run: Callable[[list[Any]], Awaitable[list[Any]]], *, max_batch_size: int = 16, wait_s: float = 0.0,
        on_batch: Callable[[int], None] | None = None, weight: Callable[[Any], int] | None = None,
    ) -> None:
        self._run = run
        self._weight = weight
        self.max_batch_size = max_batch_size
        self.wait_s = wait_s
        self._on_batch = on_batch
        self._queue: deque[tuple[Any, asyncio.Future]] = deque()
        self._worker: asyncio.Task | None = None

    def configure(self, *, max_batch_size: int, wait_s: float) -> None:
        """New size and wait, applied from the next batch on."""
        self.max_batch_size = max_batch_size
        self.wait_s = wait_s

    async def submit(self, job: Any) -> Any:
        future = asyncio.get_running_loop().create_future()
        self._queue.append((job, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.ensure_future(self._drain())
        return await future

    def _take(self) -> list[tuple[Any, asyncio.Future]]:
        batch, total = [], 0
        while self._queue:
            job, future = self._queue[0]
            if future.done():  # a caller that gave up (timeout, disconnect) is dropped
                self._queue.popleft()
                continue
            size = self._weight(job) if self._weight is not None else 1
            if batch and total + size > self.max_batch_size:
                break
            self._queue.popleft()
            batch.append((job, future))
            total += size
        return batch

    async def _drain(self) -> None:
        while self._queue:
            if self.wait_s > 0 and len(self._queue) < self.max_batch_size:
                await asyncio.sleep(self.wait_s)
            batch = self._take()
            if not batch:
                continue
            if self._on_batch is not None:
                self._on_batch(len(batch))
            try:
                results = await self._run([job for job, _ in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"a batch of {len(batch)} jobs returned {len(results)} results")
            except Exception as exc:  # every caller of the batch gets the error; the next batch runs
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results):
                if not future.done():
                    future.set_result(result)
