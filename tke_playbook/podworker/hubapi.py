"""List a hub repository's files (standard library only), the same way on this machine and in download pods.

Hugging Face: ``GET /api/models/{repo}/revision/{rev}`` resolves the revision to its commit (``sha``), then
``GET /api/models/{repo}/tree/{commit}?recursive=true&expand=false`` pages through the files (``Link: rel=next``):
``size``, ``oid`` (the git blob sha1) and, for LFS files, ``lfs.oid`` (the sha256). ModelScope:
``GET /api/v1/models/{repo}/repo/files?Revision=&Recursive=True`` gives ``Path``, ``Size``, ``Sha256`` and ``Type``.
Three kinds of failure, each said as such: the hub cannot be reached, the hub refused (HTTP status), or the hub
answered with something that is not a listing. The entries then go through :mod:`rules`.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
from urllib.parse import quote, urlencode, urlsplit

try:
    from .rules import check_listing
    from .transfer import HUB_NAMES, NETWORK_ERRORS, HubError, open_url, request_headers
except ImportError:  # running from the ConfigMap in a download pod
    from rules import check_listing
    from transfer import HUB_NAMES, NETWORK_ERRORS, HubError, open_url, request_headers

MAX_BODY = 64 << 20
MAX_PAGES = 1000
_LINK_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


class Malformed(Exception):
    """The hub answered, but not with what a listing looks like."""


def describe(source: str, endpoint: str, repo_id: str, revision: str) -> str:
    """How errors name a listing: the hub, where it is, the repository and revision."""
    return f"{HUB_NAMES[source]} at {endpoint} ({repo_id} at revision '{revision}')"


def hint(repo_id: str, revision: str, endpoint: str) -> str:
    return (f"check the model id '{repo_id}' and revision '{revision}' on {endpoint}; private or gated models need "
            f"a token (HF_TOKEN / MODELSCOPE_API_TOKEN locally, Secret 'hub-token' on the cluster)")


def _get_json(url: str, headers: dict, timeout: float, attempts: int = 3):
    """(parsed JSON body, response headers); HubError for refusals and unreachable hubs, Malformed otherwise."""
    for attempt in range(attempts):
        try:
            with open_url(url, headers, timeout) as resp:
                body = resp.read(MAX_BODY + 1)
                links = resp.headers.get("Link", "")
        except urllib.error.HTTPError as exc:
            exc.close()
            if (exc.code == 429 or exc.code >= 500) and attempt + 1 < attempts:
                time.sleep(0.5 * 2 ** attempt)
                continue
            raise _Refused(exc.code) from None
        except NETWORK_ERRORS as exc:
            if attempt + 1 < attempts:
                time.sleep(0.5 * 2 ** attempt)
                continue
            raise _Unreachable(exc) from exc
        if len(body) > MAX_BODY:
            raise Malformed(f"a body over {MAX_BODY} bytes")
        try:
            return json.loads(body), links
        except ValueError as exc:
            raise Malformed(f"a body that is not JSON ({exc})") from None
    raise AssertionError("unreachable")


class _Refused(Exception):
    def __init__(self, status: int):
        super().__init__(status)
        self.status = status


class _Unreachable(Exception):
    def __init__(self, cause: BaseException):
        super().__init__(str(cause))
        self.cause = cause


def _hf_commit(endpoint, repo_id, revision, headers, timeout) -> str:
    if _COMMIT.fullmatch(revision):
        return revision
    body, _ = _get_json(f"{endpoint}/api/models/{repo_id}/revision/{quote(revision, safe='')}", headers, timeout)
    sha = body.get("sha") if isinstance(body, dict) else None
    if not isinstance(sha, str) or not _COMMIT.fullmatch(sha):
        raise Malformed(f"a revision answer without a 40-hex commit 'sha' ({sha!r:.60})")
    return sha


def _hf_entry(item) -> dict | None:
    if not isinstance(item, dict) or item.get("type") not in ("file", "directory"):
        raise Malformed(f"a tree entry that is neither a file nor a directory ({item!r:.120})")
    if item["type"] == "directory":
        return None
    lfs = item.get("lfs")
    if lfs is not None and not isinstance(lfs, dict):
        raise Malformed(f"an 'lfs' field that is not an object ({lfs!r:.80})")
    if lfs:  # the blob oid of an LFS file is the pointer's, not the content's
        return {"path": item.get("path"), "size": item.get("size"), "sha256": lfs.get("oid") or lfs.get("sha256")}
    return {"path": item.get("path"), "size": item.get("size"), "blob_id": item.get("oid")}


def _list_huggingface(endpoint, repo_id, revision, headers, timeout):
    commit = _hf_commit(endpoint, repo_id, revision, headers, timeout)
    url = f"{endpoint}/api/models/{repo_id}/tree/{commit}?{urlencode({'recursive': 'true', 'expand': 'false'})}"
    entries = []
    for _ in range(MAX_PAGES):
        page, links = _get_json(url, headers, timeout)
        if not isinstance(page, list):
            raise Malformed(f"a tree page that is not a list ({str(page)[:120]})")
        entries += [e for e in map(_hf_entry, page) if e is not None]
        match = _LINK_NEXT.search(links or "")
        if not match:
            return entries, commit
        nxt = urlsplit(match.group(1))
        # the next page is asked of the endpoint's own host: the token never follows a Link elsewhere (and a
        # mirror that passes the upstream hub's Link through still pages)
        base = urlsplit(endpoint)
        url = f"{base.scheme}://{base.netloc}{nxt.path}" + (f"?{nxt.query}" if nxt.query else "")
    raise Malformed(f"more than {MAX_PAGES} pages")


def _ms_entry(item) -> dict | None:
    if not isinstance(item, dict):
        raise Malformed(f"a file entry that is not an object ({item!r:.120})")
    if item.get("Type") == "tree":
        return None
    return {"path": item.get("Path"), "size": item.get("Size"), "sha256": item.get("Sha256") or None}


def _list_modelscope(endpoint, repo_id, revision, headers, timeout):
    query = urlencode({"Revision": revision, "Recursive": "True"})
    body, _ = _get_json(f"{endpoint}/api/v1/models/{repo_id}/repo/files?{query}", headers, timeout)
    if not isinstance(body, dict):
        raise Malformed(f"a body that is not an object ({str(body)[:120]})")
    if body.get("Success") is False or body.get("Code", 200) not in (200, "200"):
        raise _Refused(body.get("Code") if isinstance(body.get("Code"), int) else 400)
    data = body.get("Data")
    files = data.get("Files") if isinstance(data, dict) else None
    if not isinstance(files, list):
        raise Malformed(f"no Data.Files list ({str(body)[:120]})")
    return [e for e in map(_ms_entry, files) if e is not None], revision


def list_files(source: str, repo_id: str, revision: str, endpoint: str, token: str | None = None,
               timeout: float = 30.0):
    """(validated RepoFiles sorted by path, the commit the revision resolved to where the hub says)."""
    where = describe(source, endpoint, repo_id, revision)
    lister = _list_huggingface if source == "huggingface" else _list_modelscope
    try:
        entries, resolved = lister(endpoint, repo_id, revision, request_headers(source, token), timeout)
    except _Refused as exc:
        word = "refused to list" if exc.status in (401, 403) else "could not list"
        raise HubError(f"{HUB_NAMES[source]} {word} {repo_id} (HTTP {exc.status}): {hint(repo_id, revision, endpoint)}",
                       obj=repo_id) from None
    except _Unreachable as exc:
        raise HubError(f"Cannot reach {HUB_NAMES[source]} at {endpoint} to list {repo_id}: "
                       f"{type(exc.cause).__name__}: {exc.cause}", obj=repo_id, cause=exc.cause) from None
    except Malformed as exc:
        raise HubError(f"{where} answered with a malformed listing: {exc}. The hub was reached; check that the "
                       f"endpoint is a Hugging Face / ModelScope hub or a faithful mirror", obj=repo_id) from None
    return check_listing(entries, where), resolved
