"""Download state on the shared volume: per-shard progress files, per-file verification records, a summary.

Layout under ``<model folder>/.tke-playbook/``: ``plan.json`` (the plan being run), ``parts/<index>.json`` (one
per shard: status, bytes done per piece - written only after the bytes are synced, so it never over-claims) and
``verified/<key>.json`` (one per verified file). Every write is atomic (temp file + rename). Standard library
only: this module is shipped to download pods beside the worker.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

try:
    from ..modelfolder import STATE_DIR, is_complete, read_manifest
except ImportError:  # running from the ConfigMap in a download pod
    from modelfolder import STATE_DIR, is_complete, read_manifest

RUNNING, DONE, FAILED = "running", "done", "failed"


def state_dir(folder) -> Path:
    return Path(folder) / STATE_DIR


def plan_file(folder) -> Path:
    return state_dir(folder) / "plan.json"


def shard_file(folder, index: int) -> Path:
    return state_dir(folder) / "parts" / f"{int(index)}.json"


def verified_file(folder, rel_path: str) -> Path:
    key = hashlib.sha1(rel_path.encode()).hexdigest()[:20]
    return state_dir(folder) / "verified" / f"{key}.json"


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


def shard_states(folder, plan_id: str, count: int) -> dict[int, dict]:
    """The state of every shard that has one for plan ``plan_id``."""
    states = {}
    for index in range(count):
        state = read_json(shard_file(folder, index))
        if state and state.get("plan_id") == plan_id:
            states[index] = state
    return states


def verification(folder, rel_path: str, plan_id: str) -> dict | None:
    """The verification record of a file for this plan, if it was verified (ok or not)."""
    record = read_json(verified_file(folder, rel_path))
    return record if record and record.get("plan_id") == plan_id else None


def read_progress(folder) -> dict:
    """A summary for notebooks: per-shard status and bytes, files verified, complete or not."""
    folder = Path(folder)
    plan = read_json(plan_file(folder))
    complete = is_complete(folder)
    if plan is None:
        return {"folder": str(folder), "plan_id": None, "complete": complete, "shards": [], "bytes_done": 0,
                "bytes_total": 0, "files_total": 0, "files_verified": 0, "errors": []}
    plan_id, shards = plan["plan_id"], plan["shards"]
    if complete:
        complete = read_manifest(folder).get("plan_id") == plan_id
    states = shard_states(folder, plan_id, len(shards))
    rows = []
    for index, pieces in enumerate(shards):
        total = sum(end - start for _, start, end in pieces)
        state = states.get(index, {})
        rows.append({"shard": index, "status": state.get("status", "pending"),
                     "bytes_done": state.get("bytes_done", 0), "bytes_total": total,
                     "error": state.get("error"), "updated": state.get("updated")})
    verified = [verification(folder, f["path"], plan_id) for f in plan["files"]]
    errors = [r["error"] for r in rows if r["error"]] + [v["error"] for v in verified if v and not v.get("ok")]
    return {"folder": str(folder), "plan_id": plan_id, "complete": complete, "shards": rows,
            "bytes_done": sum(r["bytes_done"] for r in rows), "bytes_total": sum(r["bytes_total"] for r in rows),
            "files_total": len(plan["files"]), "files_verified": sum(1 for v in verified if v and v.get("ok")),
            "errors": list(dict.fromkeys(errors))}
