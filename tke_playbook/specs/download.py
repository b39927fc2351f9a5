"""What to download and how: the frozen, validated :class:`DownloadSpec` and the hub :class:`Source` enum.

A spec names a catalog model; the files land in ``/<hf_id>`` on the PVC (the tutorial's layout) whichever hub
they come from. Object names derive from the model slug, so BGE and E5 can download side by side.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import InvalidSpecError
from ..podworker.planner import MAX_SHARDS
from ..podworker.transfer import DEFAULT_ENDPOINTS, TOKEN_ENVS
from .catalog import ModelInfo, get_model
from .names import slug, unknown, validate_label, validate_name, validate_subdomain
from .plain import PlainSpec
from .storage import DEFAULT_PVC

DEFAULT_IMAGE = "python:3.11-slim"
TOKEN_SECRET = "hub-token"
TOKEN_SECRET_KEY = "token"
_REPO_ID = re.compile(r"^[A-Za-z0-9][-A-Za-z0-9_.]*/[A-Za-z0-9][-A-Za-z0-9_.]*$")


class Source(str, enum.Enum):
    """The model hub a download reads from."""

    MODELSCOPE = "modelscope"
    HUGGINGFACE = "huggingface"

    @property
    def default_revision(self) -> str:
        return "master" if self is Source.MODELSCOPE else "main"

    @property
    def default_endpoint(self) -> str:
        return DEFAULT_ENDPOINTS[self.value][1]

    @property
    def endpoint_env(self) -> str:
        return DEFAULT_ENDPOINTS[self.value][0]

    @property
    def token_env(self) -> str:
        return TOKEN_ENVS[self.value][1]  # [0] is HUB_TOKEN, the pods' name

    @classmethod
    def parse(cls, value: str | Source) -> Source:
        if isinstance(value, Source):
            return value
        aliases = {"ms": cls.MODELSCOPE, "hf": cls.HUGGINGFACE, "hugging face": cls.HUGGINGFACE}
        text = str(value).strip().lower()
        for member in cls:
            if text == member.value:
                return member
        if text in aliases:
            return aliases[text]
        raise unknown("hub", str(value), [m.value for m in cls])


class DownloadMode(str, enum.Enum):
    """What a download does with the model folder: fetch what is missing or damaged (keeping every intact file),
    adopt files fetched by other means (check them against the hub's listing, fetch nothing), or trust the files
    there without a hub (the explicit opt-out)."""

    DOWNLOAD = "download"
    ADOPT = "adopt"
    TRUST = "trust"


def _patterns(value, what: str) -> tuple[str, ...]:
    items = (value,) if isinstance(value, str) else tuple(value or ())
    if not all(isinstance(p, str) and p.strip() for p in items):
        raise InvalidSpecError(f"{what} must be glob patterns such as '*.safetensors' or 'onnx/*'", field=what,
                               value=value)
    return tuple(p.strip() for p in items)


def _count(value, what: str, example: int, most: int | None = None, why: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or (most is not None and value > most):
        limit = f"from 1 to {most}" if most is not None else "of at least 1"
        raise InvalidSpecError(f"{what} {value!r} must be a whole number {limit}{why}, such as {example}", field=what,
                               value=value)
    return value


# Indexed Jobs allow up to 100,000 completions (Kubernetes API); the planner makes at most MAX_SHARDS shards.
_SHARDS_WHY = f" (the download makes at most {MAX_SHARDS} shards, one pod each)"


def _revision(value: str) -> str:
    if not value or any(c.isspace() or ord(c) < 32 for c in value) or ".." in value:
        raise InvalidSpecError(f"revision {value!r} must be a branch, tag or commit such as 'main'",
                               field="revision", value=value)
    return value


def _download_options(spec) -> DownloadMode:
    """Check allow_unverified and run_as_user; the mode as a DownloadMode."""
    if not isinstance(spec.allow_unverified, bool):
        raise InvalidSpecError(f"allow_unverified {spec.allow_unverified!r} must be True or False",
                               field="allow_unverified", value=spec.allow_unverified)
    uid = spec.run_as_user
    if uid is not None and (isinstance(uid, bool) or not isinstance(uid, int) or not 0 <= uid < 2**31):
        raise InvalidSpecError(f"run_as_user {uid!r} must be a uid such as 1000 (the PVC must be writable by it), or "
                               f"None for the image's user", field="run_as_user", value=uid)
    try:
        return DownloadMode(spec.mode.value if isinstance(spec.mode, DownloadMode) else spec.mode)
    except ValueError:
        raise unknown("download mode", str(spec.mode), [m.value for m in DownloadMode]) from None


def _repo_id(repo_id: str | None, info: ModelInfo, source: Source) -> str:
    """The hub repository: as given, else the model's ModelScope id (on ModelScope), else its Hugging Face id."""
    repo = repo_id or (info.modelscope_id if source is Source.MODELSCOPE else None) or info.hf_id
    if not _REPO_ID.fullmatch(repo):
        raise InvalidSpecError(f"repo_id '{repo}' is not a hub repository id: write it as 'owner/name'",
                               field="repo_id", value=repo)
    return repo


def _node_selector(value) -> tuple[tuple[str, str], ...]:
    items = value.items() if isinstance(value, Mapping) else value
    try:
        pairs = tuple((key, label) for key, label in items)
        for key, label in pairs:
            validate_label(key, label, "node selector")
    except InvalidSpecError:
        raise
    except (TypeError, ValueError, AttributeError):
        raise InvalidSpecError("node_selector must map label keys to values, e.g. "
                               "{'node.kubernetes.io/instance-type': 'SA5.LARGE8'}", field="node_selector",
                               value=value) from None
    return pairs


def _endpoint(value: str | None) -> str | None:
    if value is not None and not re.match(r"^https?://[^\s/]+", str(value)):
        raise InvalidSpecError(f"endpoint '{value}' must be a URL such as 'https://hf-mirror.com'", field="endpoint",
                               value=value)
    return value.rstrip("/") if value else value


def _check_pod_options(spec) -> None:
    """The pip index URL (unused, still checked: old scripts pass it), the image and the Job's retry and clean-up
    counts."""
    if spec.pip_index_url is not None and not re.fullmatch(r"https?://[^\s'\"`$\\]+", str(spec.pip_index_url)):
        raise InvalidSpecError(f"pip_index_url {spec.pip_index_url!r} must be a URL without spaces or quotes, "
                               f"such as 'https://mirrors.cloud.tencent.com/pypi/simple'", field="pip_index_url",
                               value=spec.pip_index_url)
    if not isinstance(spec.image, str) or not spec.image.strip() or " " in spec.image:
        raise InvalidSpecError(f"image {spec.image!r} is not an image reference: use e.g. '{DEFAULT_IMAGE}'",
                               field="image", value=spec.image)
    _count(spec.backoff_limit_per_index + 1, "backoff_limit_per_index + 1", 4)
    _count(spec.ttl_seconds_after_finished + 1, "ttl_seconds_after_finished + 1", 3601)


@dataclass(frozen=True)
class DownloadSpec(PlainSpec):
    """A model download into a PVC (cluster) or a local folder playing it (local target)."""

    model: str | ModelInfo = "intfloat/e5-mistral-7b-instruct"
    source: Source = Source.MODELSCOPE
    revision: str | None = None            # default: master (ModelScope) / main (Hugging Face)
    completions: int = 3                   # shards = Job indexes = local worker processes
    parallelism: int = 3
    node_selector: tuple[tuple[str, str], ...] = ()
    pvc: str = DEFAULT_PVC
    namespace: str = "default"
    include: tuple[str, ...] = ()          # glob patterns; empty means everything
    exclude: tuple[str, ...] = ()
    keep_duplicate_formats: bool = False   # also fetch .bin/.pt/... weights when safetensors exist
    image: str = DEFAULT_IMAGE
    endpoint: str | None = None            # hub URL override (a mirror); default from env or the public hub
    token_secret: str | None = TOKEN_SECRET  # Secret with key 'token'; optional in the pod
    repo_id: str | None = None             # hub repository; default the model's id on the chosen hub
    pip_index_url: str | None = None       # unused since pods install nothing (the worker is stdlib only)
    allow_unverified: bool = False         # fetch files the hub lists no hash for (size-only check)
    mode: DownloadMode = DownloadMode.DOWNLOAD
    run_as_user: int | None = None         # pods' uid (the PVC must be writable by it); None: the image's user
    backoff_limit_per_index: int = 3
    require_spread: bool = False           # True: at most one pod per node, or wait (required anti-affinity)
    ttl_seconds_after_finished: int = 3600

    def __post_init__(self):
        info = get_model(self.model)
        source = Source.parse(self.source)
        hub_default = info.revision if source is Source.HUGGINGFACE else source.default_revision
        self._set(model=info.hf_id, source=source, revision=_revision(str(self.revision or hub_default).strip()),
                  repo_id=_repo_id(self.repo_id, info, source))
        _count(self.completions, "completions", 3, MAX_SHARDS, _SHARDS_WHY)
        _count(self.parallelism, "parallelism", 3, MAX_SHARDS, _SHARDS_WHY)
        self._set(mode=_download_options(self))
        if self.parallelism > self.completions:
            raise InvalidSpecError(f"parallelism {self.parallelism} is above completions {self.completions}: the "
                                   f"extra pods would have no shard; set parallelism to at most {self.completions}",
                                   field="parallelism", value=self.parallelism)
        self._set(node_selector=_node_selector(self.node_selector))
        validate_name(self.pvc, "PVC name")
        validate_name(self.namespace, "Namespace")
        validate_name(self.job_name, "Job name")
        self._set(include=_patterns(self.include, "include"), exclude=_patterns(self.exclude, "exclude"))
        if self.token_secret is not None:
            validate_subdomain(self.token_secret, "token Secret name")
        self._set(endpoint=_endpoint(self.endpoint))
        _check_pod_options(self)

    def _set(self, **values) -> None:
        for key, value in values.items():  # frozen dataclass normalisation
            object.__setattr__(self, key, value)

    @property
    def model_info(self) -> ModelInfo:
        return get_model(self.model)

    @property
    def slug(self) -> str:
        return slug(self.model)

    @property
    def job_name(self) -> str:
        return f"download-{slug(self.model)}"

    @property
    def configmap_name(self) -> str:
        return f"{self.job_name}-worker"

    @property
    def model_path(self) -> str:
        """The model's folder relative to the PVC root (``intfloat/e5-mistral-7b-instruct``)."""
        return self.model

    @property
    def pod_model_dir(self) -> str:
        """Where the model lands inside a download pod (the PVC is mounted at /data)."""
        return f"/data/{self.model}"

    @property
    def node_selector_dict(self) -> dict[str, str]:
        return dict(self.node_selector)

    def replace(self, **changes) -> DownloadSpec:
        if "source" in changes and Source.parse(changes["source"]) is not self.source:
            changes.setdefault("revision", None)
            changes.setdefault("repo_id", None)
        if "model" in changes:
            changes.setdefault("repo_id", None)
        return dataclasses.replace(self, **changes)
