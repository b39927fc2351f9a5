"""Dynamic batching across concurrent requests: a bounded queue of sentences, fair shares, a few encoding threads.

Requests put their token-id lists on the queue and await a future. Whenever one of ``workers`` encoding
threads is free, a collector takes up to ``max_batch`` sentences and ``max_batch_tokens`` tokens - waiting at
most ``max_wait_s`` for more while they keep arriving - and encodes them in that thread (torch releases the GIL,
so the event loop keeps parsing requests meanwhile). The token budget keeps every step short, so a request that
arrives while batches run joins the next one within a fraction of a second. A batch is shared between the
waiting requests by water-filling: the requests with the fewest rows left come first and each takes at most an
equal part of what is left, so a one-sentence request joins the very next batch and a request of thousands of
sentences runs beside small ones instead of ahead of them. And while bulk rows wait or every worker is busy, an
express worker encodes the rows of small requests (at most ``express_rows`` sentences) at once, so a query does
not wait for the steps of a bulk request to end. While batches run the next ones fill up, so under load batches
grow by themselves.

An ``encode`` that takes a ``checkpoint`` keyword calls it between its sub-steps (chunks, layers). There a regular
worker's step pauses while small requests' rows wait or are being encoded by the express worker (at most
``express_priority_s`` per checkpoint, so bulk work is never starved for good): a small request then shares the
cores and the GIL with at most one sub-step of each bulk batch. And a step whose requests were all cancelled (their
clients left) stops at its next checkpoint, as vLLM aborts a request on disconnect; its rows are counted
as abandoned (``abandoned_rows``; dropped queued rows too) rather than encoded for nobody.

When more than ``max_queue`` sentences wait, new requests are refused with :class:`QueueFull` (the server answers
503) instead of the queue growing without bound; a request larger than ``max_queue`` is taken only when the queue
is empty. A request cancelled while it waits or runs (its client left) has its remaining sentences dropped and is
counted as aborted.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ..errors import ServerError
from .metrics import ServerMetrics
from .settings import EXPRESS_PRIORITY_S

log = logging.getLogger("tke_playbook.localserver")


def _lower_priority(nice: int) -> None:
    """Make the calling thread ``nice`` steps nicer (Linux schedules threads one by one), so the event loop and the
    express worker get the cores first when bulk encoding keeps them busy."""
    if nice and hasattr(os, "setpriority") and hasattr(threading, "get_native_id"):
        try:
            tid = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + nice)
        except OSError:
            pass


class QueueFull(ServerError):
    """Too many sentences are waiting: the request was not queued (HTTP 503; retry later)."""


class _Abandoned(Exception):
    """Raised at a checkpoint inside ``encode``: every request of the step was cancelled (its client left)."""


def _takes_checkpoint(encode: Callable) -> bool:
    try:
        return "checkpoint" in inspect.signature(encode).parameters
    except (TypeError, ValueError):  # a builtin without a signature
        return False


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
                 metrics: ServerMetrics | None = None, max_batch_tokens: int | None = None,
                 express_rows: int = 0, bulk_nice: int = 0, express_priority_s: float = EXPRESS_PRIORITY_S):
        if max_batch < 1 or max_queue < 1 or max_wait_s < 0 or workers < 1 or (
                max_batch_tokens is not None and max_batch_tokens < 1):
            raise ValueError("max_batch, max_batch_tokens, max_queue and workers must be at least 1 and max_wait_s "
                             "at least 0")
        self.encode = encode
        self.max_batch, self.max_wait_s, self.max_queue = int(max_batch), float(max_wait_s), int(max_queue)
        self.max_batch_tokens = int(max_batch_tokens) if max_batch_tokens else None
        self.express_rows = max(0, int(express_rows))
        self.bulk_nice = int(bulk_nice)  # the regular workers' threads run this much nicer than the event loop
        self.express_priority_s = max(0.0, float(express_priority_s))
        self._checkpoints = _takes_checkpoint(encode)
        self._express_running = False
        self._bulk_may_run = threading.Event()  # clear while small requests' rows wait or run (express priority)
        self._bulk_may_run.set()
        self.abandoned_rows = 0  # rows of cancelled requests not encoded: dropped from the queue or stopped
        self.stopped_steps = 0  # steps stopped at a checkpoint because all their requests were cancelled
        self._small_pending = 0  # rows of small requests (express_rows or fewer) waiting to be taken
        self._encoding = 0  # regular workers encoding now
        self._express_wakeup: asyncio.Event | None = None
        self._express_task: asyncio.Task | None = None
        self._express_executor: ThreadPoolExecutor | None = None
        self.express_batches = 0
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
        self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="encoder",
                                            initializer=_lower_priority, initargs=(self.bulk_nice,))
        self._task = asyncio.get_running_loop().create_task(self._run(), name="batcher")
        if self.express_rows:
            self._express_wakeup = asyncio.Event()
            self._express_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="express")
            self._express_task = asyncio.get_running_loop().create_task(self._run_express(), name="express")

    async def close(self) -> None:
        for task in (self._task, self._express_task):
            if task is not None:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        while self._jobs:
            job = self._jobs.popleft()
            if not job.future.done():
                job.future.set_exception(ServerError("The server is shutting down; retry against a running one."))
        for executor in (self._executor, self._express_executor):
            if executor is not None:
                executor.shutdown(wait=True)

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
        small = self._small(job)
        try:
            self._jobs.append(job)
            self._pending += n
            if small:
                self._small_pending += n
                self._express_wakeup.set()
                self._update_gate()
            self._wakeup.set()
            result = await job.future
            ok = True
            return result
        except asyncio.CancelledError:
            aborted = True
            raise
        finally:
            self._pending -= n - job.taken  # rows never taken leave the queue now (the collector skips the job)
            if aborted:
                self._abandon(n - job.taken)
            if small:
                self._small_pending -= n - job.taken
            job.taken = n
            self._update_gate()
            if self.metrics:
                now = time.perf_counter()  # vLLM's RUNNING phase: first step to the end, wall time (batches of
                running = now - job.started if job.started is not None else 0.0  # one request may run at once)
                self.metrics.request_finished(started=job.started is not None, ok=ok, aborted=aborted,
                                              e2e_s=now - job.enqueued, inference_s=running,
                                              prompt_tokens=prompt_tokens)

    def _abandon(self, rows: int) -> None:
        if rows:
            self.abandoned_rows += rows
            if self.metrics:
                self.metrics.rows_abandoned(rows)

    def _update_gate(self) -> None:
        """Bulk steps pause at their checkpoints while small requests' rows wait or the express worker runs."""
        if self.express_rows and (self._small_pending > 0 or self._express_running):
            self._bulk_may_run.clear()
        else:
            self._bulk_may_run.set()

    def _checkpoint(self, jobs: list[_Job], bulk: bool) -> Callable[[], None]:
        """What ``encode`` calls between its sub-steps (in the worker thread): stop a step nobody waits for, and
        let a bulk step give way to the express worker."""
        def checkpoint() -> None:
            if bulk and not self._bulk_may_run.is_set():
                self._bulk_may_run.wait(self.express_priority_s)
            if all(job.future.done() for job in jobs):  # a read of a flag: safe from this thread
                raise _Abandoned()
        return checkpoint

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
        # While bulk rows wait, small requests' rows are the express worker's: in a bulk step they would wait for
        # its whole token budget (on a lower priority).
        bulk_only = bool(self.express_rows) and self._pending > self._small_pending
        batch = self._take(min(self.max_batch, -(-self._pending // (1 + self._idle))), bulk_only=bulk_only)
        self._update_gate()
        return batch

    def _small(self, job: _Job) -> bool:
        return bool(self.express_rows) and len(job.ids) <= self.express_rows

    def _take(self, limit: int, small_only: bool = False, bulk_only: bool = False) -> list[tuple[_Job, int]]:
        """Up to ``limit`` rows and ``max_batch_tokens`` tokens (always at least one row), shared by water-filling:
        jobs with the fewest rows left first, each taking at most an equal part of the rows still free."""
        live = [job for job in self._jobs if not job.future.done() and job.taken < len(job.ids)]
        jobs = sorted((job for job in live if self._wanted(job, small_only, bulk_only)),
                      key=lambda job: len(job.ids) - job.taken)
        batch: list[tuple[_Job, int]] = []
        budget, tokens = self.max_batch_tokens, 0
        for position, job in enumerate(jobs):
            share = max(1, (limit - len(batch)) // (len(jobs) - position))
            tokens = self._take_rows(job, min(len(job.ids), job.taken + share), batch, limit, tokens)
            if len(batch) >= limit or (budget is not None and tokens >= budget):
                break
        self._jobs = collections.deque(job for job in live if job.taken < len(job.ids))
        return batch

    def _wanted(self, job: _Job, small_only: bool, bulk_only: bool) -> bool:
        """Whether a step for small requests' rows (``small_only``), or for the bulk's, takes rows of ``job``."""
        if small_only == bulk_only:  # neither: every job
            return True
        return self._small(job) if small_only else not self._small(job)

    def _take_rows(self, job: _Job, end: int, batch: list[tuple[_Job, int]], limit: int, tokens: int) -> int:
        """Move ``job``'s rows up to ``end`` into ``batch`` while it has room (``limit`` rows, and the token budget
        - but never an empty batch); the batch's tokens after."""
        budget = self.max_batch_tokens
        while job.taken < end and len(batch) < limit:
            size = len(job.ids[job.taken])
            if budget is not None and batch and tokens + size > budget:
                break
            batch.append((job, job.taken))
            job.taken += 1
            tokens += size
            self._pending -= 1
            self._small_pending -= self._small(job)
        return tokens

    async def _run_express(self) -> None:
        """The express worker: while every regular worker is encoding, small requests' rows go here at once."""
        while True:
            while not (self._small_pending and (self._encoding >= self.workers
                                                or self._pending > self._small_pending)):
                self._express_wakeup.clear()
                await self._express_wakeup.wait()
            batch = self._take(self.max_batch, small_only=True)
            if batch:
                self.express_batches += 1
                self._express_running = True
                self._update_gate()
                try:
                    await self._encode(batch, self._express_executor)
                finally:
                    self._express_running = False
                    self._update_gate()
            else:
                await asyncio.sleep(0)

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

    async def _encode(self, batch: list[tuple[_Job, int]], executor: ThreadPoolExecutor | None = None) -> None:
        loop = asyncio.get_running_loop()
        now = time.perf_counter()
        regular = executor is None
        self._mark_started(batch, now)
        self._encoding += regular
        if regular and self._express_wakeup is not None:
            self._express_wakeup.set()
        ids = [job.ids[i] for job, i in batch]
        jobs = list({id(job): job for job, _ in batch}.values())
        args = (ids, self._checkpoint(jobs, regular and not any(map(self._small, jobs))))
        try:
            rows = await loop.run_in_executor(executor or self._executor, self._call, *args)
        except _Abandoned:
            self.stopped_steps += 1
            self._abandon(len(batch))
            log.info("a step of %d rows stopped: the clients of its requests left", len(batch))
            return
        except asyncio.CancelledError:
            self._fail(batch, ServerError("The server is shutting down."))
            raise
        except Exception as exc:  # a failed batch fails its requests, never the server
            self._fail(batch, ServerError(f"Encoding failed: {exc}", cause=exc))
            return
        finally:
            self._encoding -= regular
        self._deliver(batch, rows, time.perf_counter() - now)

    def _mark_started(self, batch: list[tuple[_Job, int]], now: float) -> None:
        for job, _ in batch:
            if job.started is None:
                job.started = now
                if self.metrics:
                    self.metrics.request_started(now - job.enqueued)

    @staticmethod
    def _fail(batch: list[tuple[_Job, int]], error: ServerError) -> None:
        for job, _ in batch:
            if not job.future.done():
                job.future.set_exception(error)

    def _call(self, ids: list[list[int]], checkpoint: Callable[[], None]) -> np.ndarray:
        """``encode`` in a worker thread, with the checkpoint when it takes one (else one check before it)."""
        if self._checkpoints:
            return self.encode(ids, checkpoint=checkpoint)
        checkpoint()
        return self.encode(ids)

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
