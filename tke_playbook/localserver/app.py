"""The HTTP side of the local server (aiohttp): vLLM's routes, auth rule and error shapes (version in :mod:`.surface`).

Routes: POST /v1/embeddings, /v2/embed (Cohere), /pooling, /score, /v1/score, /rerank, /v1/rerank, /v2/rerank and
/classify (:mod:`.pooling`); GET /v1/models, GET /health, GET|POST /ping, GET /version, GET /metrics.
API key: as vLLM 0.33, paths starting with ``/v1``, ``/v2``, ``/inference`` or ``/cohere`` need
``Authorization: Bearer <key>`` (the scheme word in any case); a wrong or missing key gets 401
``{"error": "Unauthorized"}``. Every refusal of client input is a 4xx in vLLM's error shape.

Bounds: a connection must deliver a request's headers within ``header_timeout_s`` of opening or of its last
answer (else it is closed: slow-header clients cannot hold sockets) and its body within ``body_timeout_s``
(else 408); the body is read in chunks up to ``max_body_bytes`` (also after gzip/deflate decoding, which aiohttp
does in bounded steps), then parsed, validated and tokenised in a thread so the event loop keeps answering
``/health``; chat templates render in worker processes bounded in time, memory and output (:mod:`.chat`);
inputs and tokens per request are capped; the batcher shares each batch between requests; a request whose
client disconnects is cancelled (aiohttp's handler cancellation) and counted as aborted.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import numpy as np
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from ..errors import EmbeddingAPIError, InvalidSpecError
from . import pooling, surface
from .batcher import Batcher, QueueFull
from .chat import ChatBusy, ChatRenderer, template_call
from .encoder import Encoder, ModelFacts, NoChatTemplate
from .metrics import CONTENT_TYPE, ServerMetrics
from .protocol import (EmbeddingRequest, bad_request, build_error, build_models_response, check_dimensions,
                       chunk_rows, combine_chunks, finish_embeddings, parse_embedding_request, render_bytes_response,
                       render_embedding_response, resolve_token_ids, response_id)
from .settings import BULK_NICE, EXPRESS_ROWS, MAX_BATCH_TOKENS, check_number
from .surface import EncodingFormat

log = logging.getLogger("tke_playbook.localserver")
SHUTDOWN_TIMEOUT_S = 5.0
LINGER_S = 2.0  # after refusing a body before its end, read (and drop) its rest this long so the client sees why
INLINE_RENDER_ROWS = 32  # answers with more rows are rendered in a thread
INLINE_PREPARE_BYTES = 8192  # bodies up to this size are parsed and tokenised in the event loop (well under 1 ms)
STATE_KEY = web.AppKey("state", object)
METRICS_KEY = web.AppKey("metrics", ServerMetrics)

@dataclass(frozen=True)
class ServerConfig:
    """How the server batches, what one request may ask for, and who may call it."""

    served_model_name: str
    api_key: str | None = field(default=None, repr=False)
    max_batch: int = 64
    max_batch_tokens: int = MAX_BATCH_TOKENS
    max_wait_ms: float = 2.0
    max_queue: int = 4096
    workers: int = 1
    max_inputs: int = surface.MAX_INPUTS_PER_REQUEST
    max_tokens: int = surface.MAX_TOKENS_PER_REQUEST
    max_body_bytes: int = surface.MAX_BODY_BYTES
    trust_request_chat_template: bool = False  # vLLM's --trust-request-chat-template
    chat_template_timeout_s: float = surface.CHAT_TEMPLATE_TIMEOUT_S
    header_timeout_s: float = surface.HEADER_TIMEOUT_S
    body_timeout_s: float = surface.BODY_TIMEOUT_S
    vllm_version: str = surface.VLLM_VERSION  # which release's answers to give where 0.33.0 and 0.34.0 differ
    matryoshka_dimensions: tuple[int, ...] | None = None  # --hf-overrides '{"matryoshka_dimensions": [...]}'
    enable_chunked_processing: bool = False  # --pooler-config '{"enable_chunked_processing": true, ...}'
    max_embed_len: int | None = None  # --pooler-config '{"max_embed_len": N}'

    def __post_init__(self):
        if not self.served_model_name:
            raise InvalidSpecError("served_model_name must not be empty: give the name clients put in 'model'",
                                   field="served_model_name", value=self.served_model_name)
        for name in ("max_batch", "max_batch_tokens", "max_wait_ms", "max_queue", "workers", "max_inputs", "max_tokens",
                     "max_body_bytes", "chat_template_timeout_s", "header_timeout_s", "body_timeout_s"):
            check_number(name, getattr(self, name))
        try:
            surface.check_version(self.vllm_version)
        except ValueError as exc:
            raise InvalidSpecError(str(exc), field="vllm_version", value=self.vllm_version) from None
        if self.max_embed_len is not None:
            check_number("max_tokens", self.max_embed_len, "max_embed_len")
        for size in self.matryoshka_dimensions or ():
            check_number("max_tokens", size, "matryoshka_dimensions")


@dataclass
class _State:
    encoder: Encoder
    config: ServerConfig
    metrics: ServerMetrics
    batcher: Batcher
    chat: ChatRenderer
    facts: ModelFacts  # the model's, with the server's --hf-overrides applied
    cpu: ThreadPoolExecutor | None = None  # parsing, tokenising and rendering, off the event loop


def _json(body: dict, status: int = 200) -> web.Response:
    return web.Response(body=json.dumps(body).encode(), status=status, content_type="application/json")


def _error(message: str, status: int) -> web.Response:
    return _json(build_error(message, status), status)


def _api_error(exc: EmbeddingAPIError) -> web.Response:
    response = _json(exc.body, exc.status or 400)
    if exc.status == 503:
        response.headers["Retry-After"] = "1"
    if exc.status == 408:  # the body never came: do not wait for the rest of it on this connection
        response.force_close()
    return response


def _busy(message: str) -> web.Response:
    response = _error(message, 503)
    response.headers["Retry-After"] = "1"
    return response


@web.middleware
async def _errors_as_json(request: web.Request, handler):
    """FastAPI answers unknown routes with ``{"detail": "Not Found"}``; do the same instead of aiohttp's text.
    An unexpected failure answers 500 in vLLM's error shape and the server carries on."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status in (404, 405):
            return _json({"detail": exc.reason}, exc.status)
        raise
    except EmbeddingAPIError as exc:
        return _api_error(exc)
    except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # noqa: BLE001 - one bad request must not look like a dead server
        log.exception("request %s %s failed", request.method, request.path)
        return _error(f"Internal server error: {type(exc).__name__}: {exc}", 500)


