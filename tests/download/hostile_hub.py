"""A hostile (or broken) model hub on 127.0.0.1 for tests: it lists what the test tells it to and serves bytes that
may lie. Speaks the same routes as the real hubs (Hugging Face revision/tree/resolve; ModelScope repo/files and
repo?FilePath=), so the toolkit's listing and worker code run unchanged against it."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

COMMIT = "c0ffee" + "0" * 34


def blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def hf_entries(files: dict[str, bytes], lfs=(".safetensors", ".bin")) -> list[dict]:
    """The tree entries the real hub lists for these files: LFS files with lfs.oid (sha256), others with the git
    blob sha1 as oid."""
    entries = []
    for path, data in sorted(files.items()):
        entry = {"type": "file", "path": path, "size": len(data), "oid": blob_sha1(data)}
        if path.endswith(lfs):
            entry["oid"] = hashlib.sha1(b"pointer " + path.encode()).hexdigest()  # the pointer's, not the content's
            entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
        entries.append(entry)
    return entries


def ms_entries(files: dict[str, bytes]) -> list[dict]:
    return [{"Path": p, "Name": p.rsplit("/", 1)[-1], "Type": "blob", "Size": len(d),
             "Sha256": hashlib.sha256(d).hexdigest()} for p, d in sorted(files.items())]


class HostileHub:
    """``with HostileHub(files) as hub:``; change ``hub.hf_listing`` / ``hub.ms_listing`` (entries), ``hub.raw_body``
    (bytes every listing answers with), ``hub.wrong_range`` (paths answered 206 with the right Content-Range but
    bytes from offset 0) or ``hub.corrupt`` (paths served with one byte flipped) at any time."""

    def __init__(self, files: dict[str, bytes]):
        self.files = dict(files)
        self.hf_listing = hf_entries(self.files)
        self.ms_listing = ms_entries(self.files)
        self.raw_body: bytes | None = None
        self.wrong_range: set[str] = set()
        self.corrupt: set[str] = set()
        self.file_gets: list[str] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> HostileHub:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._thread.join(timeout=5)
        self._server.server_close()


def _handler(hub: HostileHub):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _send(self, status, body: bytes, headers=None):
            self.send_response(status)
            for key, value in {"Content-Type": "application/json", "Content-Length": str(len(body)),
                               **(headers or {})}.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def _listing(self, obj):
            self._send(200, hub.raw_body if hub.raw_body is not None else json.dumps(obj).encode())

        def do_GET(self):
            url = urlsplit(self.path)
            path, query = unquote(url.path), {k: v[-1] for k, v in parse_qs(url.query).items()}
            if re.match(r"^/api/models/[^/]+/[^/]+/revision/", path):
                return self._send(200, json.dumps({"sha": COMMIT}).encode())
            if re.match(r"^/api/models/[^/]+/[^/]+/tree/", path):
                return self._listing(hub.hf_listing)
            if re.match(r"^/api/v1/models/[^/]+/[^/]+/repo/files$", path):
                return self._listing({"Code": 200, "Success": True, "Data": {"Files": hub.ms_listing}})
            if m := re.match(r"^/[^/]+/[^/]+/resolve/[^/]+/(.+)$", path):
                return self._file(m.group(1))
            if re.match(r"^/api/v1/models/[^/]+/[^/]+/repo$", path):
                return self._file(query.get("FilePath", ""))
            self._send(404, b'{"error": "no route"}')

        def _file(self, rel: str):
            data = hub.files.get(rel)
            if data is None:
                return self._send(404, b'{"error": "Entry not found"}')
            with hub._lock:
                hub.file_gets.append(rel)
            if rel in hub.corrupt and data:
                data = bytes([data[0] ^ 0xFF]) + data[1:]
            m = re.match(r"^bytes=(\d+)-(\d*)$", self.headers.get("Range", ""))
            if not m:
                return self._send(200, data, {"Content-Type": "application/octet-stream"})
            start = int(m.group(1))
            end = min(int(m.group(2)) if m.group(2) else len(data) - 1, len(data) - 1)
            body = data[start:end + 1] if rel not in hub.wrong_range else data[:end + 1 - start]
            self._send(206, body, {"Content-Type": "application/octet-stream",
                                   "Content-Range": f"bytes {start}-{end}/{len(data)}"})

    return Handler
