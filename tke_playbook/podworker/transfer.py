"""HTTP for the download worker, standard library only (urllib): hub URLs, token headers, ranged fetches with
bounded retries into a file the worker owns.

Shipped to download pods beside ``worker.py`` (the pods install nothing). URLs: Hugging Face
``{endpoint}/{repo}/resolve/{rev}/{path}``; ModelScope ``{endpoint}/api/v1/models/{repo}/repo?Revision=&FilePath=``.
The token (``HUB_TOKEN`` in pods, ``HF_TOKEN`` / ``MODELSCOPE_API_TOKEN`` locally) goes in headers only, is never
logged, and is dropped when a redirect leaves the hub's host (as the hub SDKs do for CDN links).
"""

from __future__ import annotations

import http.client
import os
import random
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote, quote_plus, urljoin, urlsplit

try:
    from ..errors import DownloadError, HubError, InvalidSpecError, VerificationError
except ImportError:  # running from the ConfigMap in a download pod

    class InvalidSpecError(ValueError):
        def __init__(self, message, *, field=None, value=None, obj=None, cause=None):
            super().__init__(message)
            self.message, self.field, self.value, self.obj, self.cause = message, field, value, obj, cause

    class DownloadError(Exception):
        def __init__(self, message, *, obj=None, cause=None):
            super().__init__(message)
            self.message, self.obj, self.cause = message, obj, cause

    class HubError(DownloadError):
        pass

    class VerificationError(DownloadError):
        pass

DEFAULT_ENDPOINTS = {"huggingface": ("HF_ENDPOINT", "https://huggingface.co"),
                     "modelscope": ("MODELSCOPE_ENDPOINT", "https://www.modelscope.cn")}
HUB_NAMES = {"huggingface": "Hugging Face", "modelscope": "ModelScope"}
TOKEN_ENVS = {"huggingface": ("HUB_TOKEN", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"),
              "modelscope": ("HUB_TOKEN", "MODELSCOPE_API_TOKEN")}
CHUNK = 1 << 20
NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, OSError)


class Retry(Exception):
    """A transient failure: try again after a backoff."""


def log(index, text: str) -> None:
    print(f"[shard {index}] {text}", flush=True)


def endpoint_for(source: str, endpoint: str | None = None) -> str:
    """``endpoint``, else ``$HF_ENDPOINT`` / ``$MODELSCOPE_ENDPOINT``, else the public hub."""
    env, default = DEFAULT_ENDPOINTS[source]
    return (endpoint or os.environ.get(env) or default).rstrip("/")


def env_token(source: str) -> str | None:
    return next((os.environ[n].strip() for n in TOKEN_ENVS[source] if os.environ.get(n, "").strip()), None)


def request_headers(source: str, token: str | None = None) -> dict:
    headers = {"Accept-Encoding": "identity", "User-Agent": "tke-playbook-download/2"}
    token = token or env_token(source)
    if token:
        headers["Authorization"] = f"Bearer {token}"
        if source == "modelscope":
            headers["Cookie"] = f"m_session_id={token}"
    return headers