def key_matches(header: str | None, expected_hash: bytes) -> bool:
    """vLLM's check: ``<scheme> <token>`` with the scheme ``bearer`` in any case and the token's sha256 equal to
    the key's (compared in constant time). Headers that are not text (undecodable bytes) never match."""
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    try:
        given = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
    except UnicodeError:
        return False
    return hmac.compare_digest(given, expected_hash)


def _auth_middleware(api_key: str):
    expected = hashlib.sha256(api_key.encode("utf-8")).digest()

    @web.middleware
    async def auth(request: web.Request, handler):
        if request.method != "OPTIONS" and surface.requires_key(request.path):
            if not key_matches(request.headers.get("Authorization"), expected):
                return _json(dict(surface.UNAUTHORIZED_BODY), 401)
        return await handler(request)

    return auth


def _check_content_type(request: web.Request) -> None:
    media_type = request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise bad_request(surface.UNSUPPORTED_MEDIA_TYPE, validation=True, param=None)  # a string error: no loc


async def read_body(request: web.Request, limit: int, timeout_s: float | None = None) -> bytes:
    """The (decoded) body, read in chunks and refused with a 400 as soon as it passes ``limit`` bytes; a body
    that has not fully arrived after ``timeout_s`` seconds is answered 408 and its connection closed."""
    try:
        async with asyncio.timeout(timeout_s):
            return await _read_chunks(request, limit)
    except TimeoutError:
        raise EmbeddingAPIError(f"The request body did not arrive within {timeout_s:g} s.", status=408,
                                body=build_error(f"The request body did not arrive within {timeout_s:g} s: "
                                                 f"send it at once.", 408)) from None


