"""The load generator's own ceiling: how many req/s it sends against a server that does nothing.

The null server runs in a child process (a server in the generator's interpreter would share its GIL and halve
the number). Compare a measured server's req/s with this: within half of it, the generator is part of the result
(:func:`~tke_playbook.loadgen.summary.headroom_warning`).
"""

from __future__ import annotations

import time

from .inputs import encoded_bodies
from .nullserver import start_null_server
from .runner import HttpEngine, _closed_level, make_engine
from .sync import run_sync


async def measure_ceiling_async(url: str, concurrency: int = 64, requests: int = 5000, *, input_tokens: int = 16,
                                warmup: int = 500, timeout: float = 30.0,
                                engine: HttpEngine | str = "raw") -> float:
    """Successful req/s at ``concurrency`` against the (null) server at ``url``, after ``warmup`` requests."""
    async with make_engine(engine, url, concurrency, timeout=timeout) as sender:
        bodies = [sender.prepare(b) for b in encoded_bodies("null", input_tokens)]
        if warmup:
            await _closed_level(sender, bodies, concurrency, warmup, None, time.perf_counter())
        began = time.perf_counter()
        level = await _closed_level(sender, bodies, concurrency, requests, None, began)
        elapsed = time.perf_counter() - began
    return sum(1 for s in level.status if s == 200) / elapsed


def measure_ceiling(concurrency: int = 64, requests: int = 5000, *, server_cpu: int | None = None,
                    input_tokens: int = 16, engine: HttpEngine | str = "raw") -> float:
    """Start a null server in a child process and measure the generator's req/s against it (Jupyter-safe)."""
    with start_null_server(0.0, cpu=server_cpu) as server:
        return run_sync(measure_ceiling_async(server.url, concurrency, requests, input_tokens=input_tokens,
                                              engine=engine), "generator ceiling")


generator_ceiling = measure_ceiling
