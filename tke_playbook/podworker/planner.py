"""Choose what to fetch and split its bytes evenly across N shards: the :class:`DownloadPlan` value.

Files are laid end to end (largest first) and the byte stream is cut into N equal runs; a cut that falls within
2% of a file boundary moves to that boundary, so small files stay whole while large files are cut into byte
ranges. The largest shard is therefore at most 1.04 × total/N. :func:`tutorial_plan` reproduces the tutorial's
split (safetensors by count, everything else on index 0, both weight formats) for comparison. A plan records the
spec it was made for (:func:`require_plan_for`). Standard library only (pandas just for the table views):
shipped to download pods, which plan for themselves when the ConfigMap carries no listing.
"""

from __future__ import annotations

import bisect
import fnmatch
import hashlib
import json
import math
from dataclasses import dataclass, field

try:
    from ..errors import InvalidSpecError
    from .rules import RepoFile, require_hashes
except ImportError:  # running from the ConfigMap in a download pod
    from rules import RepoFile, require_hashes

    class InvalidSpecError(ValueError):
        def __init__(self, message, *, field=None, value=None, obj=None, cause=None):
            super().__init__(message)
            self.message, self.field, self.value, self.obj, self.cause = message, field, value, obj, cause

SAFETENSORS = (".safetensors",)
DUPLICATE_FORMATS = (".bin", ".pt", ".pth", ".h5", ".msgpack", ".onnx", ".onnx_data", ".gguf", ".ot")
SNAP_FRACTION = 0.02
MAX_SHARDS = 64                 # Job indexes / local worker processes: a sane maximum
MIN_SHARD_BYTES = 8 << 20       # more shards than files only while each still gets 8 MiB
REQUEST_KEYS = ("source", "repo_id", "revision", "model_path", "pvc", "endpoint", "include", "exclude",
                "keep_duplicate_formats", "allow_unverified", "shards", "mode")


@dataclass(frozen=True)
class Piece:
    """Bytes ``[start, end)`` of ``path``."""

    path: str
    start: int
    end: int

    @property
    def size(self) -> int:
        return self.end - self.start


def request_of(spec) -> dict:
    """What a plan is made from, as plain data: a DownloadSpec's download fields (or such a dict itself)."""
    if isinstance(spec, dict):
        return {k: spec.get(k) for k in REQUEST_KEYS}
    return {"source": spec.source.value, "repo_id": spec.repo_id, "revision": spec.revision,
            "model_path": spec.model_path, "pvc": spec.pvc, "endpoint": spec.endpoint,
            "include": list(spec.include), "exclude": list(spec.exclude),
            "keep_duplicate_formats": spec.keep_duplicate_formats, "allow_unverified": spec.allow_unverified,
            "shards": spec.completions, "mode": spec.mode.value}