async def _read_chunks(request: web.Request, limit: int) -> bytes:
    too_large = bad_request(f"The request body is larger than this server's limit of {limit} bytes: send fewer or "
                            f"shorter inputs per request (or start the server with a larger --max-body-mb).")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    chunks, size = [], 0
    try:
        async for chunk in request.content.iter_any():
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
    except (HttpProcessingError, web.RequestPayloadError) as exc:  # e.g. a gzip body that does not decode
        encoding = request.headers.get("Content-Encoding", "")
        reason = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        raise bad_request(f"The request body could not be read{f' as {encoding}' if encoding else ''}: "
                          f"{' '.join(reason.split())}. Send valid JSON (compressed correctly, if compressed).",
                          validation=True) from None
    return b"".join(chunks)


def _parse(state: _State, body: bytes, request_id: str | None) -> EmbeddingRequest:
    """Parse and check one request (in a thread for large bodies)."""
    config = state.config
    parsed = parse_embedding_request(body, served_names=(config.served_model_name,), max_inputs=config.max_inputs,
                                     request_id=request_id,
                                     trust_request_chat_template=config.trust_request_chat_template)
    facts = state.facts
    check_dimensions(parsed, is_matryoshka=facts.is_matryoshka, matryoshka_dimensions=facts.matryoshka_dimensions,
                     embedding_size=facts.dim)
    return parsed


def _tokens(state: _State, parsed: EmbeddingRequest, prompts=None, tokenized: bool = False) -> list[list[int]]:
    """Tokenise one request (in a thread for large ones). With chunked processing inputs may be longer than the
    model takes, up to ``max_embed_len`` (vLLM: no limit when it is unset)."""
    facts, config = state.facts, state.config
    longest = (config.max_embed_len or 0) if config.enable_chunked_processing else None
    return resolve_token_ids(parsed, state.encoder.tokenize, max_model_len=facts.max_model_len,
                             vocab_size=facts.vocab_size, max_tokens=config.max_tokens, prompts=prompts,
                             prompts_tokenized=tokenized, max_input_len=longest)


async def _render_chat(state: _State, parsed: EmbeddingRequest):
    """A chat request's prompts, rendered by its template in a bounded worker process (:mod:`.chat`)."""
    options = parsed.chat
    kwargs = dict(options.chat_template_kwargs)
    try:
        template = state.encoder.chat_template(options.chat_template, kwargs.get("tools"))
    except NoChatTemplate:
        raise bad_request("This model has no chat template, so `messages` cannot become a prompt: send the text in "
                          "`input` instead. (As of transformers v4.44, default chat template is no longer allowed, "
                          "so you must provide a chat template if the tokenizer does not define one.)") from None
    call = template_call(template, parsed.conversations, add_generation_prompt=options.add_generation_prompt,
                         continue_final_message=options.continue_final_message, chat_template_kwargs=kwargs,
                         special_tokens=state.encoder.special_tokens)
    return await state.chat.render(call), call.tokenize


async def _prepare(state: _State, body: bytes, request_id: str | None):
    """Parse, render (chat) and tokenise one request; small ones on the event loop (well under a millisecond)."""
    inline = len(body) <= INLINE_PREPARE_BYTES
    parsed = _parse(state, body, request_id) if inline else await _in_thread(state, _parse, state, body, request_id)
    prompts, tokenized = None, False
    if parsed.conversations is not None:
        prompts, tokenized = await _render_chat(state, parsed)
        inline = inline and sum(len(p) for p in prompts) <= INLINE_PREPARE_BYTES
    if inline:
        return parsed, _tokens(state, parsed, prompts, tokenized)
    return parsed, await _in_thread(state, _tokens, state, parsed, prompts, tokenized)