class _Redirect(urllib.request.HTTPRedirectHandler):
    """Follow redirects (LFS files answer with one), but never carry the token to another host."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and urlsplit(newurl).netloc != urlsplit(req.full_url).netloc:
            for key in ("Authorization", "Cookie"):
                new.remove_header(key)
        return new


_OPENER = urllib.request.build_opener(_Redirect)
_REDIRECTS = (301, 302, 303, 307, 308)
MAX_REDIRECTS = 10
_POOL = threading.local()  # per thread: (scheme, host, port, timeout) -> an idle keep-alive connection


class _KeptResponse:
    """An ``http.client`` response whose connection goes back to the pool when the body was read to its end
    (else it is closed: unread bytes would corrupt the next answer)."""

    def __init__(self, response, conn, key):
        self._response, self._conn, self._key = response, conn, key
        self.status, self.headers = response.status, response.headers

    def read(self, amount: int | None = None) -> bytes:
        return self._response.read(amount)

    def read1(self, amount: int = -1) -> bytes:
        return self._response.read1(amount)

    def close(self) -> None:
        if self._conn is None:
            return
        response = self._response  # read to its end: by read() (which closes it) or read1() (which leaves length 0)
        finished = (response.isclosed() or getattr(response, "length", None) == 0) and not response.will_close
        self._response.close()
        if finished:
            _idle().setdefault(self._key, self._conn)
        else:
            self._conn.close()
        self._conn = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _idle() -> dict:
    if not hasattr(_POOL, "idle"):
        _POOL.idle = {}
    return _POOL.idle


_PROXIED: dict[tuple, bool] = {}


def _proxied(parts) -> bool:
    """Whether the environment sends requests to this host through a proxy (asked once per host)."""
    key = (parts.scheme, parts.hostname)
    if key not in _PROXIED:
        proxies = urllib.request.getproxies()
        _PROXIED[key] = parts.scheme in proxies and not urllib.request.proxy_bypass(parts.hostname or "")
    return _PROXIED[key]


def _exchange(parts, headers: dict, timeout: float):
    """(response, connection, pool key) for one GET, on an idle keep-alive connection when there is one (a stale
    one is replaced once)."""
    key = (parts.scheme, parts.hostname, parts.port, timeout)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    for attempt in range(2):
        conn = _idle().pop(key, None)
        reused = conn is not None
        if conn is None:
            cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
            conn = cls(parts.hostname, parts.port, timeout=timeout)
        try:
            conn.request("GET", target, headers=headers)
            return conn.getresponse(), conn, key
        except (http.client.HTTPException, OSError):
            conn.close()
            if not reused or attempt:  # a fresh connection failed: that is the hub's answer
                raise
    raise AssertionError("unreachable")


def open_url(url: str, headers: dict, timeout: float):
    """GET ``url``, following redirects (the token only to the same host); raises urllib.error.HTTPError for
    4xx/5xx and URLError/OSError when unreachable. Connections are kept alive between requests to the same hub
    (a 20,000-file model is 20,000 requests); through a configured proxy urllib answers instead."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HubError(f"Refusing to fetch {url!r}: only http and https URLs are followed", obj=url)
    if _proxied(parts):
        return _OPENER.open(urllib.request.Request(url, headers=headers), timeout=timeout)
    headers = dict(headers)
    for _ in range(MAX_REDIRECTS + 1):
        response, conn, key = _exchange(parts, headers, timeout)
        location = response.headers.get("Location")
        if response.status in _REDIRECTS and location:
            response.read(1 << 16)  # a redirect's short body: read, so that the connection can serve the next request
            _KeptResponse(response, conn, key).close()
            new = urlsplit(urljoin(url, location))
            if new.scheme not in ("http", "https") or not new.hostname:
                raise HubError(f"Refusing the redirect from {url!r} to {location!r}: only http and https URLs are "
                               f"followed", obj=url)
            if new.netloc != parts.netloc:  # never carry the token to another host (as the hub SDKs do)
                headers = {k: v for k, v in headers.items() if k.lower() not in ("authorization", "cookie")}
            url, parts = urljoin(url, location), new
            continue
        if response.status >= 400:
            response.read(1 << 16)
            _KeptResponse(response, conn, key).close()
            raise urllib.error.HTTPError(url, response.status, response.reason, response.headers, None)
        return _KeptResponse(response, conn, key)
    raise HubError(f"{url}: more than {MAX_REDIRECTS} redirects", obj=url)


def file_url(source: str, endpoint: str, repo_id: str, revision: str, path: str) -> str:
    if source == "huggingface":
        return f"{endpoint}/{repo_id}/resolve/{quote(revision, safe='')}/{quote(path)}"
    return f"{endpoint}/api/v1/models/{repo_id}/repo?Revision={quote_plus(revision)}&FilePath={quote_plus(path)}"


_INSIDE: dict[tuple[str, str], bool] = {}  # (folder, subfolder) pairs found inside: a worker asks per file


def safe_path(folder: Path, rel: str) -> Path:
    """``folder / rel`` if it stays inside ``folder`` (also through symlinked folders on disk)."""
    parts = rel.split("/")
    if not rel or rel.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\x00" in rel:
        raise DownloadError(f"Refusing file path {rel!r}: it leaves the model folder", obj=rel)
    target = Path(os.path.join(folder, rel))
    key = (os.fspath(folder), rel.rpartition("/")[0])
    if key not in _INSIDE:
        root = os.path.realpath(folder)
        if os.path.commonpath([root, os.path.realpath(target.parent)]) != root:
            raise DownloadError(f"Refusing file path {rel!r}: a symlink in {folder} leads out of the model folder",
                                obj=rel)
        if len(_INSIDE) < 4096:
            _INSIDE[key] = True
    return target