@dataclass(frozen=True)
class DownloadPlan:
    """What each shard (Job index / local worker) fetches, tied to the spec it was made for (model, repository,
    requested revision, PVC). A value: JSON round-trips, shows as a table. ``revision`` is what the files are
    fetched at (the commit the requested revision resolved to, where the hub says). ``plan_id`` identifies the
    split for resuming; it leaves out the endpoint, which is only where the bytes come from."""

    source: str
    repo_id: str
    revision: str
    model_path: str
    files: tuple[RepoFile, ...]
    shards: tuple[tuple[Piece, ...], ...]
    endpoint: str | None = None
    skipped: tuple[tuple[str, str], ...] = ()      # (path, reason)
    strategy: str = "balanced"
    requested_revision: str | None = None
    pvc: str | None = None
    allow_unverified: bool = False
    plan_id: str = field(default="", compare=False)

    def __post_init__(self):
        if self.requested_revision is None:
            object.__setattr__(self, "requested_revision", self.revision)
        object.__setattr__(self, "plan_id", hashlib.sha256(self._canonical().encode()).hexdigest()[:16])

    def _canonical(self) -> str:
        body = {k: v for k, v in self.to_dict().items() if k not in ("plan_id", "endpoint")}
        return json.dumps(body, sort_keys=True, separators=(",", ":"))

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def bytes_per_shard(self) -> tuple[int, ...]:
        return tuple(sum(p.size for p in shard) for shard in self.shards)

    @property
    def imbalance(self) -> float:
        """Largest shard over the ideal total/N (1.0 is perfect)."""
        ideal = self.total_bytes / max(1, len(self.shards))
        return max(self.bytes_per_shard, default=0) / ideal if ideal else 1.0

    def file(self, path: str) -> RepoFile:
        return next(f for f in self.files if f.path == path)

    def to_dict(self) -> dict:
        return {"source": self.source, "repo_id": self.repo_id, "revision": self.revision,
                "requested_revision": self.requested_revision, "model_path": self.model_path, "pvc": self.pvc,
                "endpoint": self.endpoint, "strategy": self.strategy, "allow_unverified": self.allow_unverified,
                "files": [f.as_dict() for f in self.files], "skipped": [list(s) for s in self.skipped],
                "shards": [[[p.path, p.start, p.end] for p in shard] for shard in self.shards],
                "plan_id": self.plan_id}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_dict(cls, data: dict) -> DownloadPlan:
        return cls(source=data["source"], repo_id=data["repo_id"], revision=data["revision"],
                   model_path=data["model_path"], endpoint=data.get("endpoint"),
                   strategy=data.get("strategy", "balanced"), requested_revision=data.get("requested_revision"),
                   pvc=data.get("pvc"), allow_unverified=bool(data.get("allow_unverified")),
                   files=tuple(RepoFile(**f) for f in data["files"]),
                   skipped=tuple(tuple(s) for s in data.get("skipped", ())),
                   shards=tuple(tuple(Piece(*p) for p in shard) for shard in data["shards"]))

    @classmethod
    def from_json(cls, text: str) -> DownloadPlan:
        return cls.from_dict(json.loads(text))

    def to_frame(self):
        """One row per piece: shard, path, start, end, bytes, whole (the piece is the whole file)."""
        import pandas as pd  # late: download pods have no pandas

        sizes = {f.path: f.size for f in self.files}
        rows = [{"shard": i, "path": p.path, "start": p.start, "end": p.end, "bytes": p.size,
                 "whole": p.start == 0 and p.end == sizes[p.path]}
                for i, shard in enumerate(self.shards) for p in shard]
        return pd.DataFrame(rows, columns=["shard", "path", "start", "end", "bytes", "whole"])

    def shard_frame(self):
        """One row per shard: pieces, bytes, GB and share of the total."""
        import pandas as pd

        total = self.total_bytes or 1
        return pd.DataFrame([{"shard": i, "pieces": len(s), "bytes": b, "GB": round(b / 1e9, 3),
                              "share": round(b / total, 3)}
                             for i, (s, b) in enumerate(zip(self.shards, self.bytes_per_shard))])


def require_plan_for(spec, plan: DownloadPlan) -> None:
    """Raise InvalidSpecError unless ``plan`` was made for ``spec`` (model, repository, hub, revision, PVC)."""
    want = request_of(spec)
    have = {"model_path": plan.model_path, "repo_id": plan.repo_id, "source": plan.source,
            "revision": plan.requested_revision, "pvc": plan.pvc}
    wrong = [k for k, v in have.items() if v is not None and v != want[k]]
    if len(plan.shards) > max(1, int(want["shards"] or 1)):
        wrong.append("shards")
    if wrong:
        said = ", ".join(f"{k} {have.get(k, len(plan.shards))!r} (spec: {want[k]!r})" for k in wrong)
        raise InvalidSpecError(f"The plan was made for {plan.model_path} but the spec asks for {want['model_path']}: "
                               f"{said}. Make the plan from this spec (plan_download(spec))", field="plan",
                               value=plan.model_path)


def shard_count(requested: int, files) -> int:
    """Shards actually used: at most ``requested`` and MAX_SHARDS, and no more than the files or 8 MiB runs of
    bytes give work for (a 91 MB model with 10 files gets 11 at most)."""
    total = sum(f.size for f in files)
    by_work = max(len(files), math.ceil(total / MIN_SHARD_BYTES))
    return max(1, min(int(requested), MAX_SHARDS, by_work))


def _suffix(path: str) -> str:
    name = path.rsplit("/", 1)[-1].lower()
    return name[name.rfind("."):] if "." in name else ""


def is_duplicate_format(path: str) -> bool:
    """A weight format other than safetensors: ``.bin``, ``.pt``, ``.h5``, ``.msgpack``, ``.gguf`` and every
    ONNX file (``model.onnx``, ``model.onnx_data``, ``model.onnx.data``)."""
    name = path.rsplit("/", 1)[-1].lower()
    return _suffix(path) in DUPLICATE_FORMATS or ".onnx" in name


def select_files(files, include=(), exclude=(), keep_duplicate_formats=False):
    """Split ``files`` into (selected, skipped-with-reason) by patterns and the duplicate-format rule."""
    selected, skipped = [], []
    for f in sorted(files, key=lambda f: f.path):
        if include and not any(fnmatch.fnmatch(f.path, p) for p in include):
            skipped.append((f, "not matched by include"))
        elif any(fnmatch.fnmatch(f.path, p) for p in exclude):
            skipped.append((f, "matched by exclude"))
        else:
            selected.append(f)
    has_safetensors = any(_suffix(f.path) in SAFETENSORS for f in selected)
    if has_safetensors and not keep_duplicate_formats:
        kept = [f for f in selected if not is_duplicate_format(f.path)]
        skipped += [(f, "duplicate weight format (safetensors present)") for f in selected if f not in kept]
        selected = kept
    return selected, skipped


