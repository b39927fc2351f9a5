"""The HTTP side of the local server (aiohttp): vLLM v0.10's routes, auth rule and error shapes.

Routes: POST /v1/embeddings, GET /v1/models, GET /health, GET|POST /ping, GET /version, GET /metrics.
API key: as vLLM 0.10, only paths starting with ``/v1`` need ``Authorization: Bearer <key>``; a wrong or
missing key gets 401 ``{"error": "Unauthorized"}``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import socket
from dataclasses import dataclass

from aiohttp import web

from ..errors import EmbeddingAPIError, InvalidSpecError
from .batcher import Batcher, QueueFull
from .encoder import Encoder
from .metrics import CONTENT_TYPE, ServerMetrics
from .protocol import (build_error, build_models_response, parse_embedding_request, render_embedding_response,
                       resolve_token_ids)

log = logging.getLogger("tke_playbook.localserver")
VERSION = "0.10.1"  # the vLLM API version this server mimics
SHUTDOWN_TIMEOUT_S = 5.0
ENCODER_KEY = web.AppKey("encoder", Encoder)
BATCHER_KEY = web.AppKey("batcher", Batcher)
METRICS_KEY = web.AppKey("metrics", ServerMetrics)
CONFIG_KEY = web.AppKey("config", object)


@dataclass(frozen=True)
class ServerConfig:
    """How the server batches and who may call it."""

    served_model_name: str
    api_key: str | None = None
    max_batch: int = 64
    max_wait_ms: float = 2.0
    max_queue: int = 4096
    workers: int = 1

    def __post_init__(self):
        if not self.served_model_name:
            raise InvalidSpecError("served_model_name must not be empty: give the name clients put in 'model'",
                                   field="served_model_name", value=self.served_model_name)
        for name, least in (("max_batch", 1), ("max_queue", 1), ("workers", 1), ("max_wait_ms", 0)):
            if getattr(self, name) < least:
                raise InvalidSpecError(f"{name} {getattr(self, name)} is too small: give at least {least}",
                                       field=name, value=getattr(self, name))


def _json(body: dict, status: int = 200) -> web.Response:
    return web.Response(body=json.dumps(body).encode(), status=status, content_type="application/json")


def _error(message: str, status: int) -> web.Response:
    return _json(build_error(message, status), status)


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
    except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # noqa: BLE001 - one bad request must not look like a dead server
        log.exception("request %s %s failed", request.method, request.path)
        return _error(f"Internal server error: {type(exc).__name__}: {exc}", 500)


def _auth_middleware(api_key: str):
    expected = ("Bearer " + api_key).encode()

    @web.middleware
    async def auth(request: web.Request, handler):
        if request.method != "OPTIONS" and request.path.startswith("/v1"):
            given = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                return _json({"error": "Unauthorized"}, 401)
        return await handler(request)

    return auth


async def embeddings(request: web.Request) -> web.Response:
    encoder, batcher = request.app[ENCODER_KEY], request.app[BATCHER_KEY]
    config: ServerConfig = request.app[CONFIG_KEY]
    body = await request.read()
    try:
        parsed = parse_embedding_request(body, served_names=(config.served_model_name,))
        ids = resolve_token_ids(parsed, encoder.tokenize, max_model_len=encoder.facts.max_model_len,
                                vocab_size=encoder.facts.vocab_size)
    except EmbeddingAPIError as exc:
        return _json(exc.body, exc.status)
    prompt_tokens = sum(len(row) for row in ids)
    try:
        vectors = await batcher.submit(ids, prompt_tokens=prompt_tokens)
    except QueueFull as exc:
        response = _error(str(exc), 503)
        response.headers["Retry-After"] = "1"
        return response
    except Exception as exc:  # noqa: BLE001 - a failed batch answers 500, the server carries on
        log.exception("encoding failed")
        return _error(f"Encoding failed: {exc}", 500)
    payload = render_embedding_response(vectors, model=parsed.model, prompt_tokens=prompt_tokens,
                                        encoding_format=parsed.encoding_format)
    return web.Response(body=payload, content_type="application/json")


async def models(request: web.Request) -> web.Response:
    encoder, config = request.app[ENCODER_KEY], request.app[CONFIG_KEY]
    return _json(build_models_response(config.served_model_name, root=encoder.facts.path,
                                       max_model_len=encoder.facts.max_model_len))


async def health(request: web.Request) -> web.Response:
    return web.Response(status=200)


async def version(request: web.Request) -> web.Response:
    return _json({"version": VERSION})


async def metrics(request: web.Request) -> web.Response:
    text = request.app[METRICS_KEY].render()
    return web.Response(body=text.encode(), headers={"Content-Type": CONTENT_TYPE})


def build_app(encoder: Encoder, config: ServerConfig) -> web.Application:
    """The aiohttp application; the batcher starts and stops with it."""
    middlewares = [_errors_as_json]
    if config.api_key:
        middlewares.append(_auth_middleware(config.api_key))
    app = web.Application(middlewares=middlewares, client_max_size=64 * 1024 * 1024)
    app[ENCODER_KEY] = encoder
    app[CONFIG_KEY] = config
    app[METRICS_KEY] = ServerMetrics(config.served_model_name)
    app[BATCHER_KEY] = Batcher(encoder.encode_ids, max_batch=config.max_batch,
                               max_wait_s=config.max_wait_ms / 1000.0, max_queue=config.max_queue,
                               workers=config.workers, metrics=app[METRICS_KEY])

    async def lifecycle(app: web.Application):
        await app[BATCHER_KEY].start()
        yield
        await app[BATCHER_KEY].close()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/health", health)
    app.router.add_get("/ping", health)
    app.router.add_post("/ping", health)
    app.router.add_get("/version", version)
    app.router.add_get("/metrics", metrics)
    return app


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0 = a free port chosen by the OS)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


async def serve(app: web.Application, sock: socket.socket, *, stop: asyncio.Event,
                on_ready=None) -> None:
    """Serve ``app`` on ``sock`` until ``stop`` is set; ``on_ready(port)`` runs once requests are accepted."""
    # On stop, requests already taken get up to SHUTDOWN_TIMEOUT_S to be answered before their connections close.
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    site = web.SockSite(runner, sock)
    await site.start()
    try:
        if on_ready is not None:
            on_ready(sock.getsockname()[1])
        await stop.wait()
    finally:
        await runner.cleanup()