def _activation(state: _State, use_activation: bool | None) -> bool:
    return state.facts.normalize if use_activation is None else use_activation


async def _embed(state: _State, ids: list[list[int]], normalize: bool) -> np.ndarray:
    """Pooled vectors, one per input, before the request's dimensions and normalisation. Inputs longer than the
    model takes (chunked processing) are embedded in chunks of ``max_model_len`` tokens and combined as vLLM does:
    the chunks' vectors (normalised when the activation is on) averaged, weighted by their token counts."""
    rows, owners = chunk_rows(ids, state.facts.max_model_len)
    try:
        raw = await state.batcher.submit(rows, prompt_tokens=sum(len(row) for row in ids))
    except QueueFull as exc:
        raise EmbeddingAPIError(str(exc), status=503, body=build_error(str(exc), 503)) from None
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - a failed batch answers 500, the server carries on
        log.exception("encoding failed")
        message = f"Encoding failed: {exc}"
        raise EmbeddingAPIError(message, status=500, body=build_error(message, 500)) from None
    if owners is None:
        return raw
    return combine_chunks(raw, owners, [len(row) for row in rows], len(ids), normalize=normalize)


def _render(state: _State, parsed: EmbeddingRequest, raw: np.ndarray, prompt_tokens: int,
            item: tuple[str, str] = ("embedding", "embedding"), prefix: str = "embd") -> web.Response:
    vectors = finish_embeddings(raw, dimensions=parsed.dimensions, normalize=_activation(state, parsed.use_activation))
    common = {"model": parsed.model, "prompt_tokens": prompt_tokens, "encoding_format": parsed.encoding_format.value,
              "request_id": response_id(parsed.request_id, prefix), "embed_dtype": parsed.embed_dtype.value,
              "endianness": parsed.endianness.value}
    if parsed.encoding_format in (EncodingFormat.BYTES, EncodingFormat.BYTES_ONLY):
        body, headers = render_bytes_response(vectors, **common)
        return web.Response(body=body, headers=headers, content_type="application/octet-stream")
    body = render_embedding_response(vectors, **common, version=state.config.vllm_version, item=item)
    return web.Response(body=body, content_type="application/json")


async def _in_thread(state: _State, function, *args):
    return await asyncio.get_running_loop().run_in_executor(state.cpu, function, *args)


async def _body(request: web.Request) -> tuple[_State, bytes]:
    state: _State = request.app[STATE_KEY]
    _check_content_type(request)
    return state, await read_body(request, state.config.max_body_bytes, state.config.body_timeout_s)


async def _answer_embeddings(request: web.Request, body: bytes, state: _State,
                             item: tuple[str, str] = ("embedding", "embedding"), prefix: str = "embd"):
    try:
        parsed, ids = await _prepare(state, body, request.headers.get("X-Request-Id") or None)
    except ChatBusy as exc:
        return _busy(str(exc))
    prompt_tokens = sum(len(row) for row in ids)
    raw = await _embed(state, ids, _activation(state, parsed.use_activation))
    if len(ids) <= INLINE_RENDER_ROWS:
        return _render(state, parsed, raw, prompt_tokens, item, prefix)
    return await _in_thread(state, _render, state, parsed, raw, prompt_tokens, item, prefix)


async def embeddings(request: web.Request) -> web.Response:
    state, body = await _body(request)
    return await _answer_embeddings(request, body, state)


async def pooling_route(request: web.Request) -> web.Response:
    """/pooling for an embedding model: the embed task, answered as PoolingResponse (id ``pool-``)."""
    state, body = await _body(request)
    data = pooling.pooling_body(body)
    return await _answer_embeddings(request, json.dumps(data).encode(), state, ("pooling", "data"), "pool")


def _texts_request(state: _State, model: str, texts, *, truncate=None, side=None,
                   use_activation=None) -> EmbeddingRequest:
    return parse_embedding_request({"model": model, "input": list(texts), "truncate_prompt_tokens": truncate,
                                    "truncation_side": side, "use_activation": use_activation},
                                   served_names=(model,), max_inputs=state.config.max_inputs)