def split_bytes(files, n: int) -> list[list[Piece]]:
    """Cut the files' bytes into ``n`` runs whose largest is within 4% of total/n (pieces of files)."""
    if n < 1:
        raise InvalidSpecError(f"shard count {n} must be at least 1", field="completions", value=n)
    order = sorted(files, key=lambda f: (-f.size, f.path))
    starts, pos = [], 0
    for f in order:
        starts.append(pos)
        pos += f.size
    total, share = pos, pos / n
    cuts = [0]
    for k in range(1, n):
        cut = round(k * share)
        i = bisect.bisect_left(starts, cut)
        near = min((b for b in (starts[i - 1:i] + starts[i:i + 1] + [total]) if b is not None),
                   key=lambda b: abs(b - cut))
        if abs(near - cut) <= SNAP_FRACTION * share:
            cut = near
        cuts.append(max(cut, cuts[-1]))
    cuts.append(total)
    shards: list[list[Piece]] = [[] for _ in range(n)]
    for f, begin in zip(order, starts):
        if f.size == 0:
            shards[0].append(Piece(f.path, 0, 0))
            continue
        for k in range(n):
            lo, hi = max(begin, cuts[k]), min(begin + f.size, cuts[k + 1])
            if lo < hi:
                shards[k].append(Piece(f.path, lo - begin, hi - begin))
    return shards


def tutorial_split(files, n: int) -> list[list[Piece]]:
    """The tutorial's split: sorted safetensors cut into n chunks by count; every other file on index 0."""
    weights = sorted((f for f in files if _suffix(f.path) in SAFETENSORS), key=lambda f: f.path)
    chunk = math.ceil(len(weights) / n) if weights else 0
    shards: list[list[Piece]] = [[] for _ in range(n)]
    for i, f in enumerate(weights):
        shards[i // chunk].append(Piece(f.path, 0, f.size))
    shards[0] += [Piece(f.path, 0, f.size) for f in sorted(files, key=lambda f: f.path)
                  if _suffix(f.path) not in SAFETENSORS]
    return shards


def require_plan_hashes(plan: DownloadPlan, where: str) -> DownloadPlan:
    """The plan, if every file it fetches has a listed hash or the user allowed unverified files."""
    require_hashes(plan.files, where, plan.allow_unverified)
    return plan


def make_plan(spec, files, *, endpoint: str | None = None, revision: str | None = None) -> DownloadPlan:
    """The balanced plan for ``spec`` (a DownloadSpec or :func:`request_of` dict) over a validated listing
    ``files``; ``revision`` is the commit the listing was made at (default the requested revision). Pure:
    :func:`require_plan_hashes` is applied where a plan meets a real listing (planning from the hub, the worker)."""
    req = request_of(spec)
    selected, skipped = select_files(files, req["include"] or (), req["exclude"] or (),
                                     req["keep_duplicate_formats"])
    if not selected:
        raise InvalidSpecError(f"No file of {req['repo_id']} is left to download: check include/exclude "
                               f"({list(req['include'] or ())} / {list(req['exclude'] or ())})", field="include",
                               value=req["include"])
    return DownloadPlan(source=req["source"], repo_id=req["repo_id"], revision=revision or req["revision"],
                        requested_revision=req["revision"], model_path=req["model_path"], pvc=req["pvc"],
                        endpoint=endpoint or req["endpoint"], allow_unverified=bool(req["allow_unverified"]),
                        files=tuple(selected), skipped=tuple((f.path, why) for f, why in skipped),
                        shards=tuple(tuple(s) for s in split_bytes(selected, shard_count(req["shards"], selected))))


def tutorial_plan(spec, files, *, endpoint: str | None = None, revision: str | None = None) -> DownloadPlan:
    """The tutorial's plan for the same listing (every file, both weight formats), for comparison."""
    req = request_of(spec)
    files = sorted(files, key=lambda f: f.path)
    return DownloadPlan(source=req["source"], repo_id=req["repo_id"], revision=revision or req["revision"],
                        requested_revision=req["revision"], model_path=req["model_path"], pvc=req["pvc"],
                        endpoint=endpoint or req["endpoint"], files=tuple(files),
                        shards=tuple(tuple(s) for s in tutorial_split(files, int(req["shards"]))),
                        strategy="tutorial")
