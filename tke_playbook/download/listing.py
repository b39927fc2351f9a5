"""List a hub repository's files and plan a download, on this machine: the same code the download pods run.

:func:`list_repo_files` calls :func:`hubapi.list_files` (standard library; the pods run it too), which validates
the listing (:mod:`rules`) before anything is planned or written. :func:`plan_download` pins the plan to the
commit the revision resolved to (Hugging Face says which), so every shard fetches the same bytes. An endpoint
override (``HF_ENDPOINT`` / ``MODELSCOPE_ENDPOINT`` or the spec's ``endpoint``) lets a mirror stand in.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from ..errors import HubError
from ..hostenv import token_from_env
from ..podworker.hubapi import describe, list_files
from ..podworker.planner import DownloadPlan, RepoFile, make_plan, require_plan_hashes, tutorial_plan
from ..specs.download import DownloadSpec, Source
from ..specs.names import unknown
from ..specs.tokens import reveal

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def resolve_endpoint(source: Source | str, endpoint: str | None = None) -> str:
    """``endpoint``, else ``$HF_ENDPOINT`` / ``$MODELSCOPE_ENDPOINT``, else the public hub."""
    src = Source.parse(source)
    return (endpoint or os.environ.get(src.endpoint_env) or src.default_endpoint).rstrip("/")


def _offline_guard(src: Source, endpoint: str, repo_id: str) -> None:
    """HF_HUB_OFFLINE=1 forbids the internet, not a mirror on this machine."""
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    if src is Source.HUGGINGFACE and offline and urlsplit(endpoint).hostname not in _LOOPBACK:
        raise HubError(f"Cannot list {repo_id}: HF_HUB_OFFLINE=1 is set; unset it to download from {endpoint}",
                       obj=repo_id)


def list_listing(source: Source | str, repo_id: str, revision: str | None = None, *, endpoint: str | None = None,
                 token=None) -> tuple[list[RepoFile], str]:
    """(every file of ``repo_id``, validated and sorted by path; the commit the revision resolved to)."""
    src = Source.parse(source)
    endpoint = resolve_endpoint(src, endpoint)
    _offline_guard(src, endpoint, repo_id)
    token = reveal(token if token is not None else token_from_env(src))
    return list_files(src.value, repo_id, revision or src.default_revision, endpoint, token)


def list_repo_files(source: Source | str, repo_id: str, revision: str | None = None, *,
                    endpoint: str | None = None, token=None) -> list[RepoFile]:
    """Every file of ``repo_id`` at ``revision`` with size and the hash the hub lists (sha256 or git sha1)."""
    return list_listing(source, repo_id, revision, endpoint=endpoint, token=token)[0]


def plan_download(spec: DownloadSpec, *, token=None, endpoint: str | None = None,
                  strategy: str = "balanced") -> DownloadPlan:
    """List the spec's repository and split it: ``strategy`` 'balanced' (ours) or 'tutorial' (for comparison).
    Nothing is written: a listing the rules refuse, or a file with no hash (unless ``allow_unverified``), fails
    here."""
    build = {"balanced": make_plan, "tutorial": tutorial_plan}.get(strategy)
    if build is None:
        raise unknown("plan strategy", strategy, ["balanced", "tutorial"])
    endpoint = resolve_endpoint(spec.source, endpoint or spec.endpoint)
    files, commit = list_listing(spec.source, spec.repo_id, spec.revision, endpoint=endpoint, token=token)
    plan = build(spec, files, endpoint=endpoint, revision=commit)
    if strategy == "tutorial":
        return plan
    return require_plan_hashes(plan, describe(spec.source.value, endpoint, spec.repo_id, spec.revision))
