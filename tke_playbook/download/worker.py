"""Download one shard of a plan into the final files, resumably, and verify every finished file.

Runs in each Job pod (shard = ``JOB_COMPLETION_INDEX``) and as a local worker process; standard library and
httpx only, so it ships to pods in a ConfigMap beside ``transfer.py``, ``progress.py`` and
``modelfolder.py``. In a pod, httpx comes from the ``pip install`` the Job's command runs first (see
``manifests.worker_command``: PyPI or ``pip_index_url``; a clear message and exit 2 when unreachable).

* Pieces are fetched with HTTP Range requests and written with ``pwrite`` at their offsets into the final file
  (opened without truncation), so several shards fill one large file at the same time.
* After every few MiB the data is synced and ``parts/<index>.json`` records the bytes done: a killed worker
  resumes where its state says, and the state never claims bytes that are not on disk.
* Errors, timeouts and truncated bodies are retried with exponential backoff and jitter, a bounded number of
  times; 401/403/404 fail at once with a message saying what to do.
* A file is hashed by the worker that completes its last piece (each worker records its piece before looking at
  the others, so at least one sees the file complete). A wrong sha256 re-fetches the file once; a second
  mismatch deletes it and fails with a VerificationError naming it.
* Completion: a worker whose shard is done checks all shards; if every one is done it verifies any file not yet
  verified and writes the manifest and the marker. Writers race harmlessly: every write is atomic and identical.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import sys
import time
from pathlib import Path

import httpx

try:
    from . import progress
    from .transfer import CHUNK, DownloadError, HubError, VerificationError, fetch, log, safe_path
    from ..modelfolder import clear_completion, is_complete, read_manifest, write_completion
except ImportError:  # running from the ConfigMap in a download pod
    import progress
    from modelfolder import clear_completion, is_complete, read_manifest, write_completion
    from transfer import CHUNK, DownloadError, HubError, VerificationError, fetch, log, safe_path


class Shard:
    """One shard's pieces and how many bytes of each are on disk (from ``parts/<index>.json``)."""

    def __init__(self, plan: dict, folder: Path, index: int):
        if not 0 <= index < len(plan["shards"]):
            raise DownloadError(f"Shard index {index} is outside the plan's {len(plan['shards'])} shards", obj=index)
        self.plan, self.folder, self.index = plan, folder, index
        self.pieces = [tuple(p) for p in plan["shards"][index]]
        saved = progress.read_json(progress.shard_file(folder, index)) or {}
        known = {(p, s, e): d for p, s, e, d in saved.get("pieces", [])} if saved.get("plan_id") == plan["plan_id"] \
            else {}
        # bytes of a file that has vanished (deleted after a failed verification) are not on disk any more
        self.done = [known.get(p, 0) if (folder / p[0]).exists() else 0 for p in self.pieces]

    def save(self, status: str, error: str | None = None, kind: str | None = None, file=None) -> None:
        progress.write_json(progress.shard_file(self.folder, self.index), {
            "plan_id": self.plan["plan_id"], "index": self.index, "status": status, "error": error, "kind": kind,
            "file": file,
            "host": socket.gethostname(), "updated": time.time(),
            "pieces": [[p, s, e, d] for (p, s, e), d in zip(self.pieces, self.done)],
            "bytes_done": sum(self.done), "bytes_total": sum(e - s for _, s, e in self.pieces)})


def hash_file(path: Path, size: int) -> tuple[str, str]:
    """(sha256, git blob sha1) of a file."""
    sha256, sha1 = hashlib.sha256(), hashlib.sha1(b"blob %d\0" % size)
    with open(path, "rb") as fh:
        while block := fh.read(8 * CHUNK):
            sha256.update(block)
            sha1.update(block)
    return sha256.hexdigest(), sha1.hexdigest()


def _check(folder: Path, f: dict) -> tuple[bool, str, str]:
    """(ok, sha256, how): sha256 when the hub gave one, else the git blob sha1, else the size alone."""
    path = safe_path(folder, f["path"])
    if not path.is_file() or path.stat().st_size != f["size"]:
        return False, "", "size"
    sha256, sha1 = hash_file(path, f["size"])
    if f.get("sha256"):
        return sha256 == f["sha256"].lower(), sha256, "sha256"
    if f.get("blob_id") and len(f["blob_id"]) == 40:
        return sha1 == f["blob_id"].lower(), sha256, "git-sha1"
    return True, sha256, "size-only (the hub listed no hash)"


