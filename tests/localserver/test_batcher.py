"""Dynamic batching: order kept across batches, batches formed across requests, bounded queue, faults."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from tke_playbook.errors import ServerError
from tke_playbook.localserver.batcher import Batcher, QueueFull
from tke_playbook.localserver.metrics import ServerMetrics


def fake_encode(ids):
    """Row = (sum of ids, length): lets each answer be checked against its own input."""
    return np.array([[sum(row), len(row)] for row in ids], dtype=np.float32)


def run(coro):
    return asyncio.run(coro)


def expected(ids):
    return fake_encode(ids)


def test_each_request_gets_its_own_rows_in_order():
    async def main():
        batcher = Batcher(fake_encode, max_batch=8, max_wait_s=0.005)
        await batcher.start()
        requests = [[[i, j] for j in range(1 + i % 5)] for i in range(200)]
        results = await asyncio.gather(*(batcher.submit(r) for r in requests))
        await batcher.close()
        return batcher, requests, results

    batcher, requests, results = run(main())
    for request, result in zip(requests, results):
        assert np.array_equal(result, expected(request))
    assert batcher.largest_batch == 8  # concurrent requests were batched together, up to max_batch
    assert batcher.batches < 200


def test_several_workers_share_the_load():
    seen_threads = set()

    def encode(ids):
        seen_threads.add(threading.get_ident())
        time.sleep(0.002)
        return fake_encode(ids)

    async def main():
        batcher = Batcher(encode, max_batch=4, max_wait_s=0.0, workers=2)
        await batcher.start()
        requests = [[[i]] for i in range(64)]
        results = await asyncio.gather(*(batcher.submit(r) for r in requests))
        await batcher.close()
        return requests, results

    requests, results = run(main())
    assert all(np.array_equal(r, expected(q)) for q, r in zip(requests, results))
    assert len(seen_threads) == 2


def test_a_full_queue_refuses_new_requests_and_loses_none_it_accepted():
    gate = threading.Event()

    def slow(ids):
        gate.wait(5)
        return fake_encode(ids)

    async def main():
        metrics = ServerMetrics("m")
        batcher = Batcher(slow, max_batch=2, max_wait_s=0.0, max_queue=4, metrics=metrics)
        await batcher.start()
        tasks = [asyncio.ensure_future(batcher.submit([[i]])) for i in range(20)]
        await asyncio.sleep(0.05)
        gate.set()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        after = await batcher.submit([[7, 7]])  # the batcher still works
        await batcher.close()
        return outcomes, after, metrics

    outcomes, after, metrics = run(main())
    refused = [o for o in outcomes if isinstance(o, QueueFull)]
    served = [(i, o) for i, o in enumerate(outcomes) if isinstance(o, np.ndarray)]
    assert refused and served and len(refused) + len(served) == 20
    assert "overloaded" in str(refused[0])
    assert all(np.array_equal(o, expected([[i]])) for i, o in served)
    assert np.array_equal(after, expected([[7, 7]]))
    assert metrics.waiting == 0 and metrics.running == 0
    assert metrics.success == len(served) + 1


def test_a_failing_batch_fails_its_requests_and_the_batcher_carries_on():
    def encode(ids):
        if any(row[0] < 0 for row in ids):
            raise RuntimeError("boom")
        return fake_encode(ids)

    async def main():
        batcher = Batcher(encode, max_batch=1, max_wait_s=0.0)
        await batcher.start()
        with pytest.raises(ServerError, match="Encoding failed: boom"):
            await batcher.submit([[-1]])
        result = await batcher.submit([[3, 4]])
        await batcher.close()
        return result

    assert np.array_equal(run(main()), expected([[3, 4]]))


def test_a_cancelled_request_is_dropped_and_others_are_served():
    gate = threading.Event()

    def slow(ids):
        gate.wait(5)
        return fake_encode(ids)

    async def main():
        batcher = Batcher(slow, max_batch=1, max_wait_s=0.0)
        await batcher.start()
        first = asyncio.ensure_future(batcher.submit([[1]]))
        gone = asyncio.ensure_future(batcher.submit([[2]]))
        last = asyncio.ensure_future(batcher.submit([[3]]))
        await asyncio.sleep(0.02)
        gone.cancel()  # its client disconnected while it waited
        gate.set()
        results = await asyncio.gather(first, last)
        await batcher.close()
        return batcher, results

    batcher, (first, last) = run(main())
    assert np.array_equal(first, expected([[1]])) and np.array_equal(last, expected([[3]]))
    assert batcher.batches == 2


def test_closing_fails_waiting_requests_instead_of_hanging():
    gate = threading.Event()

    def slow(ids):
        gate.wait(0.2)
        return fake_encode(ids)

    async def main():
        batcher = Batcher(slow, max_batch=1, max_wait_s=0.0)
        await batcher.start()
        tasks = [asyncio.ensure_future(batcher.submit([[i]])) for i in range(3)]
        await asyncio.sleep(0.02)
        await batcher.close()
        return await asyncio.gather(*tasks, return_exceptions=True)

    outcomes = run(main())
    assert all(isinstance(o, ServerError) for o in outcomes)


@pytest.mark.parametrize("kwargs", [
    pytest.param({"max_batch": 0}, id="max-batch-zero"),
    pytest.param({"max_queue": 0}, id="max-queue-zero"),
    pytest.param({"workers": 0}, id="workers-zero"),
    pytest.param({"max_wait_s": -1}, id="negative-wait"),
])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        Batcher(fake_encode, **kwargs)


def test_a_batch_is_shared_between_the_waiting_requests():
    """Round-robin shares: a 100-row request queued first does not fill the batch that small requests wait for."""
    batches = []
    gate = threading.Event()

    def encode(ids):
        gate.wait(5)
        batches.append([row[0] for row in ids])
        return fake_encode(ids)

    async def main():
        batcher = Batcher(encode, max_batch=8, max_wait_s=0.0)
        await batcher.start()
        first = asyncio.ensure_future(batcher.submit([[-1]]))  # occupies the worker until the gate opens
        await asyncio.sleep(0.02)
        large = asyncio.ensure_future(batcher.submit([[1000 + i] for i in range(100)]))
        small = [asyncio.ensure_future(batcher.submit([[i]])) for i in range(5)]
        await asyncio.sleep(0.02)
        gate.set()
        results = await asyncio.gather(first, large, *small)
        await batcher.close()
        return results

    results = run(main())
    assert np.array_equal(results[1], expected([[1000 + i] for i in range(100)]))
    second = batches[1]
    assert sorted(r for r in second if r < 1000) == [0, 1, 2, 3, 4] and len(second) == 8


def test_a_cancelled_request_is_counted_as_aborted_not_as_success():
    gate = threading.Event()

    def slow(ids):
        gate.wait(5)
        return fake_encode(ids)

    async def main():
        metrics = ServerMetrics("m")
        batcher = Batcher(slow, max_batch=1, max_wait_s=0.0, metrics=metrics)
        await batcher.start()
        gone = asyncio.ensure_future(batcher.submit([[1], [2], [3]], prompt_tokens=3))
        await asyncio.sleep(0.02)
        gone.cancel()
        gate.set()
        await asyncio.gather(gone, return_exceptions=True)
        kept = await batcher.submit([[4]], prompt_tokens=1)
        await batcher.close()
        return metrics, batcher, kept

    metrics, batcher, kept = run(main())
    assert (metrics.aborted, metrics.success, metrics.prompt_tokens) == (1, 1, 1)
    assert batcher.pending == 0 and metrics.waiting == 0 and metrics.running == 0
    assert batcher.batches == 2  # the cancelled request's first row was running; its other two were dropped


def test_the_token_budget_keeps_steps_short_and_a_small_request_joins_the_next_one():
    """With a token budget a step holds few tokens (a row over the budget goes alone), and a one-row request that
    arrives behind a large one is in the very next batch, however small the budget."""
    batches = []
    gate = threading.Event()

    def encode(ids):
        gate.wait(5)
        batches.append([len(row) for row in ids])
        return fake_encode(ids)

    async def main():
        batcher = Batcher(encode, max_batch=64, max_wait_s=0.0, max_batch_tokens=10)
        await batcher.start()
        first = asyncio.ensure_future(batcher.submit([[-1]]))  # occupies the worker until the gate opens
        await asyncio.sleep(0.02)
        large = asyncio.ensure_future(batcher.submit([[1000 + i] * 4 for i in range(30)] + [[7] * 25]))
        await asyncio.sleep(0.01)
        small = asyncio.ensure_future(batcher.submit([[5, 5, 5]]))
        await asyncio.sleep(0.02)
        gate.set()
        results = await asyncio.gather(first, large, small)
        await batcher.close()
        return results

    _, large, small = run(main())
    assert np.array_equal(small, expected([[5, 5, 5]]))
    assert len(large) == 31 and np.array_equal(large[-1], expected([[7] * 25])[0])
    assert batches[1] == [3, 4]  # the small request first, then what of the large one fits in 10 tokens
    assert all(sum(b) <= 10 or len(b) == 1 for b in batches) and [25] in batches


class SteppedEncode:
    """An ``encode`` in sub-steps (one per row) that calls its checkpoint before each, as the real encoder does
    before each chunk and layer; records which thread ran each step. ``hold`` (an Event) stops bulk steps after
    the first ``hold_after`` until set; ``express_hold`` keeps the express worker's encoding running until set."""

    def __init__(self, hold_after: int | None = None):
        self.bulk_steps = 0
        self.started = threading.Event()
        self.hold, self.hold_after = threading.Event(), hold_after
        self.express_started, self.express_hold = threading.Event(), threading.Event()

    def __call__(self, ids, checkpoint=None):
        express = threading.current_thread().name.startswith("express")
        for _ in ids:
            if checkpoint is not None:
                checkpoint()
            if express:
                self.express_started.set()
                self.express_hold.wait(10)
                continue
            self.bulk_steps += 1
            self.started.set()
            if self.hold_after is not None and self.bulk_steps > self.hold_after:
                self.hold.wait(10)
            time.sleep(0.002)
        return fake_encode(ids)