def _score_ids(state: _State, job: pooling.ScoringJob) -> list[list[int]]:
    """The token ids of the queries then the documents (each side cut to its own limit first, as vLLM does)."""
    out = []
    for texts, limit in ((job.queries, job.max_tokens_per_query), (job.documents, job.max_tokens_per_doc)):
        request = _texts_request(state, job.model, texts, truncate=job.truncate_prompt_tokens,
                                 side=job.truncation_side, use_activation=job.use_activation)
        ids = _tokens(state, request)
        if limit:
            ids = [state.encoder.tokenize([text], max_length=limit + state.encoder.special_token_count)[0]
                   if len(row) > limit + state.encoder.special_token_count else row
                   for text, row in zip(texts, ids)]
        out.extend(ids)
    return out


async def _scoring(request: web.Request, rerank: bool) -> web.Response:
    state, body = await _body(request)
    job = pooling.parse_scoring(body, rerank=rerank, served=state.config.served_model_name,
                                max_model_len=state.facts.max_model_len, architecture=state.facts.architecture,
                                request_id=request.headers.get("X-Request-Id") or None)
    ids = await _in_thread(state, _score_ids, state, job)
    normalize = _activation(state, job.use_activation)
    vectors = finish_embeddings(await _embed(state, ids, normalize), normalize=normalize)
    queries, documents = vectors[:len(job.queries)], vectors[len(job.queries):]
    scores = pooling.cosine_scores(queries, documents)
    tokens = sum(len(row) for row in ids)
    if rerank:
        return _json(pooling.rerank_response(job, scores, tokens))
    return _json(pooling.score_response(job, scores, tokens, state.config.vllm_version))


async def score(request: web.Request) -> web.Response:
    return await _scoring(request, rerank=False)


async def rerank(request: web.Request) -> web.Response:
    return await _scoring(request, rerank=True)


async def cohere_embed(request: web.Request) -> web.Response:
    """Cohere's /v2/embed, as vLLM answers it (texts, or inputs rendered through the chat template)."""
    state, body = await _body(request)
    job = pooling.parse_cohere(body, served=state.config.served_model_name,
                               task_instructions=state.facts.task_instructions)
    if job.conversations is not None:
        embed_body = {"model": job.model, "messages": [list(c) for c in job.conversations]}
    else:
        embed_body = {"model": job.model, "input": list(job.texts)}
    embed_body.update(truncate_prompt_tokens=job.truncate_prompt_tokens, truncation_side=job.truncation_side,
                      dimensions=job.output_dimension)
    if job.truncate_prompt_tokens is not None and job.truncate_prompt_tokens > state.facts.max_model_len:
        embed_body["truncate_prompt_tokens"] = state.facts.max_model_len
    parsed, ids = await _prepare(state, json.dumps(embed_body).encode(), None)
    if job.truncate == "NONE" and job.max_tokens is not None:
        refusal = pooling.cohere_too_many_tokens([len(row) for row in ids], job.max_tokens)
        if refusal is not None:
            raise refusal
    normalize = _activation(state, None)
    vectors = finish_embeddings(await _embed(state, ids, normalize), dimensions=parsed.dimensions,
                                normalize=normalize)
    request_id = request.headers.get("X-Request-Id") or response_id()[5:]
    texts = None if job.texts is None else json.loads(body).get("texts")
    return _json(pooling.cohere_response(job, vectors, sum(len(row) for row in ids), request_id, texts))


async def classify(request: web.Request) -> web.Response:
    """An embedding model has no classification handler in vLLM: 501 once the body is valid JSON."""
    state, body = await _body(request)
    pooling.decode_json(body)
    raise pooling.classify_unsupported()


async def models(request: web.Request) -> web.Response:
    state: _State = request.app[STATE_KEY]
    return _json(build_models_response(state.config.served_model_name, root=state.facts.path,
                                       max_model_len=state.facts.max_model_len))


