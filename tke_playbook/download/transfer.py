"""Fetch byte ranges of hub files into the final files, with bounded retries (standard library and httpx only).

Shipped to download pods beside ``worker.py``. URLs: Hugging Face ``{endpoint}/{repo}/resolve/{rev}/{path}``;
ModelScope ``{endpoint}/api/v1/models/{repo}/repo?Revision=&FilePath=``. The token (``HUB_TOKEN`` in pods,
``HF_TOKEN`` / ``MODELSCOPE_API_TOKEN`` locally) goes in headers only and is never logged.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from urllib.parse import quote, quote_plus

import httpx

try:
    from ..errors import DownloadError, HubError, VerificationError
except ImportError:  # running from the ConfigMap in a download pod

    class DownloadError(Exception):
        def __init__(self, message, *, obj=None, cause=None):
            super().__init__(message)
            self.obj, self.cause = obj, cause

    class HubError(DownloadError):
        pass

    class VerificationError(DownloadError):
        pass

DEFAULT_ENDPOINTS = {"huggingface": ("HF_ENDPOINT", "https://huggingface.co"),
                     "modelscope": ("MODELSCOPE_ENDPOINT", "https://www.modelscope.cn")}
TOKEN_ENVS = {"huggingface": ("HUB_TOKEN", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"),
              "modelscope": ("HUB_TOKEN", "MODELSCOPE_API_TOKEN")}
CHUNK = 1 << 20


class _Retry(Exception):
    pass


def log(index, text: str) -> None:
    print(f"[shard {index}] {text}", flush=True)


def file_url(plan: dict, path: str) -> str:
    env, default = DEFAULT_ENDPOINTS[plan["source"]]
    endpoint = (plan.get("endpoint") or os.environ.get(env) or default).rstrip("/")
    if plan["source"] == "huggingface":
        return f"{endpoint}/{plan['repo_id']}/resolve/{quote(plan['revision'], safe='')}/{quote(path)}"
    return (f"{endpoint}/api/v1/models/{plan['repo_id']}/repo?Revision={quote_plus(plan['revision'])}"
            f"&FilePath={quote_plus(path)}")


def request_headers(source: str) -> dict:
    headers = {"Accept-Encoding": "identity", "User-Agent": "tke-playbook-download/1"}
    token = next((os.environ[n].strip() for n in TOKEN_ENVS[source] if os.environ.get(n, "").strip()), None)
    if token:
        headers["Authorization"] = f"Bearer {token}"
        if source == "modelscope":
            headers["Cookie"] = f"m_session_id={token}"
    return headers


def safe_path(folder: Path, rel: str) -> Path:
    parts = rel.split("/")
    if rel.startswith("/") or ".." in parts or "" in parts:
        raise DownloadError(f"Refusing file path '{rel}' from the hub listing: it leaves the model folder", obj=rel)
    return folder / rel


def _open(path: Path, size: int) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # never O_TRUNC: other shards write into this file too
    if os.fstat(fd).st_size != size:
        os.ftruncate(fd, size)
    return fd


def fetch(client, plan, path: str, start: int, end: int, opts, on_progress) -> None:
    """Fetch bytes [start, end) of ``path`` into the final file; ``on_progress(pos, fd)`` after each chunk."""
    size = next(f["size"] for f in plan["files"] if f["path"] == path)
    url, headers = file_url(plan, path), request_headers(plan["source"])
    fd = _open(safe_path(opts.folder, path), size)
    pos, attempt = start, 0
    try:
        while pos < end:
            before = pos
            try:
                with client.stream("GET", url, headers={**headers, "Range": f"bytes={pos}-{end - 1}"}) as resp:
                    status = resp.status_code
                    if status in (401, 403):
                        raise HubError(f"{path}: the hub refused access (HTTP {status}): the model may be private or "
                                       f"gated - set HF_TOKEN / MODELSCOPE_API_TOKEN (local) or the Secret "
                                       f"'hub-token' (cluster)", obj=path)
                    if status == 404:
                        raise HubError(f"{path}: not found on the hub (HTTP 404) at revision "
                                       f"'{plan['revision']}': check the model id and revision", obj=path)
                    if status == 429 or status >= 500:
                        raise _Retry(f"HTTP {status}")
                    if status == 206:
                        first = resp.headers.get("content-range", "").replace("bytes ", "").split("-")[0]
                        if first.strip() != str(pos):
                            raise _Retry(f"Content-Range '{resp.headers.get('content-range')}' does not start at "
                                         f"{pos}")
                        skip = 0
                    elif status == 200:
                        skip = pos  # the server ignored Range: discard the bytes before our offset
                    else:
                        raise HubError(f"{path}: unexpected HTTP {status} from the hub", obj=path)
                    for chunk in resp.iter_raw():
                        if skip:
                            cut = min(skip, len(chunk))
                            chunk, skip = chunk[cut:], skip - cut
                        chunk = chunk[:end - pos]
                        if chunk:
                            os.pwrite(fd, chunk, pos)
                            pos += len(chunk)
                            on_progress(pos, fd)
                        if pos >= end:
                            break
                if pos < end:
                    raise _Retry(f"body ended after {pos - before} of {end - before} bytes (truncated)")
            except (_Retry, httpx.HTTPError) as exc:
                attempt = 1 if pos > before else attempt + 1
                if attempt > opts.retries:
                    raise DownloadError(f"{path}: giving up on bytes {pos}-{end} after {opts.retries} retries: "
                                        f"{type(exc).__name__}: {exc}", obj=path, cause=exc) from exc
                delay = min(opts.max_backoff, opts.backoff * 2 ** (attempt - 1)) * (0.5 + random.random())
                log(opts.index, f"{path}: {type(exc).__name__}: {exc}; retry {attempt}/{opts.retries} in "
                                f"{delay:.1f}s")
                time.sleep(delay)
        os.fsync(fd)
    finally:
        os.close(fd)
