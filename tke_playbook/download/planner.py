"""Choose what to fetch and split its bytes evenly across N shards: the :class:`DownloadPlan` value.

Files are laid end to end (largest first) and the byte stream is cut into N equal runs; a cut that falls within
2% of a file boundary moves to that boundary, so small files stay whole while large files are cut into byte
ranges. The largest shard is therefore at most 1.04 × total/N. :func:`tutorial_plan` reproduces the tutorial's
split (safetensors by count, everything else on index 0, both weight formats) for comparison.
"""

from __future__ import annotations

import bisect
import fnmatch
import hashlib
import json
import math
from dataclasses import asdict, dataclass, field

from ..errors import InvalidSpecError

SAFETENSORS = (".safetensors",)
DUPLICATE_FORMATS = (".bin", ".pt", ".pth", ".h5", ".msgpack", ".onnx", ".onnx_data", ".gguf", ".ot")
SNAP_FRACTION = 0.02


@dataclass(frozen=True)
class RepoFile:
    """One file of a hub repository: ``sha256`` when the hub gives it, else ``blob_id`` (git sha1) if known."""

    path: str
    size: int
    sha256: str | None = None
    blob_id: str | None = None


@dataclass(frozen=True)
class Piece:
    """Bytes ``[start, end)`` of ``path``."""

    path: str
    start: int
    end: int

    @property
    def size(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class DownloadPlan:
    """What each shard (Job index / local worker) fetches. A value: JSON round-trips, shows as a table."""

    source: str
    repo_id: str
    revision: str
    model_path: str
    files: tuple[RepoFile, ...]
    shards: tuple[tuple[Piece, ...], ...]
    endpoint: str | None = None
    skipped: tuple[tuple[str, str], ...] = ()      # (path, reason)
    strategy: str = "balanced"
    plan_id: str = field(default="", compare=False)

    def __post_init__(self):
        if not self.plan_id:
            object.__setattr__(self, "plan_id", hashlib.sha256(self._canonical().encode()).hexdigest()[:16])

    def _canonical(self) -> str:
        body = {k: v for k, v in self.to_dict().items() if k != "plan_id"}
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
                "model_path": self.model_path, "endpoint": self.endpoint, "strategy": self.strategy,
                "files": [asdict(f) for f in self.files], "skipped": [list(s) for s in self.skipped],
                "shards": [[[p.path, p.start, p.end] for p in shard] for shard in self.shards],
                "plan_id": self.plan_id}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_dict(cls, data: dict) -> DownloadPlan:
        return cls(source=data["source"], repo_id=data["repo_id"], revision=data["revision"],
                   model_path=data["model_path"], endpoint=data.get("endpoint"),
                   strategy=data.get("strategy", "balanced"),
                   files=tuple(RepoFile(**f) for f in data["files"]),
                   skipped=tuple(tuple(s) for s in data.get("skipped", ())),
                   shards=tuple(tuple(Piece(*p) for p in shard) for shard in data["shards"]))

    @classmethod
    def from_json(cls, text: str) -> DownloadPlan:
        return cls.from_dict(json.loads(text))

    def to_frame(self):
        """One row per piece: shard, path, start, end, bytes, whole (the piece is the whole file)."""
        import pandas as pd

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


def _suffix(path: str) -> str:
    name = path.rsplit("/", 1)[-1].lower()
    return name[name.rfind("."):] if "." in name else ""


def is_duplicate_format(path: str) -> bool:
    """A weight format other than safetensors: ``.bin``, ``.pt``, ``.h5``, ``.msgpack``, ``.gguf`` and every
    ONNX file (``model.onnx``, ``model.onnx_data``, ``model.onnx.data``)."""
    name = path.rsplit("/", 1)[-1].lower()
    return _suffix(path) in DUPLICATE_FORMATS or ".onnx" in name


def is_weight(path: str) -> bool:
    return _suffix(path) in SAFETENSORS or is_duplicate_format(path)


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


def make_plan(spec, files, *, endpoint: str | None = None) -> DownloadPlan:
    """The balanced plan for ``spec`` (a DownloadSpec) over a repository listing ``files``."""
    selected, skipped = select_files(files, spec.include, spec.exclude, spec.keep_duplicate_formats)
    if not selected:
        raise InvalidSpecError(f"No file of {spec.repo_id} is left to download: check include/exclude "
                               f"({list(spec.include)} / {list(spec.exclude)})", field="include", value=spec.include)
    return DownloadPlan(source=spec.source.value, repo_id=spec.repo_id, revision=spec.revision,
                        model_path=spec.model_path, endpoint=endpoint or spec.endpoint,
                        files=tuple(selected), skipped=tuple((f.path, why) for f, why in skipped),
                        shards=tuple(tuple(s) for s in split_bytes(selected, spec.completions)))


def tutorial_plan(spec, files, *, endpoint: str | None = None) -> DownloadPlan:
    """The tutorial's plan for the same listing (every file, both weight formats), for comparison."""
    files = sorted(files, key=lambda f: f.path)
    return DownloadPlan(source=spec.source.value, repo_id=spec.repo_id, revision=spec.revision,
                        model_path=spec.model_path, endpoint=endpoint or spec.endpoint, files=tuple(files),
                        shards=tuple(tuple(s) for s in tutorial_split(files, spec.completions)),
                        strategy="tutorial")