async def health(request: web.Request) -> web.Response:
    return web.Response(status=200)


async def version(request: web.Request) -> web.Response:
    return _json({"version": request.app[STATE_KEY].config.vllm_version})


async def metrics(request: web.Request) -> web.Response:
    text = request.app[METRICS_KEY].render()
    return web.Response(body=text.encode(), headers={"Content-Type": CONTENT_TYPE})


def build_app(encoder: Encoder, config: ServerConfig) -> web.Application:
    """The aiohttp application; the batcher and the parsing threads start and stop with it."""
    middlewares = [_errors_as_json]
    if config.api_key:
        middlewares.append(_auth_middleware(config.api_key))
    app = web.Application(middlewares=middlewares, client_max_size=config.max_body_bytes)
    server_metrics = ServerMetrics(config.served_model_name)
    batcher = Batcher(encoder.encode_ids, max_batch=config.max_batch, max_wait_s=config.max_wait_ms / 1000.0,
                      max_queue=config.max_queue, workers=config.workers, metrics=server_metrics,
                      max_batch_tokens=config.max_batch_tokens, express_rows=EXPRESS_ROWS,
                      bulk_nice=BULK_NICE)
    chat = ChatRenderer(timeout_s=config.chat_template_timeout_s, max_chars=config.max_body_bytes)
    facts = encoder.facts
    if config.matryoshka_dimensions:
        facts = replace(facts, is_matryoshka=True, matryoshka_dimensions=tuple(config.matryoshka_dimensions))
    state = _State(encoder=encoder, config=config, metrics=server_metrics, batcher=batcher, chat=chat, facts=facts)
    app[STATE_KEY] = state
    app[METRICS_KEY] = server_metrics

    async def lifecycle(app: web.Application):
        state.cpu = ThreadPoolExecutor(max_workers=2, thread_name_prefix="parse")
        if encoder.facts.has_chat_template or config.trust_request_chat_template:
            chat.start()  # the render workers start now rather than on the first chat request
        await batcher.start()
        yield
        await batcher.close()
        state.cpu.shutdown(wait=False, cancel_futures=True)
        await asyncio.get_running_loop().run_in_executor(None, chat.close)

    app.cleanup_ctx.append(lifecycle)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_post("/v2/embed", cohere_embed)
    app.router.add_post("/pooling", pooling_route)
    app.router.add_post("/classify", classify)
    for path in ("/score", "/v1/score"):
        app.router.add_post(path, score)
    for path in ("/rerank", "/v1/rerank", "/v2/rerank"):
        app.router.add_post(path, rerank)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/health", health)
    app.router.add_get("/ping", health)
    app.router.add_post("/ping", health)
    app.router.add_get("/version", version)
    app.router.add_get("/metrics", metrics)
    return app


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0 = a free port chosen by the OS).

    SO_REUSEADDR lets a restarted server take its port back while the old connections sit in TIME_WAIT.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except BaseException:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


async def serve(app: web.Application, sock: socket.socket, *, stop: asyncio.Event,
                on_ready=None) -> None:
    """Serve ``app`` on ``sock`` until ``stop`` is set; ``on_ready(port)`` runs once requests are accepted.

    A request whose client disconnects is cancelled (``handler_cancellation``), so its work stops.
    """
    # On stop, requests already taken get up to SHUTDOWN_TIMEOUT_S to be answered before their connections close.
    # aiohttp closes a connection whose next request has not fully arrived when its keep-alive timer fires (from
    # the connection's start or its last answer), however slowly bytes trickle in: that timer is the header-read
    # timeout (and the idle keep-alive, 5 s in vLLM's uvicorn).
    config = app[STATE_KEY].config
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT_S,
                           handler_cancellation=True, keepalive_timeout=config.header_timeout_s,
                           lingering_time=LINGER_S)
    await runner.setup()
    site = web.SockSite(runner, sock)
    await site.start()
    try:
        if on_ready is not None:
            on_ready(sock.getsockname()[1])
        await stop.wait()
    finally:
        await runner.cleanup()
