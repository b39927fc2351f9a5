"""Download state on the shared volume: per-shard progress files, per-file verification records, a summary.

Layout under the model folder's state (``modelfolder.state_path``: ``<parent>/.tke-playbook/<name>/``, outside
the model folder, where no hub listing can name it): ``plan.json`` (the plan being run), ``parts/<index>.json``
(one per shard, small and written often: status, bytes, files verified by check, the pieces of files split across
shards), ``parts/<index>.pieces.json`` (every piece of the shard and its bytes on disk, what a restarted worker
resumes from; written seldom; both only ever under-claim), ``partial/<key>`` (new bytes, until verified),
``verified/<key>.json`` (one per verified file, with its hashes and the file's stat, written once its bytes are
durable), ``listing/<run>.json`` (the listing every pod of one Job run shares) and ``logs/``. Every write is atomic
(temp file + rename). A progress poll (:func:`read_progress`) reads the shards' small states, never a record per
file, so it costs the same for 20 files or 20,000. Standard library only: shipped to download pods.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import threading
import time
from pathlib import Path

try:
    from .modelfolder import (MARKER_PREFIX, MAX_MARKER_BYTES, completeness_problem, manifest_path, marker_path,
                              parse_json, read_small, state_path)
except ImportError:  # running from the ConfigMap in a download pod
    from modelfolder import (MARKER_PREFIX, MAX_MARKER_BYTES, completeness_problem, manifest_path, marker_path,
                             parse_json, read_small, state_path)

RUNNING, DONE, FAILED = "running", "done", "failed"


_TRACKING_DIRS: dict[str, Path] = {}


def tracking_dir(folder) -> Path:
    """``modelfolder.state_path(folder)``, remembered for absolute folders (a worker asks for it per file)."""
    key = os.fspath(folder)
    found = _TRACKING_DIRS.get(key)
    if found is None:
        found = state_path(folder)
        if os.path.isabs(key) and len(_TRACKING_DIRS) < 64:
            _TRACKING_DIRS[key] = found
    return found


def plan_file(folder) -> Path:
    return tracking_dir(folder) / "plan.json"


def shard_file(folder, index: int) -> Path:
    """A shard's small state: status, bytes, files verified, the pieces other shards wait on (written often)."""
    return tracking_dir(folder) / "parts" / f"{int(index)}.json"


def pieces_file(folder, index: int) -> Path:
    """Every piece of a shard and its bytes on disk: what a restarted worker resumes from (written seldom)."""
    return tracking_dir(folder) / "parts" / f"{int(index)}.pieces.json"


@functools.lru_cache(maxsize=1 << 16)
def _key(*parts) -> str:
    return hashlib.sha1("\0".join(map(str, parts)).encode()).hexdigest()[:24]


def verified_file(folder, rel_path: str) -> Path:
    return _state_file(os.fspath(folder), "verified", f"{_key(rel_path)}.json")


def partial_file(folder, f) -> Path:
    """Where new bytes of listed file ``f`` (path, size, expected hash) gather until they are verified."""
    return _state_file(os.fspath(folder), "partial", _key(f["path"], f["size"], f.get("sha256"), f.get("blob_id")))


@functools.lru_cache(maxsize=1 << 16)
def _state_file(folder: str, kind: str, name: str) -> Path:  # asked for several times per file by a worker
    return tracking_dir(folder) / kind / name


def listing_file(folder, run_id: str) -> Path:
    return tracking_dir(folder) / "listing" / f"{_key(run_id)}.json"


