"""A lean HTTP/1.1 client engine on asyncio protocols, for load generation at high concurrency.

Why: per request, aiohttp spends about 100-200 µs of Python on this kind of machine; this engine spends a fraction
of that, so one core can drive a fast server several times harder before the generator becomes the bottleneck.
It does only what a load generator needs: persistent keep-alive connections (at most ``connections``, reopened
when the server closes them), pre-built request bytes, ``Content-Length``, chunked and read-until-close bodies,
http and https, a per-request timeout. Like :class:`~tke_playbook.loadgen.engine.Engine`, :meth:`RawEngine.send`
returns ``(status, prompt_tokens, error)`` and never raises for a failed request.
"""

from __future__ import annotations

import asyncio
import ssl
from urllib.parse import urlsplit

from .engine import outcome


class _Connection(asyncio.Protocol):
    """One keep-alive connection answering one request at a time through ``waiter``."""

    def __init__(self):
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.buffer = bytearray()
        self.waiter: asyncio.Future | None = None
        self.status = 0
        self.body_start = -1
        self.length = -1          # Content-Length, -1 when absent
        self.chunked = False
        self.keep_alive = True

    def connection_made(self, transport) -> None:
        self.transport = transport

    def expect(self, waiter: asyncio.Future) -> None:
        self.waiter, self.status, self.body_start, self.length, self.chunked = waiter, 0, -1, -1, False
        self.buffer.clear()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is None or self.waiter.done():
            return
        if self.body_start < 0 and not self._parse_head():
            return
        if self.length >= 0:
            end = self.body_start + self.length
            if len(self.buffer) >= end:
                self._finish(bytes(self.buffer[self.body_start:end]))
        elif self.chunked:
            body = self._dechunk()
            if body is not None:
                self._finish(body)

    def _parse_head(self) -> bool:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        lines = bytes(self.buffer[:end]).split(b"\r\n")
        try:
            self.status = int(lines[0].split(b" ", 2)[1])
        except (IndexError, ValueError):
            self._fail(ConnectionError(f"not an HTTP answer: {bytes(lines[0][:80])!r}"))
            return False
        self.keep_alive = not lines[0].startswith(b"HTTP/1.0")
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                self.length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                self.chunked = True
            elif name == b"connection":
                self.keep_alive = b"keep-alive" in value.lower()
        self.body_start = end + 4
        if self.status in (204, 304) or 100 <= self.status < 200:
            self.length = 0
        return True

    def _dechunk(self) -> bytes | None:
        body, at = bytearray(), self.body_start
        while True:
            line_end = self.buffer.find(b"\r\n", at)
            if line_end < 0:
                return None
            size = int(bytes(self.buffer[at:line_end]).split(b";")[0], 16)
            if size == 0:
                return bytes(body) if self.buffer.find(b"\r\n\r\n", line_end) >= 0 else None
            start, stop = line_end + 2, line_end + 2 + size
            if len(self.buffer) < stop + 2:
                return None
            body += self.buffer[start:stop]
            at = stop + 2

    def _finish(self, body: bytes) -> None:
        if not self.waiter.done():
            self.waiter.set_result((self.status, body))
        if not self.keep_alive:
            self.close()

    def _fail(self, exc: BaseException) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)
        self.close()

    def connection_lost(self, exc) -> None:
        self.closed = True
        if self.waiter is None or self.waiter.done():
            return
        if self.body_start >= 0 and self.length < 0 and not self.chunked:
            self.waiter.set_result((self.status, bytes(self.buffer[self.body_start:])))  # body ran to close
        else:
            self.waiter.set_exception(ConnectionResetError("the server closed the connection before answering"))

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class RawEngine:
    """``async with RawEngine(url, connections, ...) as engine: await engine.send(engine.prepare(body))``."""

    def __init__(self, base_url: str, connections: int, *, api_key: str | None = None, timeout: float = 60.0,
                 path: str = "/v1/embeddings"):
        parts = urlsplit(base_url.rstrip("/"))
        self.host = parts.hostname or "127.0.0.1"
        self.tls = parts.scheme == "https"
        self.port = parts.port or (443 if self.tls else 80)
        self.prefix = parts.path.rstrip("/")
        self.path = self.prefix + path
        self.connections = max(1, int(connections))
        self.timeout = float(timeout)
        headers = f"Host: {parts.netloc}\r\nUser-Agent: tke-playbook-loadgen\r\nAccept: */*\r\n"
        if api_key:
            headers += f"Authorization: Bearer {api_key}\r\n"
        self._headers = headers.encode("latin-1")
        self._idle: list[_Connection] = []
        self._open: set[_Connection] = set()
        self._busy: dict[_Connection, float] = {}  # connection -> deadline (loop time)
        self._gate: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sweeper: asyncio.Task | None = None

    async def __aenter__(self) -> "RawEngine":
        self._loop = asyncio.get_running_loop()
        self._gate = asyncio.Semaphore(self.connections)
        self._sweeper = asyncio.create_task(self._sweep(min(0.05, self.timeout / 10)))
        return self

    async def _sweep(self, interval: float) -> None:
        """Fail requests past their deadline: one periodic check instead of a timer per request."""
        while True:
            await asyncio.sleep(interval)
            now = self._loop.time()
            for conn, deadline in list(self._busy.items()):
                if deadline <= now:
                    conn._fail(TimeoutError(f"timeout: no answer within {self.timeout:g} s"))

    async def __aexit__(self, *exc) -> None:
        self._sweeper.cancel()
        for conn in list(self._open):
            conn.close()
        self._idle.clear()
        self._open.clear()

    def prepare(self, body: bytes, method: str = "POST", path: str | None = None) -> bytes:
        """The whole request as bytes, built once and sent as often as needed."""
        head = (f"{method} {path or self.path} HTTP/1.1\r\n".encode() + self._headers
                + b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n")
        return head + body

    async def _connection(self) -> _Connection:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed:
                return conn
            self._open.discard(conn)
        context = ssl.create_default_context() if self.tls else None
        connecting = self._loop.create_connection(_Connection, self.host, self.port, ssl=context)
        _, conn = await asyncio.wait_for(connecting, self.timeout)
        self._open.add(conn)
        return conn

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        """Send prepared bytes, return ``(status, body)``; raises on timeouts and connection failures."""
        async with self._gate:
            conn = await self._connection()
            waiter = self._loop.create_future()
            conn.expect(waiter)
            self._busy[conn] = self._loop.time() + self.timeout
            try:
                conn.transport.write(request)
                return await waiter
            finally:
                del self._busy[conn]
                conn.waiter = None
                if not waiter.done() or waiter.cancelled():  # abandoned (an interrupt): its answer must not reach
                    conn.close()                             # the next request, and the server sees us leave
                if conn.closed:
                    self._open.discard(conn)
                else:
                    self._idle.append(conn)

    async def send(self, request: bytes) -> tuple[int, int | None, str | None]:
        try:
            status, body = await self.exchange(request)
        except TimeoutError as exc:  # the sweeper's message, or a connect that took longer than the timeout
            return 0, None, str(exc) or f"timeout: could not connect within {self.timeout:g} s"
        except Exception as exc:  # noqa: BLE001 - a failed request is a record, never a crash
            return 0, None, f"{type(exc).__name__}: {exc}"
        return outcome(status, body)

    async def get_text(self, path: str) -> str | None:
        """A GET (``/metrics``) as text, or None when it fails: scraping must never break a run."""
        request = self.prepare(b"", "GET", self.prefix + path)
        try:
            status, body = await self.exchange(request)
        except Exception:  # noqa: BLE001
            return None
        return body.decode("utf-8", "replace") if status == 200 else None
