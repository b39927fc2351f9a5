"""Download state on the shared volume: per-shard progress files, per-file verification records, a summary.

Layout under the model folder's state (``modelfolder.state_path``: ``<parent>/.tke-playbook/<name>/``, outside
the model folder, where no hub listing can name it): ``plan.json`` (the plan being run), ``parts/<index>.json``
(one per shard: status, bytes done per piece - written only after the bytes are synced, so it never
over-claims), ``partial/<key>`` (new bytes, until verified), ``verified/<key>.json`` (one per verified file, with
its hashes and the file's stat), ``listing/<run>.json`` (the listing every pod of one Job run shares) and
``logs/``. Every write is atomic (temp file + rename). Standard library only: shipped to download pods.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

try:
    from .modelfolder import completeness_problem, state_path
except ImportError:  # running from the ConfigMap in a download pod
    from modelfolder import completeness_problem, state_path

RUNNING, DONE, FAILED = "running", "done", "failed"


def tracking_dir(folder) -> Path:
    return state_path(folder)


def plan_file(folder) -> Path:
    return tracking_dir(folder) / "plan.json"


def shard_file(folder, index: int) -> Path:
    return tracking_dir(folder) / "parts" / f"{int(index)}.json"


def _key(*parts) -> str:
    return hashlib.sha1("\0".join(map(str, parts)).encode()).hexdigest()[:24]


def verified_file(folder, rel_path: str) -> Path:
    return tracking_dir(folder) / "verified" / f"{_key(rel_path)}.json"


def partial_file(folder, f) -> Path:
    """Where new bytes of listed file ``f`` (path, size, expected hash) gather until they are verified."""
    return tracking_dir(folder) / "partial" / _key(f["path"], f["size"], f.get("sha256"), f.get("blob_id"))


def listing_file(folder, run_id: str) -> Path:
    return tracking_dir(folder) / "listing" / f"{_key(run_id)}.json"


def write_json(path: Path, obj) -> None:
    """Write ``obj`` as JSON atomically: a reader sees the old file or the new one, never half of either."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, separators=(",", ":"))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_json(path: Path) -> dict | None:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
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


def read_progress(folder) -> dict:
    """A summary for notebooks: per-shard status and bytes, files verified, complete or not."""
    folder = Path(folder)
    plan = read_json(plan_file(folder))
    complete = completeness_problem(folder) is None
    if plan is None:
        return {"folder": str(folder), "plan_id": None, "complete": complete, "shards": [], "bytes_done": 0,
                "bytes_total": 0, "files_total": 0, "files_verified": 0, "checks": {}, "errors": []}
    plan_id, shards = plan["plan_id"], plan["shards"]
    states = shard_states(folder, plan_id, len(shards))
    rows = []
    for index, pieces in enumerate(shards):
        total = sum(end - start for _, start, end in pieces)
        state = states.get(index, {})
        rows.append({"shard": index, "status": state.get("status", "pending"),
                     "bytes_done": state.get("bytes_done", 0), "bytes_total": total,
                     "error": state.get("error"), "updated": state.get("updated")})
    records = [verification(folder, f["path"]) for f in plan["files"]]
    verified = [r for r, f in zip(records, plan["files"]) if record_matches(r, f)]
    errors = [r["error"] for r in rows if r["error"]] + [v["error"] for v in records if v and v.get("error")]
    checks: dict[str, int] = {}
    for record in verified:
        checks[record.get("check", "?")] = checks.get(record.get("check", "?"), 0) + 1
    return {"folder": str(folder), "plan_id": plan_id, "complete": complete, "shards": rows,
            "bytes_done": sum(r["bytes_done"] for r in rows), "bytes_total": sum(r["bytes_total"] for r in rows),
            "files_total": len(plan["files"]), "files_verified": len(verified), "checks": checks,
            "errors": list(dict.fromkeys(errors))}
