"""Clients for any OpenAI-compatible embeddings endpoint (vLLM, the local server, a cluster LB or port-forward).

``EmbeddingClient`` (sync) and ``AsyncEmbeddingClient`` (async) share one behaviour: inputs are cut into batches of
``max_batch_size``; 429, 5xx, timeouts and dropped connections are retried with exponential backoff (honouring
``Retry-After``); 400 raises :class:`~tke_playbook.errors.BadRequestError` with the server's message, 401
:class:`~tke_playbook.errors.AuthenticationError`, and running out of retries
:class:`~tke_playbook.errors.RetriesExhaustedError` naming the last failure. ``embed_queries``/``embed_documents``
apply the catalog's prompts for the model. The API key never appears in reprs, errors or logs.

Beyond ``/v1/embeddings`` (with vLLM's ``dimensions``, ``embed_dtype``, ``endianness`` and the ``base64`` /
``bytes`` / ``bytes_only`` encodings), both clients speak vLLM's ``/rerank`` (:meth:`EmbeddingClient.rerank`),
``/score`` (:meth:`EmbeddingClient.score`) and Cohere's ``/v2/embed`` (:meth:`EmbeddingClient.cohere_embed`).
:meth:`EmbeddingClient.variant` is the same endpoint asked for other vectors - fewer (Matryoshka) dimensions, a
narrower ``embed_dtype`` or Cohere's binary types - as an embedder of its own, so a scorecard compares what the
server itself sends at each precision.
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

from ..errors import EmbeddingAPIError, InvalidSpecError, UnknownNameError
from ..specs.catalog import ModelInfo, get_model
from . import api

_RETRYABLE = (httpx.TimeoutException, httpx.TransportError)
_Attempt = tuple[httpx.Response | None, Exception | None]  # one attempt's answer, or the error instead of one


class _ClientBase:
    """Configuration, prompts and bookkeeping shared by the sync and async clients."""

    def __init__(self, base_url: str, model: str | None = None, api_key: str | None = None, *,
                 timeout: float = 60.0, max_batch_size: int = 64, retries: int = 4, backoff: float = 0.5,
                 max_backoff: float = 8.0, catalog_model: str | ModelInfo | None = None,
                 dimensions: int | None = None, precision: str | None = None):
        self.base_url = api.root_url(base_url)
        api.batches([], max_batch_size)  # validates the size
        self.model = model
        self.dimensions = api.requested_dimensions(dimensions)
        self.precision = _check_precision(precision)
        self._default_options = _options_for(self.dimensions, self.precision)
        self._api_key = api_key
        self._options = {"timeout": timeout, "max_batch_size": max_batch_size, "retries": retries,
                         "backoff": backoff, "max_backoff": max_backoff, "catalog_model": catalog_model}
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
    def variant_label(self) -> str:
        """``128d-fp8_e4m3`` for a variant (dimensions, precision); empty for the endpoint's plain vectors."""
        return "-".join(([f"{self.dimensions}d"] if self.dimensions else []) + ([self.precision] if self.precision
                                                                              else []))

    @property
    def name(self) -> str:
        base = self.model or self.base_url
        return f"{base}@{self.variant_label}" if self.variant_label else base

    def __repr__(self) -> str:
        key = ", api_key=***" if self._headers else ""
        variant = f", variant={self.variant_label!r}" if self.variant_label else ""
        return f"{type(self).__name__}({self.base_url!r}, model={self.model!r}{variant}{key})"

    def variant(self, *, dimensions: int | None = None, precision: str | None = None):
        """The same endpoint asked for other vectors, as a client (and embedder) of its own: the first
        ``dimensions`` (Matryoshka; vLLM refuses it for a model that is not Matryoshka-trained unless served with
        ``--hf-overrides '{"matryoshka_dimensions": [...]}'``) in ``precision``: an ``embed_dtype`` the server
        casts to (``float32``, ``float16``, ``bfloat16``, ``fp8_e4m3``, ``fp8_e5m2``; asked as ``bytes``, whose
        metadata confirms the dtype) or Cohere's ``binary`` / ``ubinary`` from ``/v2/embed`` (returned as +1/-1
        vectors: cosine ranks as Hamming distance does). Named ``<model>@<dimensions>d-<precision>``."""
        return type(self)(self.base_url, self.model, self._api_key, **self._options, dimensions=dimensions,
                          precision=precision)

    def _embed_options(self, encoding_format, dimensions, embed_dtype, endianness) -> api.EmbedOptions | None:
        """The request's options: the variant's unless any is given (None: the variant is binary, /v2/embed)."""
        if encoding_format is None and dimensions is None and embed_dtype is None and endianness is None:
            return self._default_options
        if encoding_format is None:
            encoding_format = "float" if embed_dtype in (None, "float32") else "base64"
        return api.EmbedOptions(encoding_format, dimensions if dimensions is not None else self.dimensions,
                                embed_dtype, endianness)

    @staticmethod
    def _parse(response: httpx.Response, expected: int, options: api.EmbedOptions) -> tuple[np.ndarray, int | None]:
        if options.binary:
            return api.parse_bytes_embeddings(response.content, response.headers.get("metadata"), expected, options)
        return api.parse_embeddings(api.decode_body(response.content), expected, options)

    def _cohere_request(self, texts: list[str], kinds: tuple[str, ...], extra: dict) -> dict:
        return api.build_cohere_body(self.model, texts, kinds, **extra)

    @staticmethod
    def _stack_types(parts: list[dict[str, np.ndarray]], kinds: tuple[str, ...]) -> dict[str, np.ndarray]:
        return {kind: np.vstack([p[kind] for p in parts]) if parts else np.empty((0, 0)) for kind in kinds}

    def _binary_vectors(self, typed: dict[str, np.ndarray]) -> np.ndarray:
        return api.unpack_bits(typed[self.precision], self.precision)

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

    def _record(self, started: float, tokens: list[int | None]) -> None:
        self.last_latency_s = time.perf_counter() - started
        self.timings.append(self.last_latency_s)
        self.last_prompt_tokens = None if any(t is None for t in tokens) else sum(tokens)

    def _finish(self, started: float, parts: list[np.ndarray], tokens: list[int | None]) -> np.ndarray:
        self._record(started, tokens)
        parts = [p for p in parts if p.size]
        return np.vstack(parts) if parts else np.empty((0, 0), dtype=np.float32)