def open_for_write(path: Path, size: int) -> int:
    """Open (creating, never truncating: other shards write into this file too) a file of ``size`` bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    if os.fstat(fd).st_size != size:
        os.ftruncate(fd, size)
    return fd


def _refusal(status: int, label: str, revision: str):
    if status in (401, 403):
        return HubError(f"{label}: the hub refused access (HTTP {status}): the model may be private or gated - set "
                        f"HF_TOKEN / MODELSCOPE_API_TOKEN (local) or the Secret 'hub-token' (cluster)", obj=label)
    if status == 404:
        return HubError(f"{label}: not found on the hub (HTTP 404) at revision '{revision}': check the model id "
                        f"and revision", obj=label)
    if status == 429 or status >= 500:
        return Retry(f"HTTP {status}")
    return HubError(f"{label}: unexpected HTTP {status} from the hub", obj=label)


def _start_offset(resp, pos: int, size: int, label: str) -> int:
    """How many leading bytes of the body to skip so that it starts at ``pos`` (Retry when it cannot)."""
    if resp.status == 200:
        return pos  # the server ignored Range: discard the bytes before our offset
    if resp.status != 206:
        raise HubError(f"{label}: unexpected HTTP {resp.status} from the hub", obj=label)
    value = resp.headers.get("Content-Range", "")
    try:
        span, _, total = value.replace("bytes", "").strip().partition("/")
        first = int(span.split("-")[0])
    except ValueError:
        raise Retry(f"malformed Content-Range {value!r}") from None
    if first != pos:
        raise Retry(f"Content-Range {value!r} does not start at {pos}")
    if total.strip() not in ("*", str(size)):
        raise Retry(f"Content-Range {value!r} gives another file size than the listed {size}")
    return 0


def _attempt(url, headers, fd, cursor, end, size, opts, label, revision, on_progress) -> None:
    """One request for bytes [cursor[0], end): writes what arrives, advancing ``cursor[0]``."""
    pos = cursor[0]
    try:
        resp = open_url(url, {**headers, "Range": f"bytes={pos}-{end - 1}"}, opts.timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        failure = _refusal(exc.code, label, revision)
        raise failure from None
    with resp:
        skip = _start_offset(resp, pos, size, label)
        read = getattr(resp, "read1", resp.read)  # what has arrived, so a slow link still reports (and resumes)
        while pos < end:
            try:
                chunk = read(min(CHUNK, end - pos + skip))
            except (http.client.HTTPException, OSError) as exc:
                raise Retry(f"{type(exc).__name__}: {exc}") from exc
            if not chunk:
                break
            if skip:
                cut = min(skip, len(chunk))
                chunk, skip = chunk[cut:], skip - cut
            chunk = chunk[:end - pos]
            if chunk:
                os.pwrite(fd, chunk, pos)  # an OSError here is the volume's, not the hub's: not retried
                pos += len(chunk)
                cursor[0] = pos
                on_progress(pos, fd)


def fetch(url: str, headers: dict, fd: int, start: int, end: int, size: int, opts, label: str, revision: str,
          on_progress, *, sync: bool = True) -> None:
    """Fetch bytes [start, end) of a ``size``-byte file into ``fd``; ``on_progress(pos, fd)`` after each chunk.
    Transient failures (timeouts, resets, 429/5xx, truncated bodies, wrong Content-Range) are retried with
    exponential backoff and jitter, ``opts.retries`` times in a row at most. The bytes are fsynced at the end
    unless ``sync`` is False (the caller syncs them later, before anything claims they are verified)."""
    cursor, attempt = [start], 0
    while cursor[0] < end:
        before = cursor[0]
        try:
            _attempt(url, headers, fd, cursor, end, size, opts, label, revision, on_progress)
            if cursor[0] < end:
                raise Retry(f"body ended after {cursor[0] - before} of {end - before} bytes (truncated)")
        except (Retry, urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError) as exc:
            pos = cursor[0]
            attempt = 1 if pos > before else attempt + 1
            if attempt > opts.retries:
                raise DownloadError(f"{label}: giving up on bytes {pos}-{end} after {opts.retries} retries: "
                                    f"{type(exc).__name__}: {exc}", obj=label, cause=exc) from exc
            delay = min(opts.max_backoff, opts.backoff * 2 ** (attempt - 1)) * (0.5 + random.random())
            log(opts.index, f"{label}: {type(exc).__name__}: {exc}; retry {attempt}/{opts.retries} in {delay:.1f}s")
            time.sleep(delay)
    if sync:
        os.fsync(fd)
