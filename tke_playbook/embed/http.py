"""Clients for any OpenAI-compatible embeddings endpoint (vLLM, the local server, a cluster LB or port-forward).

``EmbeddingClient`` (sync) and ``AsyncEmbeddingClient`` (async) share one behaviour: inputs are cut into batches of
``max_batch_size``; 429, 5xx, timeouts and dropped connections are retried with exponential backoff (honouring
``Retry-After``); 400 raises :class:`~tke_playbook.errors.BadRequestError` with the server's message, 401
:class:`~tke_playbook.errors.AuthenticationError`, and running out of retries
:class:`~tke_playbook.errors.RetriesExhaustedError` naming the last failure. ``embed_queries``/``embed_documents``
apply the catalog's prompts for the model. The API key never appears in reprs, errors or logs.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import warnings
from collections import deque
from collections.abc import Generator, Iterable
from typing import Any

import httpx
import numpy as np

from ..errors import EmbeddingAPIError, UnknownNameError
from ..specs.catalog import ModelInfo, get_model
from . import api

_RETRYABLE = (httpx.TimeoutException, httpx.TransportError)
_Attempt = tuple[httpx.Response | None, Exception | None]  # one attempt's answer, or the error instead of one


class _ClientBase:
    """Configuration, prompts and bookkeeping shared by the sync and async clients."""

    def __init__(self, base_url: str, model: str | None = None, api_key: str | None = None, *,
                 timeout: float = 60.0, max_batch_size: int = 64, retries: int = 4, backoff: float = 0.5,
                 max_backoff: float = 8.0, catalog_model: str | ModelInfo | None = None):
        self.base_url = api.root_url(base_url)
        api.batches([], max_batch_size)  # validates the size
        self.model = model
        self.timeout = float(timeout)
        self.max_batch_size = int(max_batch_size)
        self.retries = max(0, int(retries))
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self._catalog_model = catalog_model
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._warned = False
        self.timings: deque[float] = deque(maxlen=1000)  # wall seconds of each embed call
        self.last_latency_s: float | None = None
        self.last_prompt_tokens: int | None = None

    @property
    def name(self) -> str:
        return self.model or self.base_url

    def __repr__(self) -> str:
        key = ", api_key=***" if self._headers else ""
        return f"{type(self).__name__}({self.base_url!r}, model={self.model!r}{key})"

    def model_info(self) -> ModelInfo | None:
        """The catalog entry used for prompts, or None (with one warning) when the model is not in the catalog."""
        wanted = self._catalog_model or self.model
        if wanted is None:
            return None
        try:
            return get_model(wanted)
        except UnknownNameError:
            if not self._warned:
                self._warned = True
                warnings.warn(f"model {wanted!r} is not in the catalog: texts are sent without a query or document "
                              f"prompt (pass catalog_model=... to choose the prompts)", stacklevel=4)
            return None

    def _queries(self, texts: Iterable[str] | str, task: str | None) -> list[str]:
        info = self.model_info()
        items = api.check_texts(texts)
        return [info.format_query(t, task) for t in items] if info else items

    def _documents(self, texts: Iterable[str] | str) -> list[str]:
        info = self.model_info()
        items = api.check_texts(texts)
        return [info.format_document(t) for t in items] if info else items

    def _retry_policy(self, url: str, retry: bool) -> Generator[float, _Attempt, httpx.Response]:
        """The retry policy of both clients, written once. Send it each attempt's ``(response, error)``: it
        answers the seconds to wait before the next attempt, returns (as ``StopIteration.value``) the successful
        response, or raises - the API error of a fatal status, or RetriesExhaustedError once ``retries`` are
        spent. Primed with ``next()``."""
        attempts = self.retries + 1 if retry else 1
        response, cause = yield 0.0
        for attempt in itertools.count():
            status = body = retry_after = None
            if response is not None:
                if response.status_code < 400:
                    return response
                status, body = response.status_code, api.decode_body(response.content)
                if not api.is_retryable(status):
                    raise api.error_for(status, body, url)
                retry_after = response.headers.get("retry-after")
            if attempt + 1 == attempts:
                raise api.exhausted_error(url, attempts, status, body, cause)
            response, cause = yield api.retry_delay(attempt, self.backoff, self.max_backoff, retry_after)

    def _finish(self, started: float, parts: list[np.ndarray], tokens: list[int | None]) -> np.ndarray:
        self.last_latency_s = time.perf_counter() - started
        self.timings.append(self.last_latency_s)
        self.last_prompt_tokens = None if any(t is None for t in tokens) else sum(tokens)
        parts = [p for p in parts if p.size]
        return np.vstack(parts) if parts else np.empty((0, 0), dtype=np.float32)


class EmbeddingClient(_ClientBase):
    """A synchronous client (httpx). Use as a context manager or call :meth:`close`."""

    def __init__(self, base_url: str, model: str | None = None, api_key: str | None = None, **options: Any):
        super().__init__(base_url, model, api_key, **options)
        self._http = httpx.Client(timeout=self.timeout, headers=self._headers)

    def _request(self, method: str, path: str, body: dict | None = None, *, retry: bool = True) -> httpx.Response:
        url = self.base_url + path
        policy = self._retry_policy(url, retry)
        next(policy)
        while True:
            try:
                attempt: _Attempt = (self._http.request(method, url, json=body), None)
            except _RETRYABLE as exc:
                attempt = (None, exc)
            try:
                delay = policy.send(attempt)
            except StopIteration as answered:
                return answered.value
            time.sleep(delay)

    def _resolve_model(self) -> None:
        if self.model is None:
            ids = self.models()
            self.model = ids[0] if ids else None

    def embed(self, texts: Iterable[str] | str, *, encoding_format: str = "float") -> np.ndarray:
        """Embeddings of ``texts`` as sent (no prompt), float32, one row per text in order."""
        items = api.check_texts(texts)
        api.check_encoding(encoding_format)
        self._resolve_model()
        started, parts, tokens = time.perf_counter(), [], []
        for chunk in api.batches(items, self.max_batch_size):
            payload = api.decode_body(self._request("POST", "/v1/embeddings",
                                                    api.build_embeddings_body(self.model, chunk,
                                                                              encoding_format)).content)
            vectors, used = api.parse_embeddings(payload, len(chunk))
            parts.append(vectors)
            tokens.append(used)
        return self._finish(started, parts, tokens)

    def embed_queries(self, texts: Iterable[str] | str, task: str | None = None) -> np.ndarray:
        """Embeddings of search queries, with the model's query prompt (e5: ``Instruct: ...\\nQuery: ...``)."""
        self._resolve_model()
        return self.embed(self._queries(texts, task))

    def embed_documents(self, texts: Iterable[str] | str) -> np.ndarray:
        self._resolve_model()
        return self.embed(self._documents(texts))

    def models(self) -> list[str]:
        """The served model names (``/v1/models``)."""
        return [item["id"] for item in self._request("GET", "/v1/models").json().get("data", [])]

    def health(self) -> bool:
        """True when ``/health`` answers 200; False when it answers otherwise or cannot be reached."""
        try:
            return self._http.get(self.base_url + "/health", timeout=min(self.timeout, 5.0)).status_code == 200
        except _RETRYABLE:
            return False

    def metrics_text(self) -> str:
        """The server's Prometheus ``/metrics`` text (parse it with :mod:`tke_playbook.loadgen.promtext`)."""
        return self._request("GET", "/metrics").text

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "EmbeddingClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class AsyncEmbeddingClient(_ClientBase):
    """The asynchronous twin of :class:`EmbeddingClient`; batches of one call run ``max_concurrency`` at a time."""

    def __init__(self, base_url: str, model: str | None = None, api_key: str | None = None, *,
                 max_concurrency: int = 4, **options: Any):
        super().__init__(base_url, model, api_key, **options)
        self.max_concurrency = max(1, int(max_concurrency))
        self._http = httpx.AsyncClient(timeout=self.timeout, headers=self._headers)

    async def _request(self, method: str, path: str, body: dict | None = None, *,
                       retry: bool = True) -> httpx.Response:
        url = self.base_url + path
        policy = self._retry_policy(url, retry)
        next(policy)
        while True:
            try:
                attempt: _Attempt = (await self._http.request(method, url, json=body), None)
            except _RETRYABLE as exc:
                attempt = (None, exc)
            try:
                delay = policy.send(attempt)
            except StopIteration as answered:
                return answered.value
            await asyncio.sleep(delay)

    async def _resolve_model(self) -> None:
        if self.model is None:
            ids = await self.models()
            self.model = ids[0] if ids else None

    async def embed(self, texts: Iterable[str] | str, *, encoding_format: str = "float") -> np.ndarray:
        items = api.check_texts(texts)
        api.check_encoding(encoding_format)
        await self._resolve_model()
        started = time.perf_counter()
        gate = asyncio.Semaphore(self.max_concurrency)

        async def one(chunk: list[str]) -> tuple[np.ndarray, int | None]:
            async with gate:
                response = await self._request("POST", "/v1/embeddings",
                                               api.build_embeddings_body(self.model, chunk, encoding_format))
            return api.parse_embeddings(api.decode_body(response.content), len(chunk))

        tasks = [asyncio.ensure_future(one(c)) for c in api.batches(items, self.max_batch_size)]
        try:
            results = await asyncio.gather(*tasks)
        except BaseException:  # one batch failed for good: stop the others instead of leaving them running
            for task in tasks:
                task.cancel()
            raise
        return self._finish(started, [r[0] for r in results], [r[1] for r in results])

    async def embed_queries(self, texts: Iterable[str] | str, task: str | None = None) -> np.ndarray:
        await self._resolve_model()
        return await self.embed(self._queries(texts, task))

    async def embed_documents(self, texts: Iterable[str] | str) -> np.ndarray:
        await self._resolve_model()
        return await self.embed(self._documents(texts))

    async def models(self) -> list[str]:
        return [item["id"] for item in (await self._request("GET", "/v1/models")).json().get("data", [])]

    async def health(self) -> bool:
        try:
            return (await self._http.get(self.base_url + "/health", timeout=min(self.timeout, 5.0))).status_code == 200
        except _RETRYABLE:
            return False

    async def metrics_text(self) -> str:
        return (await self._request("GET", "/metrics")).text

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> "AsyncEmbeddingClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()


__all__ = ["EmbeddingClient", "AsyncEmbeddingClient", "EmbeddingAPIError"]