def _check_precision(precision: str | None) -> str | None:
    if precision is not None and precision not in api.EMBED_DTYPES + api.BINARY_TYPES:
        raise InvalidSpecError(f"precision={precision!r}: use an embed_dtype ({', '.join(api.EMBED_DTYPES)}) or a "
                               f"Cohere binary type ({', '.join(api.BINARY_TYPES)})", field="precision",
                               value=precision)
    return precision


def _options_for(dimensions: int | None, precision: str | None) -> api.EmbedOptions | None:
    """A variant's request options: float JSON for float32, bytes (dtype confirmed by the metadata) for a narrower
    embed_dtype, None for a binary type (Cohere's /v2/embed)."""
    if precision in api.BINARY_TYPES:
        return None
    if precision in (None, "float32"):
        return api.EmbedOptions("float", dimensions)
    return api.EmbedOptions("bytes", dimensions, precision)


def _check_path(path: str) -> str:
    if path not in api.RERANK_PATHS:
        raise InvalidSpecError(f"rerank path {path!r}: use one of {', '.join(api.RERANK_PATHS)}", field="path",
                               value=path)
    return path


def _merge_rerank(found: list[tuple[int, float]], top_n: int | None) -> tuple[list[int], list[float]]:
    """Scores gathered over several requests, best first (ties: the earlier document), cut to ``top_n``."""
    found.sort(key=lambda item: (-item[1], item[0]))
    if top_n:
        found = found[:top_n]
    return [i for i, _ in found], [s for _, s in found]


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

    def embed(self, texts: Iterable[str] | str, *, encoding_format: str | None = None, dimensions: int | None = None,
              embed_dtype: str | None = None, endianness: str | None = None) -> np.ndarray:
        """Embeddings of ``texts`` as sent (no prompt), float32, one row per text in order: the variant's vectors,
        or those the options ask for (``embed_dtype`` values decoded as the server cast them)."""
        items = api.check_texts(texts)
        options = self._embed_options(encoding_format, dimensions, embed_dtype, endianness)
        if options is None:
            return self._binary_vectors(self.cohere_embed(items, (self.precision,), output_dimension=self.dimensions))
        self._resolve_model()
        started, parts, tokens = time.perf_counter(), [], []
        for chunk in api.batches(items, self.max_batch_size):
            response = self._request("POST", "/v1/embeddings", api.build_embeddings_body(
                self.model, chunk, options.encoding_format, options))
            vectors, used = self._parse(response, len(chunk), options)
            parts.append(vectors)
            tokens.append(used)
        return self._finish(started, parts, tokens)

    def cohere_embed(self, texts: Iterable[str] | str, embedding_types=("float",), *, input_type: str | None = None,
                     output_dimension: int | None = None, truncate: str | None = None) -> dict[str, np.ndarray]:
        """Cohere's ``/v2/embed``: ``{type: rows}`` for each of ``embedding_types`` (``float`` and ``base64`` as
        float32 vectors, ``binary`` int8 and ``ubinary`` uint8 packed bits), texts as sent (no prompt)."""
        items, kinds = api.check_texts(texts), tuple(embedding_types)
        extra = {"input_type": input_type, "output_dimension": output_dimension, "truncate": truncate}
        api.build_cohere_body(None, [], kinds, **extra)  # checks the options before anything is sent
        self._resolve_model()
        started, parts, tokens = time.perf_counter(), [], []
        for chunk in api.batches(items, self.max_batch_size):
            payload = api.decode_body(self._request("POST", "/v2/embed", self._cohere_request(chunk, kinds,
                                                                                               extra)).content)
            typed, used = api.parse_cohere_response(payload, len(chunk), kinds)
            parts.append(typed)
            tokens.append(used)
        self._record(started, tokens)
        return self._stack_types(parts, kinds)

    def rerank(self, query: str, documents: Iterable[str], *, top_n: int | None = None,
               path: str = "/rerank") -> api.Reranked:
        """vLLM's ``/rerank`` (or ``/v1/rerank``, ``/v2/rerank``): ``documents`` ranked for ``query``, best first,
        the first ``top_n`` (all when None or 0). More than ``max_batch_size`` documents go in several requests
        (each document is scored against the query on its own, so scores compare across them)."""
        docs, path = api.check_texts(documents, "documents"), _check_path(path)
        api.build_rerank_body(None, query, docs, top_n)  # checks query and top_n before anything is sent
        self._resolve_model()
        started, found, tokens = time.perf_counter(), [], []
        single = len(docs) <= self.max_batch_size
        for offset in range(0, len(docs), self.max_batch_size):
            chunk = docs[offset:offset + self.max_batch_size]
            payload = api.decode_body(self._request("POST", path, api.build_rerank_body(
                self.model, query, chunk, top_n if single else None)).content)
            order, scores, used = api.parse_rerank(payload, len(chunk))
            found += [(offset + i, float(s)) for i, s in zip(order, scores)]
            tokens.append(used)
        self._record(started, tokens)
        return api.Reranked(query, tuple(docs), *_merge_rerank(found, top_n), self.last_prompt_tokens)

    def score(self, queries: str | Iterable[str], documents: Iterable[str]) -> np.ndarray:
        """vLLM's ``/score``: one query against every document (1:N) or pair by pair (N:N), in order."""
        docs = api.check_texts(documents, "documents")
        first = queries if isinstance(queries, str) else api.check_texts(queries, "queries")
        api.build_score_body(None, first, docs)
        self._resolve_model()
        started, parts, tokens = time.perf_counter(), [], []
        for offset in range(0, len(docs), self.max_batch_size):
            chunk = docs[offset:offset + self.max_batch_size]
            side = first if isinstance(first, str) or len(first) == 1 else first[offset:offset + len(chunk)]
            payload = api.decode_body(self._request("POST", "/score", api.build_score_body(self.model, side,
                                                                                             chunk)).content)
            scores, used = api.parse_scores(payload, len(chunk))
            parts.append(scores)
            tokens.append(used)
        self._record(started, tokens)
        return np.concatenate(parts) if parts else np.empty(0)

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
        self._options["max_concurrency"] = max_concurrency
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

    async def _gather(self, one, chunks: list) -> list:
        """``one(chunk)`` for every chunk, ``max_concurrency`` at a time, results in chunk order."""
        gate = asyncio.Semaphore(self.max_concurrency)

        async def gated(chunk):
            async with gate:
                return await one(chunk)

        tasks = [asyncio.ensure_future(gated(c)) for c in chunks]
        try:
            return await asyncio.gather(*tasks)
        except BaseException:  # one batch failed for good: stop the others instead of leaving them running
            for task in tasks:
                task.cancel()
            raise

    async def embed(self, texts: Iterable[str] | str, *, encoding_format: str | None = None,
                    dimensions: int | None = None, embed_dtype: str | None = None,
                    endianness: str | None = None) -> np.ndarray:
        items = api.check_texts(texts)
        options = self._embed_options(encoding_format, dimensions, embed_dtype, endianness)
        if options is None:
            typed = await self.cohere_embed(items, (self.precision,), output_dimension=self.dimensions)
            return self._binary_vectors(typed)
        await self._resolve_model()
        started = time.perf_counter()

        async def one(chunk: list[str]) -> tuple[np.ndarray, int | None]:
            response = await self._request("POST", "/v1/embeddings", api.build_embeddings_body(
                self.model, chunk, options.encoding_format, options))
            return self._parse(response, len(chunk), options)

        results = await self._gather(one, api.batches(items, self.max_batch_size))
        return self._finish(started, [r[0] for r in results], [r[1] for r in results])

    async def cohere_embed(self, texts: Iterable[str] | str, embedding_types=("float",), *,
                           input_type: str | None = None, output_dimension: int | None = None,
                           truncate: str | None = None) -> dict[str, np.ndarray]:
        """The async twin of :meth:`EmbeddingClient.cohere_embed`."""
        items, kinds = api.check_texts(texts), tuple(embedding_types)
        extra = {"input_type": input_type, "output_dimension": output_dimension, "truncate": truncate}
        api.build_cohere_body(None, [], kinds, **extra)
        await self._resolve_model()
        started = time.perf_counter()

        async def one(chunk: list[str]):
            response = await self._request("POST", "/v2/embed", self._cohere_request(chunk, kinds, extra))
            return api.parse_cohere_response(api.decode_body(response.content), len(chunk), kinds)

        results = await self._gather(one, api.batches(items, self.max_batch_size))
        self._record(started, [r[1] for r in results])
        return self._stack_types([r[0] for r in results], kinds)

    async def rerank(self, query: str, documents: Iterable[str], *, top_n: int | None = None,
                     path: str = "/rerank") -> api.Reranked:
        """The async twin of :meth:`EmbeddingClient.rerank` (its requests ``max_concurrency`` at a time)."""
        docs, path = api.check_texts(documents, "documents"), _check_path(path)
        api.build_rerank_body(None, query, docs, top_n)
        await self._resolve_model()
        started = time.perf_counter()
        single = len(docs) <= self.max_batch_size

        async def one(offset: int):
            chunk = docs[offset:offset + self.max_batch_size]
            response = await self._request("POST", path, api.build_rerank_body(self.model, query, chunk,
                                                                                top_n if single else None))
            order, scores, used = api.parse_rerank(api.decode_body(response.content), len(chunk))
            return [(offset + i, float(s)) for i, s in zip(order, scores)], used

        results = await self._gather(one, list(range(0, len(docs), self.max_batch_size)))
        self._record(started, [r[1] for r in results])
        found = [item for r in results for item in r[0]]
        return api.Reranked(query, tuple(docs), *_merge_rerank(found, top_n), self.last_prompt_tokens)

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