def verify(client, plan, f: dict, opts) -> None:
    """Hash a finished file; on a mismatch fetch it whole once more, then fail naming it (and delete it)."""
    folder, plan_id = opts.folder, plan["plan_id"]
    ok, sha256, how = _check(folder, f)
    if not ok:
        log(opts.index, f"{f['path']}: {how} mismatch - downloading it again")
        fetch(client, plan, f["path"], 0, f["size"], opts, lambda pos, fd: None)
        ok, sha256, how = _check(folder, f)
    if not ok:
        expected = f.get("sha256") or f.get("blob_id") or f"{f['size']} bytes"
        message = (f"{f['path']} failed verification twice: expected {how} {expected}, got "
                   f"{sha256 or 'a different size'}. The hub or mirror served corrupt data; the file was removed and "
                   f"nothing was marked complete - run the download again")
        safe_path(folder, f["path"]).unlink(missing_ok=True)
        progress.write_json(progress.verified_file(folder, f["path"]),
                            {"plan_id": plan_id, "path": f["path"], "ok": False, "error": message})
        raise VerificationError(message, obj=f["path"])
    progress.write_json(progress.verified_file(folder, f["path"]), {
        "plan_id": plan_id, "path": f["path"], "ok": True, "sha256": sha256, "check": how, "size": f["size"]})
    log(opts.index, f"{f['path']}: verified ({how})")


def _verified(folder, f, plan_id) -> bool:
    record = progress.verification(folder, f["path"], plan_id)
    path = folder / f["path"]
    return bool(record and record.get("ok") and path.is_file() and path.stat().st_size == f["size"])


def file_ready(shard: Shard, path: str) -> bool:
    """Every piece of ``path``, in every shard, is on disk (this shard from memory, others from their state)."""
    plan, states = shard.plan, progress.shard_states(shard.folder, shard.plan["plan_id"], len(shard.plan["shards"]))
    for index, pieces in enumerate(plan["shards"]):
        if index == shard.index:
            done = {p: d for p, d in zip(shard.pieces, shard.done)}
        else:
            done = {(p, s, e): d for p, s, e, d in states.get(index, {}).get("pieces", [])}
        if any(p == path and done.get((p, s, e), -1) < e - s for p, s, e in pieces):
            return False
    return (shard.folder / path).exists()


def finish(client, plan: dict, opts) -> bool:
    """If every shard is done: verify what is not yet verified, write manifest and marker. True when complete."""
    folder, plan_id = opts.folder, plan["plan_id"]
    states = progress.shard_states(folder, plan_id, len(plan["shards"]))
    waiting = [i for i in range(len(plan["shards"])) if states.get(i, {}).get("status") != progress.DONE]
    if waiting:
        log(opts.index, f"shard done; waiting for shard(s) {waiting} to finish before completion")
        return False
    for f in plan["files"]:
        if not _verified(folder, f, plan_id):
            verify(client, plan, f, opts)
    records = {f["path"]: progress.verification(folder, f["path"], plan_id) for f in plan["files"]}
    for path, record in records.items():  # another worker may have failed a file meanwhile
        if not (record and record.get("ok")):
            raise VerificationError((record or {}).get("error") or f"{path} is not verified", obj=path)
    manifest = {"model": plan["model_path"], "source": plan["source"], "repo_id": plan["repo_id"],
                "revision": plan["revision"], "plan_id": plan_id, "completed_at": time.time(),
                "total_bytes": sum(f["size"] for f in plan["files"]),
                "files": [{"path": p, "size": r["size"], "sha256": r["sha256"], "check": r["check"]}
                          for p, r in records.items()]}
    write_completion(folder, manifest)
    log(opts.index, f"all {len(plan['files'])} files verified: wrote the completion marker")
    return True


