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
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote, quote_plus, urlsplit

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


def open_url(url: str, headers: dict, timeout: float):
    """GET ``url``; raises urllib.error.HTTPError for 4xx/5xx and URLError/OSError when unreachable."""
    if urlsplit(url).scheme not in ("http", "https"):
        raise HubError(f"Refusing to fetch {url!r}: only http and https URLs are followed", obj=url)
    return _OPENER.open(urllib.request.Request(url, headers=headers), timeout=timeout)


def file_url(source: str, endpoint: str, repo_id: str, revision: str, path: str) -> str:
    if source == "huggingface":
        return f"{endpoint}/{repo_id}/resolve/{quote(revision, safe='')}/{quote(path)}"
    return f"{endpoint}/api/v1/models/{repo_id}/repo?Revision={quote_plus(revision)}&FilePath={quote_plus(path)}"


def safe_path(folder: Path, rel: str) -> Path:
    """``folder / rel`` if it stays inside ``folder`` (also through symlinked folders on disk)."""
    parts = rel.split("/")
    if not rel or rel.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\x00" in rel:
        raise DownloadError(f"Refusing file path {rel!r}: it leaves the model folder", obj=rel)
    target = Path(folder) / rel
    root = os.path.realpath(folder)
    if os.path.commonpath([root, os.path.realpath(target.parent)]) != root:
        raise DownloadError(f"Refusing file path {rel!r}: a symlink in {folder} leads out of the model folder",
                            obj=rel)
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
        while pos < end:
            try:
                chunk = resp.read(min(CHUNK, end - pos + skip))
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
          on_progress) -> None:
    """Fetch bytes [start, end) of a ``size``-byte file into ``fd``; ``on_progress(pos, fd)`` after each chunk.
    Transient failures (timeouts, resets, 429/5xx, truncated bodies, wrong Content-Range) are retried with
    exponential backoff and jitter, ``opts.retries`` times in a row at most."""
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
    os.fsync(fd)
