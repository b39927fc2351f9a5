"""The aiohttp engine of the load generator: one session, one connector sized to the concurrency.

The default engine is the leaner :class:`~tke_playbook.loadgen.rawhttp.RawEngine`; this one is the fallback for
servers or proxies that need a full HTTP client (``engine="aiohttp"``).

Per request it does the least it can: post a pre-encoded body, read the answer, and pull ``prompt_tokens`` out of
the raw bytes (no JSON decoding of successful answers). :meth:`Engine.send` never raises for a failed request:
it returns ``(status, prompt_tokens, error)`` with status 0 for timeouts and transport errors, so every request
ends up in the records.
"""

from __future__ import annotations

import asyncio
import json
import re

import aiohttp

_PROMPT_TOKENS = re.compile(rb'"prompt_tokens"\s*:\s*(\d+)')


def prompt_tokens(raw: bytes) -> int | None:
    """``usage.prompt_tokens`` from a raw embeddings answer (searched from the end, where usage sits)."""
    at = raw.rfind(b'"prompt_tokens"')
    match = _PROMPT_TOKENS.match(raw, at) if at >= 0 else None
    return int(match.group(1)) if match else None


def describe_error(status: int, raw: bytes) -> str:
    try:
        body = json.loads(raw)
        message = body.get("message") or body.get("error", {}).get("message") or body
    except (ValueError, AttributeError):
        message = raw[:200].decode("utf-8", "replace")
    return f"HTTP {status}: {str(message)[:200]}"


def outcome(status: int, raw: bytes) -> tuple[int, int | None, str | None]:
    """The ``(status, prompt_tokens, error)`` record of an answered request (both engines)."""
    if status == 200:
        return 200, prompt_tokens(raw), None
    return status, None, describe_error(status, raw)


class Engine:
    """``async with Engine(url, concurrency, ...) as engine: await engine.send(body)``."""

    def __init__(self, base_url: str, connections: int, *, api_key: str | None = None, timeout: float = 60.0,
                 path: str = "/v1/embeddings"):
        self.url = base_url.rstrip("/") + path
        self.base_url = base_url.rstrip("/")
        self.connections = max(1, int(connections))
        self.timeout = float(timeout)
        self.headers = {"Content-Type": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> "Engine":
        connector = aiohttp.TCPConnector(limit=self.connections, limit_per_host=self.connections,
                                         ttl_dns_cache=None, enable_cleanup_closed=False)
        self.session = aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(),
                                             timeout=aiohttp.ClientTimeout(total=self.timeout),
                                             auto_decompress=False)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.session.close()

    def prepare(self, body: bytes) -> bytes:
        return body

    async def send(self, body: bytes) -> tuple[int, int | None, str | None]:
        try:
            async with self.session.post(self.url, data=body, headers=self.headers) as response:
                raw = await response.read()
                status = response.status
        except asyncio.TimeoutError:
            return 0, None, f"timeout: no answer within {self.timeout:g} s"
        except Exception as exc:  # noqa: BLE001 - aiohttp.ClientError or worse: a record, never a crash
            return 0, None, f"{type(exc).__name__}: {exc}"
        return outcome(status, raw)

    async def get_text(self, path: str) -> str | None:
        """A GET (``/metrics``) as text, or None when it fails: scraping must never break a run."""
        try:
            async with self.session.get(self.base_url + path, headers=self.headers) as response:
                return await response.text() if response.status == 200 else None
        except (asyncio.TimeoutError, aiohttp.ClientError):
            return None
