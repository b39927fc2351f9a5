"""A minimal embeddings server for measuring the load generator itself.

It speaks just enough HTTP/1.1 (keep-alive, ``Content-Length`` bodies) to answer ``POST /v1/embeddings`` with a
canned response after an optional fixed delay, plus ``/health``, ``/v1/models`` and ``/metrics``. It does no model
work, so whatever rate a client reaches against it is the client's own ceiling. ``prompt_tokens`` in its answer
is the number of spaces in the request body plus one: cheap, and the word count of one input in compact JSON.

Run it in its own process with :func:`start_null_server` (a server in the generator's process would share its
interpreter and understate the ceiling), or from a shell: ``python -m tke_playbook.loadgen.nullserver --delay-ms 20``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import select
import subprocess
import sys
from dataclasses import dataclass

from ..errors import ServerError

_EMBEDDING = (b'{"id":"embd-null","object":"list","created":0,"model":"null","data":[{"index":0,'
              b'"object":"embedding","embedding":"AACAPwAAAAAAAAAAAAAAAA=="}],"usage":{"prompt_tokens":%d,'
              b'"total_tokens":%d,"completion_tokens":0}}')
_MODELS = b'{"object":"list","data":[{"id":"null","object":"model","owned_by":"tke-playbook"}]}'
_METRICS = b"# TYPE null_requests_total counter\nnull_requests_total %d\n"


def _response(status: bytes, body: bytes, ctype: bytes = b"application/json") -> bytes:
    return (b"HTTP/1.1 " + status + b"\r\ncontent-type: " + ctype + b"\r\ncontent-length: "
            + str(len(body)).encode() + b"\r\n\r\n" + body)


class _NullProtocol(asyncio.Protocol):
    served = 0

    def __init__(self, delay_s: float):
        self.delay_s = delay_s
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buffer[:head_end]
            length = 0
            marker = head.lower().find(b"content-length:")
            if marker >= 0:
                line_end = head.find(b"\r\n", marker)
                length = int(head[marker + 15:line_end if line_end >= 0 else len(head)])
            end = head_end + 4 + length
            if len(self.buffer) < end:
                return
            body, self.buffer = self.buffer[head_end + 4:end], self.buffer[end:]
            self._answer(head, body)

    def _answer(self, head: bytes, body: bytes) -> None:
        _NullProtocol.served += 1
        path = head.split(b" ", 2)[1] if head.count(b" ") >= 2 else b"/"
        if path.startswith(b"/v1/embeddings"):
            tokens = body.count(b" ") + 1
            reply = _response(b"200 OK", _EMBEDDING % (tokens, tokens))
        elif path.startswith(b"/health"):
            reply = _response(b"200 OK", b"")
        elif path.startswith(b"/v1/models"):
            reply = _response(b"200 OK", _MODELS)
        elif path.startswith(b"/metrics"):
            reply = _response(b"200 OK", _METRICS % _NullProtocol.served, b"text/plain; version=0.0.4")
        else:
            reply = _response(b"404 Not Found", b'{"object":"error","message":"Not Found","code":404}')
        if self.delay_s > 0:
            asyncio.get_running_loop().call_later(self.delay_s, self._write, reply)
        else:
            self._write(reply)

    def _write(self, reply: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(reply)


async def serve_null(port: int = 0, delay_s: float = 0.0, *, announce=None, parent: int | None = None) -> None:
    """Serve on 127.0.0.1 until cancelled, or until process ``parent`` is gone; ``announce(port)`` once listening."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _NullProtocol(delay_s), "127.0.0.1", port, backlog=1024)
    if announce is not None:
        announce(server.sockets[0].getsockname()[1])
    async with server:
        while parent is None or os.getppid() == parent:
            await asyncio.sleep(1.0)


@dataclass
class NullServer:
    """A null server running in a child process; ``url`` is its base URL. Stop it with :meth:`stop`."""

    process: subprocess.Popen
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def __enter__(self) -> "NullServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_null_server(delay_ms: float = 0.0, *, cpu: int | None = None, timeout_s: float = 20.0) -> NullServer:
    """Start the null server in a child process (pinned to ``cpu`` when given) and wait until it listens."""
    command = [sys.executable, "-m", "tke_playbook.loadgen.nullserver", "--delay-ms", str(delay_ms),
               "--parent", str(os.getpid())]
    if cpu is not None:
        command += ["--cpu", str(cpu)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ready, _, _ = select.select([process.stdout], [], [], timeout_s)  # the child prints its port first
    line = process.stdout.readline() if ready else ""
    if not line.strip().isdigit():
        process.kill()
        _, err = process.communicate(timeout=timeout_s)
        when = "" if ready else f" within {timeout_s:g} s"
        raise ServerError(f"the null server did not start{when}: {err.strip()[-500:] or 'no output'} - run "
                          f"`python -m tke_playbook.loadgen.nullserver` to see why", obj=command)
    return NullServer(process, int(line))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--cpu", type=int, default=None, help="pin the server to this CPU")
    parser.add_argument("--parent", type=int, default=None, help="exit when this process id is no longer the parent")
    args = parser.parse_args(argv)
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})

    def announce(port: int) -> None:
        print(port, flush=True)

    try:
        asyncio.run(serve_null(args.port, args.delay_ms / 1000.0, announce=announce, parent=args.parent))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
