"""A :class:`~tke_playbook.download.mirror.HubMirror` for tests and benchmarks: it records what it served, throttles
each connection and injects faults into file requests. The package ships only the plain mirror (the offline local
target downloads the bundled model through it); this one adds what only tests need, through the handler's hooks."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tke_playbook.download.mirror import HubMirror, MirrorHandler


@dataclass
class Fault:
    """A fault for file requests of ``path`` (None: any file), applied to the next ``times`` matches
    (None: always). ``kind``: 'status' (answer ``status``), 'truncate' (close after ``after_bytes``),
    'corrupt' (flip the byte at offset ``after_bytes`` of the file) or 'stall' (sleep ``seconds`` first)."""

    kind: str
    path: str | None = None
    times: int | None = 1
    status: int = 500
    after_bytes: int = 0
    seconds: float = 0.0


@dataclass
class Served:
    """One file request the hub answered: the file, its Range header and the body bytes written for it so far."""

    path: str
    range: str
    sent: int = 0


class FaultyHandler(MirrorHandler):
    hub: FakeHub
    fault: Fault | None = None
    served: Served

    def answered(self, status: int) -> None:
        with self.hub.lock:
            self.hub.log.append((self.command, self.path, status))

    def intercept(self, rel: str) -> bool:
        self.fault = self.hub.take_fault(rel) if self.command == "GET" else None
        self.served = Served(rel, self.headers.get("Range", ""))
        with self.hub.lock:
            self.hub.ranges.append((rel, self.served.range))
            self.hub.served.append(self.served)
        if self.fault and self.fault.kind == "status":
            self._json(self.fault.status, {"error": "injected fault"})
            return True
        if self.fault and self.fault.kind == "stall":
            time.sleep(self.fault.seconds)
        return False

    def body(self, path: Path, start: int, stop: int) -> Iterator[bytes]:
        fault, began, sent, pos = self.fault, time.monotonic(), 0, start
        if fault and fault.kind == "truncate":
            stop = min(stop, start + fault.after_bytes)
        for block in super().body(path, start, stop):
            if fault and fault.kind == "corrupt" and pos <= fault.after_bytes < pos + len(block):
                i = fault.after_bytes - pos
                block = block[:i] + bytes([block[i] ^ 0xFF]) + block[i + 1:]
            yield block
            pos, sent = pos + len(block), sent + len(block)
            with self.hub.lock:
                self.hub.bytes_sent += len(block)
                self.served.sent += len(block)
            if self.hub.rate:
                ahead = sent / self.hub.rate - (time.monotonic() - began)
                if ahead > 0:
                    time.sleep(ahead)


class FakeHub(HubMirror):
    """``HubMirror`` plus ``rate`` (bytes/s per connection; None: unthrottled, may change at any time), ``faults``
    (a list of :class:`Fault`, may grow at any time) and what it served: ``log`` (method, path-and-query, status),
    ``ranges`` (file, Range header) of every file request, ``served`` (a :class:`Served` per file request: the bytes
    written in answer to it) and ``bytes_sent`` (all of them). A block counts once its write returned, and the first
    write into a connection whose client is gone still returns: a throttled response asleep when its client died
    (a worker stopped by Ctrl-C) adds one more block, up to seconds later. To tell what one run fetched, count the
    ``served`` entries of its own requests, not ``bytes_sent`` before and after it."""

    handler = FaultyHandler

    def __init__(self, repos: dict, *, rate: float | None = None, faults=(), **kwargs):
        self.rate = rate
        self.faults = list(faults)
        self.log: list[tuple[str, str, int]] = []
        self.ranges: list[tuple[str, str]] = []
        self.served: list[Served] = []
        self.bytes_sent = 0
        self.lock = threading.Lock()
        super().__init__(repos, **kwargs)

    def take_fault(self, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.path in (None, path) and (fault.times is None or fault.times > 0):
                    if fault.times is not None:
                        fault.times -= 1
                    return fault
        return None