def write_json(path: Path, obj, *, sync: bool = True) -> None:
    """Write ``obj`` as JSON atomically: a reader sees the old file or the new one, never half of either.
    ``sync=False`` skips the fsync, for state that may be lost in a crash (progress, records whose data was
    synced first): losing it only means redoing work, never trusting bytes that are not there."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.{time.monotonic_ns()}.tmp")
    data = json.dumps(obj, separators=(",", ":")).encode()
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(tmp, flags, 0o644)
    except FileNotFoundError:  # the first write into this folder
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, flags, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_json(path: Path) -> dict | None:
    """The JSON in ``path``, None when it is missing or not the toolkit's: a symlink, FIFO or device, too large,
    malformed or nested without end (never a hang or a RecursionError)."""
    try:
        return parse_json(read_small(path))
    except (OSError, ValueError):
        return None


def shard_states(folder, plan_id: str, count: int, run_id: str | None = None) -> dict[int, dict]:
    """The state of every shard that has one for plan ``plan_id`` (and, when given, written in run ``run_id``:
    a shard that was done in an earlier run must say so again in this one)."""
    states = {}
    for index in range(count):
        state = read_json(shard_file(folder, index))
        if state and state.get("plan_id") == plan_id and (run_id is None or state.get("run") == run_id):
            states[index] = state
    return states


def verification(folder, rel_path: str) -> dict | None:
    """The verification record of a file, if it was verified (ok or not)."""
    record = read_json(verified_file(folder, rel_path))
    return record if record and record.get("path") == rel_path else None


def record_matches(record, f) -> bool:
    """A verification record says ``f`` (a listed file: path, size, sha256 / blob_id) was verified."""
    return bool(record and record.get("ok") and record.get("path") == f["path"] and record.get("size") == f["size"]
                and (not f.get("sha256") or record.get("sha256") == f["sha256"])
                and (not f.get("blob_id") or record.get("git_sha1") == f["blob_id"]))


# --- progress for notebooks and the command line: the same cost for 20 files or 20,000 -------------------------
# A poll reads the shards' small states and the marker; the plan and the manifest are parsed again only when they
# change (by inode, size and mtime), so a twice-a-second poll never re-reads one record per file.

_CACHE: dict[str, tuple[tuple, object]] = {}
_CACHE_SIZE = 16


def _cached(path: Path, parse):
    """``parse(bytes)`` of the file ``path``, re-read only when it changed; None when missing or malformed."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    key = (st.st_ino, st.st_size, st.st_mtime_ns)
    hit = _CACHE.get(str(path))
    if hit is not None and hit[0] == key:
        return hit[1]
    try:
        value = parse(read_small(path))
    except (OSError, ValueError, KeyError, TypeError):
        value = None
    if len(_CACHE) >= _CACHE_SIZE:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[str(path)] = (key, value)
    return value


def _plan_view(raw: bytes) -> dict:
    plan = parse_json(raw)
    return {"plan_id": str(plan["plan_id"]), "files_total": len(plan["files"]),
            "totals": [sum(int(end) - int(start) for _, start, end in pieces) for pieces in plan["shards"]]}


def _manifest_view(raw: bytes) -> dict:
    files = parse_json(raw).get("files", [])
    checks: dict[str, int] = {}
    for entry in files if isinstance(files, list) else ():
        check = entry.get("check") if isinstance(entry, dict) else None
        checks[check if isinstance(check, str) else "?"] = checks.get(check if isinstance(check, str) else "?", 0) + 1
    return {"digest": hashlib.sha256(raw).hexdigest(), "files": sum(checks.values()), "checks": checks}


def _marked_complete(folder) -> dict | None:
    """The manifest's summary (digest, files, checks) when the completion marker names it, else None: what a
    progress poll can tell without opening every file (``modelfolder.completeness_problem`` does that once)."""
    manifest = _cached(manifest_path(folder), _manifest_view)
    if manifest is None:
        return None
    try:
        marker = read_small(marker_path(folder), MAX_MARKER_BYTES).decode("utf-8", "replace").strip()
    except (OSError, ValueError):
        return None
    return manifest if marker == MARKER_PREFIX + manifest["digest"] else None


def read_progress(folder) -> dict:
    """A summary for notebooks: per-shard status and bytes, files verified (and by which check), complete or
    not, the shards' errors. Its cost does not grow with the number of files: the shards keep the counters."""
    folder = Path(folder)
    plan = _cached(plan_file(folder), _plan_view)
    if plan is None:
        return {"folder": str(folder), "plan_id": None, "complete": completeness_problem(folder) is None,
                "shards": [], "bytes_done": 0, "bytes_total": 0, "files_total": 0, "files_verified": 0,
                "checks": {}, "errors": []}
    plan_id, totals = plan["plan_id"], plan["totals"]
    states = shard_states(folder, plan_id, len(totals))
    rows, checks, verified = [], {}, 0
    for index, total in enumerate(totals):
        state = states.get(index, {})
        rows.append({"shard": index, "status": state.get("status", "pending"),
                     "bytes_done": state.get("bytes_done", 0), "bytes_total": total,
                     "error": state.get("error"), "updated": state.get("updated")})
        verified += int(state.get("files_verified") or 0)
        for check, n in (state.get("checks") or {}).items():
            checks[check] = checks.get(check, 0) + int(n)
    marked, files_total = _marked_complete(folder), plan["files_total"]
    if marked is not None and marked["files"] == files_total:  # every file verified, whoever verified the last
        verified, checks = files_total, dict(marked["checks"])
    return {"folder": str(folder), "plan_id": plan_id, "complete": marked is not None, "shards": rows,
            "bytes_done": sum(r["bytes_done"] for r in rows), "bytes_total": sum(totals),
            "files_total": files_total, "files_verified": min(verified, files_total), "checks": checks,
            "errors": list(dict.fromkeys(r["error"] for r in rows if r["error"]))}