def run_shard(plan: dict, root, index: int, *, retries=5, backoff=0.5, max_backoff=20.0, timeout=60.0,
              sync_bytes=8 * CHUNK) -> bool:
    """Download and verify shard ``index`` of ``plan`` under ``root``; True if this call completed the model."""
    opts = argparse.Namespace(folder=Path(root) / plan["model_path"], index=index, retries=retries,
                              backoff=backoff, max_backoff=max_backoff)
    folder = opts.folder
    if is_complete(folder):
        if read_manifest(folder).get("plan_id") == plan["plan_id"]:
            log(index, "model already complete for this plan")
            return False
        clear_completion(folder)
    progress.write_json(progress.plan_file(folder), plan)
    shard = Shard(plan, folder, index)
    shard.save(progress.RUNNING)
    limits = httpx.Timeout(timeout, connect=min(timeout, 15.0))
    try:
        with httpx.Client(timeout=limits, follow_redirects=True) as client:
            for i, (path, start, end) in enumerate(shard.pieces):
                if shard.done[i] < end - start or not (folder / path).exists():
                    state = {"synced": start + shard.done[i], "at": time.monotonic(), "said": time.monotonic()}

                    def on_progress(pos, fd, i=i, start=start, state=state):
                        now = time.monotonic()
                        if pos - state["synced"] >= sync_bytes or now - state["at"] > 1.0:
                            os.fsync(fd)
                            shard.done[i], state["synced"], state["at"] = pos - start, pos, now
                            shard.save(progress.RUNNING)
                        if now - state["said"] > 15:  # a line for kubectl logs now and then
                            state["said"] = now
                            total = sum(e - s for _, s, e in shard.pieces)
                            log(index, f"{sum(shard.done) / max(total, 1):.0%} of {total / 1e9:.2f} GB")

                    fetch(client, plan, path, start + shard.done[i], end, opts, on_progress)
                    shard.done[i] = end - start
                    shard.save(progress.RUNNING)
                    log(index, f"{path} bytes {start}-{end} done")
                f = next(f for f in plan["files"] if f["path"] == path)
                if file_ready(shard, path) and not _verified(folder, f, plan["plan_id"]):
                    verify(client, plan, f, opts)
            shard.save(progress.DONE)
            return finish(client, plan, opts)
    except OSError as exc:  # the volume, not the hub: full, read-only, gone
        error = DownloadError(f"Writing into {folder} failed: {exc}. Check that the PVC is mounted, writable and "
                              f"has room for {sum(f['size'] for f in plan['files']) / 1e9:.2f} GB", obj=str(folder))
        shard.save(progress.FAILED, str(error), "download")
        raise error from exc
    except DownloadError as exc:
        kind = "verification" if isinstance(exc, VerificationError) else "hub" if isinstance(exc, HubError) \
            else "download"
        shard.save(progress.FAILED, str(exc), kind, exc.obj if isinstance(exc.obj, str) else None)
        raise


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Download one shard of a tke-playbook plan.")
    parser.add_argument("--plan", required=True, help="plan JSON file")
    parser.add_argument("--root", required=True, help="PVC root; the model goes to <root>/<model_path>")
    parser.add_argument("--index", type=int, default=None, help="shard (default $JOB_COMPLETION_INDEX)")
    parser.add_argument("--retries", type=int, default=int(os.environ.get("TKE_DOWNLOAD_RETRIES", 5)))
    parser.add_argument("--backoff", type=float, default=float(os.environ.get("TKE_DOWNLOAD_BACKOFF", 0.5)))
    parser.add_argument("--timeout", type=float, default=float(os.environ.get("TKE_DOWNLOAD_TIMEOUT", 60)))
    args = parser.parse_args(argv)
    index = args.index if args.index is not None else int(os.environ.get("JOB_COMPLETION_INDEX", "0"))
    plan = json.loads(Path(args.plan).read_text(encoding="utf-8"))
    try:
        run_shard(plan, args.root, index, retries=args.retries, backoff=args.backoff, timeout=args.timeout)
    except DownloadError as exc:
        print(f"[shard {index}] FAILED: {exc}", file=sys.stderr, flush=True)
        return 3 if isinstance(exc, VerificationError) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
