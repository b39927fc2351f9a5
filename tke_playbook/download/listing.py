"""List a hub repository's files with sizes and hashes through the hubs' own SDKs, and plan a download.

Hugging Face: ``HfApi.list_repo_tree(recursive=True)`` (``GET /api/models/{repo}/tree/{rev}``, paginated) gives
each file's size, git blob id and, for LFS files, the sha256. ModelScope: ``modelscope_hub.HubApi.list_repo_files``
(``GET /api/v1/models/{repo}/repo/files?Revision=&Recursive=True``) gives size and sha256. Both honour an endpoint
override (``HF_ENDPOINT`` / ``MODELSCOPE_ENDPOINT`` or the spec's ``endpoint``), so a local mirror stands in.
"""

from __future__ import annotations

import contextlib
import os
import threading
from urllib.parse import urlsplit

from ..errors import HubError
from .planner import DownloadPlan, RepoFile, make_plan, tutorial_plan
from .spec import DownloadSpec, Source
from .tokens import reveal, token_from_env

_OFFLINE_LOCK = threading.Lock()


def resolve_endpoint(source: Source | str, endpoint: str | None = None) -> str:
    """``endpoint``, else ``$HF_ENDPOINT`` / ``$MODELSCOPE_ENDPOINT``, else the public hub."""
    src = Source.parse(source)
    return (endpoint or os.environ.get(src.endpoint_env) or src.default_endpoint).rstrip("/")


@contextlib.contextmanager
def _loopback_online(endpoint: str):
    """huggingface_hub refuses every request under HF_HUB_OFFLINE=1; a mirror on this machine is not online."""
    from huggingface_hub import constants

    if not (constants.HF_HUB_OFFLINE and urlsplit(endpoint).hostname in ("127.0.0.1", "localhost", "::1")):
        yield
        return
    with _OFFLINE_LOCK:
        constants.HF_HUB_OFFLINE = False
        try:
            yield
        finally:
            constants.HF_HUB_OFFLINE = True


def _hint(repo_id: str, revision: str, endpoint: str) -> str:
    return (f"check the model id '{repo_id}' and revision '{revision}' on {endpoint}; private or gated models need "
            f"a token (HF_TOKEN / MODELSCOPE_API_TOKEN locally, Secret 'hub-token' on the cluster)")


def _list_huggingface(repo_id, revision, endpoint, token) -> list[RepoFile]:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    try:
        with _loopback_online(endpoint):
            entries = list(HfApi(endpoint=endpoint, token=token or False).list_repo_tree(
                repo_id, revision=revision, recursive=True, expand=False))
    except OfflineModeIsEnabled as exc:
        raise HubError(f"Cannot list {repo_id}: HF_HUB_OFFLINE=1 is set; unset it to download from {endpoint}",
                       obj=repo_id, cause=exc) from None
    except HfHubHTTPError as exc:
        status = getattr(exc.response, "status_code", "?")
        raise HubError(f"Hugging Face refused to list {repo_id} (HTTP {status}): {_hint(repo_id, revision, endpoint)}",
                       obj=repo_id, cause=exc) from None
    except Exception as exc:  # transport errors from httpx2 and friends
        raise HubError(f"Cannot reach Hugging Face at {endpoint} to list {repo_id}: {type(exc).__name__}: {exc}",
                       obj=repo_id, cause=exc) from None
    return [RepoFile(e.path, int(e.size), e.lfs.sha256 if e.lfs else None, e.blob_id)
            for e in entries if hasattr(e, "size") and hasattr(e, "blob_id")]


def _list_modelscope(repo_id, revision, endpoint, token) -> list[RepoFile]:
    from modelscope_hub.api import HubApi
    from modelscope_hub.errors import APIError
    from modelscope_hub.errors import HubError as MsHubError

    try:
        entries = HubApi(endpoint=endpoint, token=token).list_repo_files(repo_id, "model", revision=revision,
                                                                         recursive=True)
    except APIError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None) or getattr(exc, "status_code", "?")
        raise HubError(f"ModelScope refused to list {repo_id} (HTTP {status}): {_hint(repo_id, revision, endpoint)}",
                       obj=repo_id, cause=exc) from None
    except (MsHubError, OSError) as exc:
        raise HubError(f"Cannot reach ModelScope at {endpoint} to list {repo_id}: {type(exc).__name__}: {exc}",
                       obj=repo_id, cause=exc) from None
    return [RepoFile(e.path, int(e.size), (e.sha256 or None) and e.sha256.lower(), None)
            for e in entries if e.type != "tree" and e.path]


def list_repo_files(source: Source | str, repo_id: str, revision: str | None = None, *,
                    endpoint: str | None = None, token=None) -> list[RepoFile]:
    """Every file of ``repo_id`` at ``revision`` with size and, where the hub has it, sha256."""
    src = Source.parse(source)
    endpoint = resolve_endpoint(src, endpoint)
    token = reveal(token if token is not None else token_from_env(src))
    revision = revision or src.default_revision
    lister = _list_huggingface if src is Source.HUGGINGFACE else _list_modelscope
    files = lister(repo_id, revision, endpoint, token)
    if not files:
        raise HubError(f"{repo_id} at revision '{revision}' on {endpoint} lists no files: "
                       f"{_hint(repo_id, revision, endpoint)}", obj=repo_id)
    return sorted(files, key=lambda f: f.path)


def plan_download(spec: DownloadSpec, *, token=None, endpoint: str | None = None,
                  strategy: str = "balanced") -> DownloadPlan:
    """List the spec's repository and split it: ``strategy`` 'balanced' (ours) or 'tutorial' (for comparison)."""
    endpoint = resolve_endpoint(spec.source, endpoint or spec.endpoint)
    files = list_repo_files(spec.source, spec.repo_id, spec.revision, endpoint=endpoint, token=token)
    build = {"balanced": make_plan, "tutorial": tutorial_plan}.get(strategy)
    if build is None:
        from ..names import unknown

        raise unknown("plan strategy", strategy, ["balanced", "tutorial"])
    return build(spec, files, endpoint=endpoint)