def test_a_bulk_step_gives_way_to_the_express_worker_at_its_checkpoints():
    """While a small request is being encoded by the express worker, a running bulk step pauses at its next
    checkpoint: the query shares the cores (and the GIL) with at most one sub-step of the bulk request."""
    encode = SteppedEncode()

    async def main():
        batcher = Batcher(encode, max_batch=200, max_wait_s=0.0, workers=1, express_rows=8, express_priority_s=30)
        await batcher.start()
        bulk = asyncio.ensure_future(batcher.submit([[i] for i in range(1000, 1200)]))
        while not encode.started.is_set():
            await asyncio.sleep(0.001)
        small = asyncio.ensure_future(batcher.submit([[5, 5]]))
        while not encode.express_started.is_set():
            await asyncio.sleep(0.001)
        before = encode.bulk_steps
        await asyncio.sleep(0.3)  # the bulk step would go on meanwhile if it did not give way
        during = encode.bulk_steps - before
        encode.express_hold.set()
        results = await asyncio.gather(bulk, small)
        await batcher.close()
        return during, results

    during, (bulk, small) = run(main())
    assert np.array_equal(small, expected([[5, 5]]))
    assert np.array_equal(bulk, expected([[i] for i in range(1000, 1200)]))
    assert during <= 1


def test_a_step_whose_requests_all_left_stops_at_its_next_checkpoint():
    """vLLM aborts a request whose client disconnects: here the step already running for it stops at its next
    sub-step instead of encoding rows nobody waits for, and its rows are counted as abandoned."""
    encode = SteppedEncode(hold_after=2)

    async def main():
        metrics = ServerMetrics("m")
        batcher = Batcher(encode, max_batch=64, max_wait_s=0.0, metrics=metrics)
        await batcher.start()
        gone = asyncio.ensure_future(batcher.submit([[i] for i in range(100)]))
        while encode.bulk_steps <= 2:  # the third sub-step of its first step is running (held)
            await asyncio.sleep(0.001)
        gone.cancel()  # its client left
        await asyncio.gather(gone, return_exceptions=True)
        encode.hold.set()
        kept = await batcher.submit([[4]])
        await batcher.close()
        return metrics, batcher, kept

    metrics, batcher, kept = run(main())
    assert np.array_equal(kept, expected([[4]]))
    assert encode.bulk_steps == 3 + 1  # three sub-steps of the abandoned step, then the kept request's one
    assert batcher.stopped_steps == 1 and batcher.abandoned_rows == 100 == metrics.abandoned_rows
    assert (metrics.aborted, metrics.success) == (1, 1)
