"""A local model hub on 127.0.0.1 speaking both the Hugging Face and the ModelScope REST APIs.

:class:`HubMirror` serves folders as repositories: the Hugging Face tree API (``/api/models/{repo}/tree/{rev}``,
paginated with ``Link`` headers, LFS metadata), ``/api/models/{repo}/revision/{rev}`` (the commit ``sha``)
and ``/{repo}/resolve/{rev}/{path}`` (LFS files answer with a
redirect, as the real hub does), and ModelScope's ``/api/v1/models/{repo}/repo/files`` listing and
``/api/v1/models/{repo}/repo?FilePath=`` file endpoint, all with HTTP Range support. The offline local target
downloads the bundled all-MiniLM-L6-v2 through it (:func:`offline_mirror`), so learners see the real download path.
Tests subclass :class:`MirrorHandler` (its hooks :meth:`~MirrorHandler.answered`,
:meth:`~MirrorHandler.intercept` and :meth:`~MirrorHandler.body`) to record requests, throttle and inject faults.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

from ..hostenv import offline_model_dir
from ..specs.catalog import OFFLINE_MODEL

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack", ".onnx", ".gguf", ".ot")


def _hashes(path: Path) -> tuple[str, str]:
    size = path.stat().st_size
    sha256, sha1 = hashlib.sha256(), hashlib.sha1(b"blob %d\0" % size)
    with open(path, "rb") as fh:
        while block := fh.read(1 << 23):
            sha256.update(block)
            sha1.update(block)
    return sha256.hexdigest(), sha1.hexdigest()


class _Repo:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.files: dict[str, dict] = {}
        self.commit = ""
        for dirpath, dirnames, filenames in os.walk(self.folder):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                full = Path(dirpath) / name
                rel = full.relative_to(self.folder).as_posix()
                sha256, sha1 = _hashes(full)
                self.files[rel] = {"size": full.stat().st_size, "sha256": sha256, "sha1": sha1,
                                   "lfs": rel.lower().endswith(LFS_SUFFIXES)}
        self.commit = hashlib.sha1(json.dumps(self.files, sort_keys=True).encode()).hexdigest()

    def dirs(self) -> list[str]:
        found = {"/".join(p.split("/")[:i]) for p in self.files for i in range(1, p.count("/") + 1)}
        return sorted(found)


class MirrorHandler(BaseHTTPRequestHandler):
    """The routes of both hub APIs; ``hub`` (the HubMirror) is set per mirror. Three hooks, no-ops here, let a
    subclass watch or bend what it serves: :meth:`answered`, :meth:`intercept` and :meth:`body`."""

    hub: HubMirror
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms wait on keep-alive

    def log_message(self, *args):  # quiet
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, ctype="application/json"):
        self.send_response(status)
        for key, value in {"Content-Type": ctype, "Content-Length": str(len(body)), **(headers or {})}.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.answered(status)

    def answered(self, status: int) -> None:
        """Called once the status line and headers of a response went out."""

    def intercept(self, rel: str) -> bool:
        """Called before a file request (GET or HEAD) of ``rel`` is answered; True: this hook answered it."""
        return False

    def body(self, path: Path, start: int, stop: int) -> Iterator[bytes]:
        """The bytes ``start:stop`` of ``path``, in blocks; a body ending early drops the connection."""
        with open(path, "rb") as fh:
            fh.seek(start)
            while start < stop and (block := fh.read(min(1 << 16, stop - start))):
                start += len(block)
                yield block

    def _json(self, status: int, obj, headers=None):
        self._send(status, json.dumps(obj).encode(), headers)

    def _authorized(self) -> bool:
        if not self.hub.token:
            return True
        auth = self.headers.get("Authorization", "")
        if auth == f"Bearer {self.hub.token}" or f"m_session_id={self.hub.token}" in self.headers.get("Cookie", ""):
            return True
        self._json(401, {"error": "Invalid credentials", "Code": 401, "Success": False})
        return False

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        path = unquote(url.path)
        try:
            if not self._authorized():
                return
            if m := re.match(r"^/api/v1/models/([^/]+/[^/]+)/repo/files$", path):
                return self._ms_list(m.group(1), query)
            if m := re.match(r"^/api/v1/models/([^/]+/[^/]+)/repo$", path):
                return self._file(m.group(1), query.get("Revision", "master"), query.get("FilePath", ""),
                                  ms=True)
            if m := re.match(r"^/api/models/([^/]+/[^/]+)/revision/([^/]+)$", path):
                return self._hf_revision(m.group(1), m.group(2))
            if m := re.match(r"^/api/models/([^/]+/[^/]+)/tree/([^/]+)/?(.*)$", path):
                return self._hf_tree(m.group(1), m.group(2), m.group(3), query)
            if m := re.match(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", path):
                return self._file(m.group(1), m.group(2), m.group(3), lfs_redirect=True)
            if m := re.match(r"^/cdn-lfs/([^/]+/[^/]+)/([^/]+)/(.+)$", path):
                return self._file(m.group(1), m.group(2), m.group(3))
            self._json(404, {"error": f"no route for {path}"})
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _repo(self, repo_id: str, revision: str, ms=False):
        repo = self.hub.repos.get(repo_id)
        if repo is None or (revision not in self.hub.revisions and revision != repo.commit):
            what = "Repository not found" if repo is None else f"Revision {revision} not found"
            body = {"Code": 10010205001, "Message": what, "Success": False} if ms else {"error": what}
            code = "RepoNotFound" if repo is None else "RevisionNotFound"
            self._json(404, body, {"X-Error-Code": code, "X-Error-Message": what})
            return None
        return repo

    def _hf_revision(self, repo_id, revision):
        repo = self._repo(repo_id, revision)
        if repo is not None:
            self._json(200, {"id": repo_id, "modelId": repo_id, "sha": repo.commit})

    def _ms_list(self, repo_id, query):
        repo = self._repo(repo_id, query.get("Revision", "master"), ms=True)
        if repo is None:
            return
        recursive = query.get("Recursive", "False").lower() == "true"
        root = query.get("Root", "").strip("/")
        entries = [{"Name": d.rsplit("/", 1)[-1], "Path": d, "Type": "tree", "Size": 0} for d in repo.dirs()]
        entries += [{"Name": p.rsplit("/", 1)[-1], "Path": p, "Type": "blob", "Size": f["size"],
                     "Sha256": f["sha256"], "IsLFS": f["lfs"], "Revision": repo.commit}
                    for p, f in repo.files.items()]
        prefix = f"{root}/" if root else ""
        entries = [e for e in entries if e["Path"].startswith(prefix)
                   and (recursive or "/" not in e["Path"][len(prefix):])]
        self._json(200, {"Code": 200, "Data": {"Files": entries}, "Message": "success", "Success": True})

    def _hf_tree(self, repo_id, revision, sub, query):
        repo = self._repo(repo_id, revision)
        if repo is None:
            return
        recursive = query.get("recursive", "false").lower() == "true"
        prefix = f"{sub.strip('/')}/" if sub.strip("/") else ""
        entries = [{"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0, "path": d}
                   for d in repo.dirs()]
        for p, f in repo.files.items():
            entry = {"type": "file", "oid": f["sha1"], "size": f["size"], "path": p}
            if f["lfs"]:
                entry["lfs"] = {"oid": f["sha256"], "size": f["size"], "pointerSize": 134}
            entries.append(entry)
        entries = sorted((e for e in entries if e["path"].startswith(prefix)
                          and (recursive or "/" not in e["path"][len(prefix):])), key=lambda e: e["path"])
        start = int(query.get("cursor", 0))
        page, headers = entries[start:start + self.hub.page_size], {}
        if start + self.hub.page_size < len(entries):
            nxt = (f"{self.hub.url}{urlsplit(self.path).path}?recursive={str(recursive).lower()}"
                   f"&expand=false&cursor={start + self.hub.page_size}")
            headers["Link"] = f'<{nxt}>; rel="next"'
        self._json(200, page, headers)

    def _file(self, repo_id, revision, rel, *, ms=False, lfs_redirect=False):
        repo = self._repo(repo_id, revision, ms=ms)
        if repo is None:
            return
        meta = repo.files.get(rel)
        if meta is None:
            return self._json(404, {"error": f"Entry not found: {rel}"}, {"X-Error-Code": "EntryNotFound"})
        if lfs_redirect and meta["lfs"]:
            return self._send(302, b"", {"Location": f"/cdn-lfs/{repo_id}/{revision}/{quote(rel)}"})
        if self.intercept(rel):
            return None
        size, start, end = meta["size"], 0, meta["size"] - 1
        status, headers = 200, {"Accept-Ranges": "bytes", "ETag": f'"{meta["sha256"]}"',
                                "X-Repo-Commit": repo.commit}
        if m := re.match(r"^bytes=(\d*)-(\d*)$", self.headers.get("Range", "")):
            start = int(m.group(1) or 0)
            end = min(int(m.group(2)) if m.group(2) else size - 1, size - 1)
            if start > end:
                return self._send(416, b"", {"Content-Range": f"bytes */{size}"})
            status, headers["Content-Range"] = 206, f"bytes {start}-{end}/{size}"
        self.send_response(status)
        for key, value in {"Content-Type": "application/octet-stream", "Content-Length": str(end - start + 1),
                           **headers}.items():
            self.send_header(key, value)
        self.end_headers()
        self.answered(status)
        if self.command == "GET":
            self._stream(repo.folder / rel, start, end + 1)

    def _stream(self, path: Path, start: int, stop: int):
        for block in self.body(path, start, stop):
            self.wfile.write(block)
            start += len(block)
        if start < stop:  # the body ended early: drop the connection mid-body, as a broken hub would
            self.close_connection = True
            self.wfile.flush()
            self.connection.shutdown(2)


class HubMirror:
    """``with HubMirror({'owner/name': folder}) as hub:`` → ``hub.url`` is both HF_ENDPOINT and
    MODELSCOPE_ENDPOINT. ``token``: the bearer token (or ModelScope session cookie) every request must carry.
    Subclasses answer through their own ``handler`` (a :class:`MirrorHandler` subclass)."""

    handler: type[MirrorHandler] = MirrorHandler

    def __init__(self, repos: dict, *, token: str | None = None, revisions=("main", "master"),
                 page_size: int = 1000, port: int = 0):
        self.repos = {repo_id: _Repo(folder) for repo_id, folder in repos.items()}
        self.token, self.page_size = token, page_size
        self.revisions = set(revisions)
        self._server = ThreadingHTTPServer(("127.0.0.1", port), type("Handler", (self.handler,), {"hub": self}))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> HubMirror:
        if self._thread is None:
            self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="hub-mirror",
                                            daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> HubMirror:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def offline_mirror(**kwargs) -> HubMirror:
    """A (not yet started) mirror serving the bundled all-MiniLM-L6-v2 as ``sentence-transformers/all-MiniLM-L6-v2``
    on both hub APIs."""
    return HubMirror({OFFLINE_MODEL: offline_model_dir()}, **kwargs)
