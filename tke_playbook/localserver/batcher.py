"""Dynamic batching across concurrent requests: a bounded queue of sentences, fair shares, a few encoding threads.

Requests put their token-id lists on the queue and await a future. Whenever one of ``workers`` encoding
threads is free, a collector takes up to ``max_batch`` sentences - waiting at most ``max_wait_s`` for more while
they keep arriving - and encodes them in that thread (torch releases the GIL, so the event loop keeps parsing
requests meanwhile). A batch is shared between the waiting requests round-robin: each gets an equal part, so a
request of thousands of sentences runs beside small ones instead of ahead of them. While batches run the next
ones fill up, so under load batches grow by themselves. When more than ``max_queue`` sentences wait, new
requests are refused with :class:`QueueFull` (the server answers 503) instead of the queue growing without
bound; a request larger than ``max_queue`` is taken only when the queue is empty. A request cancelled while it
waits or runs (its client left) has its remaining sentences dropped and is counted as aborted.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ..errors import ServerError
from .metrics import ServerMetrics


class QueueFull(ServerError):
    """Too many sentences are waiting: the request was not queued (HTTP 503; retry later)."""


@dataclass(eq=False)
class _Job:
    ids: list[list[int]]
    future: asyncio.Future
    enqueued: float
    out: np.ndarray | None = None
    remaining: int = 0  # rows not encoded yet
    taken: int = 0  # rows handed to batches so far (rows are taken in order)
    started: float | None = None
    inference_s: float = 0.0


class Batcher:
    """Collects sentences from concurrent requests into batches for ``encode(list_of_id_lists) -> ndarray``."""

    def __init__(self, encode: Callable[[list[list[int]]], np.ndarray], *, max_batch: int = 64,
                 max_wait_s: float = 0.002, max_queue: int = 4096, workers: int = 1,
                 metrics: ServerMetrics | None = None):
        if max_batch < 1 or max_queue < 1 or max_wait_s < 0 or workers < 1:
            raise ValueError("max_batch, max_queue and workers must be at least 1 and max_wait_s at least 0")
        self.encode = encode
        self.max_batch, self.max_wait_s, self.max_queue = int(max_batch), float(max_wait_s), int(max_queue)
        self.workers = int(workers)
        self._idle = self.workers
        self.metrics = metrics
        self._jobs: collections.deque[_Job] = collections.deque()  # jobs with rows not yet taken, round-robin
        self._pending = 0  # rows waiting to be taken
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self.batches = 0  # number of batches encoded (for tests and logs)
        self.largest_batch = 0

    @property
    def pending(self) -> int:
        """Sentences waiting to be batched."""
        return self._pending

    async def start(self) -> None:
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="encoder")
        self._task = asyncio.get_running_loop().create_task(self._run(), name="batcher")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        while self._jobs:
            job = self._jobs.popleft()
            if not job.future.done():
                job.future.set_exception(ServerError("The server is shutting down; retry against a running one."))
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    async def submit(self, ids: list[list[int]], *, prompt_tokens: int = 0) -> np.ndarray:
        """Queue one request's token-id lists and return their embeddings (rows in order)."""
        if self._task is None or self._task.done():
            raise ServerError("The batcher is not running.")
        n = len(ids)
        if n == 0:
            return np.zeros((0, 0), dtype=np.float32)
        if self._pending and self._pending + n > self.max_queue:
            raise QueueFull(f"The server is overloaded: {self._pending} sentences are waiting (limit "
                            f"{self.max_queue}). Retry later or lower the request rate.", obj=self._pending)
        loop = asyncio.get_running_loop()
        job = _Job(ids=ids, future=loop.create_future(), enqueued=time.perf_counter(), remaining=n)
        if self.metrics:
            self.metrics.request_queued()
        ok = aborted = False
        try:
            self._jobs.append(job)
            self._pending += n
            self._wakeup.set()
            result = await job.future
            ok = True
            return result
        except asyncio.CancelledError:
            aborted = True
            raise
        finally:
            self._pending -= n - job.taken  # rows never taken leave the queue now (the collector skips the job)
            job.taken = n
            if self.metrics:
                now = time.perf_counter()  # vLLM's RUNNING phase: first step to the end, wall time (batches of
                running = now - job.started if job.started is not None else 0.0  # one request may run at once)
                self.metrics.request_finished(started=job.started is not None, ok=ok, aborted=aborted,
                                              e2e_s=now - job.enqueued, inference_s=running,
                                              prompt_tokens=prompt_tokens)

    # --- the collector -----------------------------------------------------------------------------------

    async def _gather(self) -> list[tuple[_Job, int]]:
        """Wait for work, then for more while it keeps arriving (up to max_wait_s), and take one batch.

        With several idle workers the waiting sentences are shared between them, so no core sits idle.
        """
        while not self._pending:
            self._wakeup.clear()
            await self._wakeup.wait()
        if self.max_wait_s > 0:
            deadline = time.perf_counter() + self.max_wait_s
            seen = -1
            while self._pending < self.max_batch and self._pending != seen and time.perf_counter() < deadline:
                seen = self._pending
                await asyncio.sleep(0)  # let handlers whose bodies already arrived enqueue
                if self._pending == seen:
                    await asyncio.sleep(min(0.0005, max(0.0, deadline - time.perf_counter())))
        return self._take(min(self.max_batch, -(-self._pending // (1 + self._idle))))

    def _take(self, limit: int) -> list[tuple[_Job, int]]:
        """Up to ``limit`` rows, shared round-robin between the waiting jobs (an equal part each, in turn)."""
        batch: list[tuple[_Job, int]] = []
        while self._jobs and len(batch) < limit:
            share = max(1, (limit - len(batch)) // len(self._jobs))
            job = self._jobs.popleft()
            if job.future.done() or job.taken >= len(job.ids):  # finished, failed or its client went away
                continue
            count = min(share, len(job.ids) - job.taken, limit - len(batch))
            batch.extend((job, index) for index in range(job.taken, job.taken + count))
            job.taken += count
            self._pending -= count
            if job.taken < len(job.ids):
                self._jobs.append(job)
        return batch

    async def _run(self) -> None:
        slots = asyncio.Semaphore(self.workers)
        running: set[asyncio.Task] = set()

        def finished(task: asyncio.Task) -> None:
            running.discard(task)
            self._idle += 1
            slots.release()

        try:
            while True:
                await slots.acquire()
                self._idle -= 1
                try:
                    batch = await self._gather()
                except BaseException:
                    self._idle += 1
                    slots.release()
                    raise
                if not batch:  # only rows of requests that just left: let their handlers clean up
                    self._idle += 1
                    slots.release()
                    await asyncio.sleep(0)
                    continue
                task = asyncio.get_running_loop().create_task(self._encode(batch))
                running.add(task)
                task.add_done_callback(finished)
        finally:
            for task in list(running):
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    async def _encode(self, batch: list[tuple[_Job, int]]) -> None:
        loop = asyncio.get_running_loop()
        now = time.perf_counter()
        for job, _ in batch:
            if job.started is None:
                job.started = now
                if self.metrics:
                    self.metrics.request_started(now - job.enqueued)
        try:
            rows = await loop.run_in_executor(self._executor, self.encode, [job.ids[i] for job, i in batch])
        except asyncio.CancelledError:
            for job, _ in batch:
                if not job.future.done():
                    job.future.set_exception(ServerError("The server is shutting down."))
            raise
        except Exception as exc:  # a failed batch fails its requests, never the server
            for job, _ in batch:
                if not job.future.done():
                    job.future.set_exception(ServerError(f"Encoding failed: {exc}", cause=exc))
            return
        self._deliver(batch, rows, time.perf_counter() - now)

    def _deliver(self, batch: list[tuple[_Job, int]], rows: np.ndarray, took: float) -> None:
        """Put each encoded row into its request's answer; a request is done when its last row arrives."""
        self.batches += 1
        self.largest_batch = max(self.largest_batch, len(batch))
        for job in {id(job): job for job, _ in batch}.values():
            job.inference_s += took
        for (job, index), row in zip(batch, rows):
            if job.future.done():
                continue
            if job.out is None:
                job.out = np.empty((len(job.ids), rows.shape[1]), dtype=np.float32)
            job.out[index] = row
            job.remaining -= 1
            if job.remaining == 0:
                job.future.set_result(job.out)
