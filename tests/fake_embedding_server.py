"""A configurable OpenAI-compatible embeddings server for tests, on 127.0.0.1 with an ephemeral port.

It runs an aiohttp app on its own event loop in a background thread, so sync and async clients can both use it.
Vectors are deterministic (:func:`fake_vector`), ``usage.prompt_tokens`` is the inputs' word count. Faults are
injected per ``/v1/embeddings`` request: first from ``script`` (a list consumed in order), then at random with
probability ``error_rate`` (seeded) among ``error_kinds``. Fault kinds: ``"429"``, ``"500"``, ``"503"``
(an error answer), ``"slow"`` (answers after ``slow_s``), ``"close"`` (drops the connection unanswered), ``"ok"``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import random
import threading
from collections import deque

import numpy as np
from aiohttp import web

FAULT_KINDS = ("429", "500", "503", "slow", "close", "ok")


def fake_vector(text: str, dim: int = 8) -> np.ndarray:
    """The unit vector the fake server returns for ``text``."""
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    vector = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return vector / np.linalg.norm(vector)


def _error(status: int, message: str, kind: str) -> web.Response:
    return web.json_response({"object": "error", "message": message, "type": kind, "param": None,
                              "code": status}, status=status)


class FakeEmbeddingServer:
    """Start with :meth:`start` or as a context manager; ``url`` is the base URL, ``requests`` what arrived."""

    def __init__(self, *, dim: int = 8, delay_s: float = 0.0, script=(), error_rate: float = 0.0,
                 error_kinds=("429", "503", "500"), slow_s: float = 2.0, api_key: str | None = None,
                 max_tokens: int = 512, model: str = "fake-model", seed: int = 0):
        self.dim, self.delay_s, self.slow_s = dim, delay_s, slow_s
        self.script = deque(script)
        self.error_rate, self.error_kinds = error_rate, tuple(error_kinds)
        self.api_key, self.max_tokens, self.model = api_key, max_tokens, model
        self.rng = random.Random(seed)
        self.requests: list[dict] = []
        self.faults: list[str] = []
        self.prompt_tokens_total = 0
        self.latencies: list[float] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- handlers ---------------------------------------------------------------------------------------------

    def _authorised(self, request: web.Request) -> bool:
        return self.api_key is None or request.headers.get("Authorization") == f"Bearer {self.api_key}"

    def _next_fault(self) -> str:
        if self.script:
            return self.script.popleft()
        if self.error_rate and self.rng.random() < self.error_rate:
            return self.rng.choice(self.error_kinds)
        return "ok"

    async def embeddings(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        fault = self._next_fault()
        self.requests.append({"inputs": texts, "model": body.get("model"), "fault": fault,
                              "auth": request.headers.get("Authorization") is not None})
        self.faults.append(fault)
        if not self._authorised(request):
            return _error(401, "Unauthorized", "Unauthorized")
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if fault in ("429", "500", "503"):
            return _error(int(fault), f"injected {fault}", "InjectedError")
        if fault == "close":
            request.transport.close()
            return web.Response(status=500)
        if fault == "slow":
            await asyncio.sleep(self.slow_s)
        counts = [len(t.split()) for t in texts]
        if max(counts, default=0) > self.max_tokens:
            return _error(400, f"This model's maximum context length is {self.max_tokens} tokens. However, you "
                               f"requested {max(counts)} tokens in the input for embedding generation. Please "
                               f"reduce the length of the input.", "BadRequestError")
        as_b64 = body.get("encoding_format") == "base64"
        data = []
        for i, text in enumerate(texts):
            vector = fake_vector(text, self.dim)
            value = base64.b64encode(vector.astype("<f4").tobytes()).decode() if as_b64 else vector.tolist()
            data.append({"index": i, "object": "embedding", "embedding": value})
        data.reverse()  # the client must order by index, not by position
        self.prompt_tokens_total += sum(counts)
        self.latencies.append(self.delay_s)
        return web.json_response({"id": "embd-fake", "object": "list", "created": 0, "model": self.model,
                                  "data": data, "usage": {"prompt_tokens": sum(counts),
                                                          "total_tokens": sum(counts), "completion_tokens": 0}})

    async def models(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return _error(401, "Unauthorized", "Unauthorized")
        return web.json_response({"object": "list", "data": [{"id": self.model, "object": "model"}]})

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def metrics(self, request: web.Request) -> web.Response:
        lines = ["# TYPE vllm:e2e_request_latency_seconds histogram"]
        for le in ("0.01", "0.05", "0.1", "+Inf"):
            count = sum(1 for x in self.latencies if le == "+Inf" or x <= float(le))
            lines.append(f'vllm:e2e_request_latency_seconds_bucket{{le="{le}",model_name="{self.model}"}} {count}')
        lines += [f'vllm:e2e_request_latency_seconds_sum{{model_name="{self.model}"}} {sum(self.latencies)}',
                  f'vllm:e2e_request_latency_seconds_count{{model_name="{self.model}"}} {len(self.latencies)}',
                  "# TYPE vllm:prompt_tokens_total counter",
                  f'vllm:prompt_tokens_total{{model_name="{self.model}"}} {self.prompt_tokens_total}']
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")

    # --- lifecycle --------------------------------------------------------------------------------------------

    def start(self) -> "FakeEmbeddingServer":
        app = web.Application()
        app.router.add_post("/v1/embeddings", self.embeddings)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/health", self.health)
        app.router.add_get("/metrics", self.metrics)
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        async def boot() -> None:
            self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]
            ready.set()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(boot())
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="fake-embedding-server", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the fake embedding server did not start within 10 s")
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        async def shutdown() -> None:
            await self._runner.cleanup()
            pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in pending:  # handlers still sleeping through a "slow" fault
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self._loop = None

    def __enter__(self) -> "FakeEmbeddingServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
