"""Download (or adopt, or trust) one shard of a model into its folder, verified and non-destructive.

One code path for both targets: each Job pod runs this file from the worker ConfigMap (shard =
``JOB_COMPLETION_INDEX``), and the local target runs the same files as processes. Standard library only, so pods
install nothing.

* The plan: the ConfigMap's ``plan.json`` carries the request (model, repository, revision, include/exclude,
  shards) and, when the plan was rendered with the listing, the plan itself. Without it the pod lists the hub
  itself; the first pod of a Job run to list pins its listing in the state (``listing/<run>.json``), so every
  index computes the same byte-balanced plan from the same files and commit. The listing is validated
  (:mod:`rules`) before any byte is written.
* Kept, never re-fetched: a file whose bytes already match its listed size and hash (sha256 for LFS files and
  ModelScope, the git blob sha1 for Hugging Face's other files), whatever endpoint, shard split or worker count
  made it. A file with no listed hash is fetched only if the user allowed unverified files.
* New bytes go to ``partial/`` in the state (outside the model folder) with HTTP Range requests, several shards
  filling one file at once; ``parts/<index>.json`` records synced bytes, so a killed worker resumes.
* A file is verified when its last piece lands; a mismatch fetches it once more, a second one fails naming it.
  Verified bytes stay staged in ``partial/`` until every file of the plan verified; only then is the completion
  marker removed and are the replacements moved in, so a failed or killed rerun leaves a complete model complete
  (never a mixture of two versions). The last shard to finish swaps them in and writes the manifest (with each
  file's check) and the marker.
* Workers started by the local target die with their parent (``PR_SET_PDEATHSIG`` and a parent watch).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import signal
import socket
import stat
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

try:
    from . import progress
    from .hubapi import describe, list_files
    from .modelfolder import (TRUSTED, clear_completion, completeness_problem, hash_fd, hash_file, marker_path,
                              open_in_folder, os_problem, read_manifest, write_completion)
    from .planner import DownloadPlan, make_plan, request_of, require_plan_hashes
    from .rules import CHECK_NONE, CHECK_SHA1, CHECK_SHA256, check_listing, path_problem
    from .transfer import (CHUNK, DownloadError, HubError, InvalidSpecError, VerificationError, endpoint_for, env_token,
                           fetch, file_url, log, open_for_write, request_headers, safe_path)
except ImportError:  # running from the ConfigMap in a download pod
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # its files, also under python -I (safe path)
    import progress
    from hubapi import describe, list_files
    from modelfolder import (TRUSTED, clear_completion, completeness_problem, hash_fd, hash_file, marker_path,
                             open_in_folder, os_problem, read_manifest, write_completion)
    from planner import DownloadPlan, make_plan, request_of, require_plan_hashes
    from rules import CHECK_NONE, CHECK_SHA1, CHECK_SHA256, check_listing, path_problem
    from transfer import (CHUNK, DownloadError, HubError, InvalidSpecError, VerificationError, endpoint_for, env_token,
                          fetch, file_url, log, open_for_write, request_headers, safe_path)

DOWNLOAD, ADOPT, TRUST = "download", "adopt", "trust"
PR_SET_PDEATHSIG = 1


# --- dying with the parent --------------------------------------------------------------------------------


def die_with_parent(parent_pid: int | None) -> None:
    """Exit when ``parent_pid`` is gone: the kernel's PR_SET_PDEATHSIG on Linux, and a watch thread anywhere."""
    if not parent_pid:
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # not Linux: the watch below still ends us within a second

    def watch():
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(1)

    if os.getppid() != parent_pid:  # the parent died before we asked
        os._exit(1)
    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


# --- the plan ---------------------------------------------------------------------------------------------


def _endpoint(plan_or_request: dict, opts: Options) -> str:
    return endpoint_for(plan_or_request["source"], opts.endpoint or plan_or_request.get("endpoint"))


def _where(req: dict, endpoint: str, revision: str) -> str:
    return describe(req["source"], endpoint, req["repo_id"], revision)


def load_plan(doc: dict, root: Path, opts: Options) -> DownloadPlan:
    """The plan from ``doc`` (re-validated), else from the listing pinned for this run, else from the hub."""
    if doc.get("plan"):
        plan = DownloadPlan.from_dict(doc["plan"])
        where = _where(doc["plan"], _endpoint(doc["plan"], opts), plan.revision)
        files = check_listing([f.as_dict() for f in plan.files], where)
        if tuple(files) != tuple(sorted(plan.files, key=lambda f: f.path)):
            raise HubError("The plan's files changed under validation", obj=plan.model_path)
        return require_plan_hashes(plan, where)
    req = request_of(doc["request"])
    endpoint = _endpoint(req, opts)
    folder = model_folder(root, req["model_path"])
    pin = progress.listing_file(folder, opts.run_id)
    pinned = progress.read_json(pin)
    if pinned is None:
        files, resolved = list_files(req["source"], req["repo_id"], req["revision"], endpoint,
                                     opts.token or env_token(req["source"]))
        require_plan_hashes(make_plan(req, files, endpoint=endpoint, revision=resolved),
                            _where(req, endpoint, req["revision"]))
        pinned = _pin(pin, {"revision": resolved, "files": [f.as_dict() for f in files]})
    files = check_listing(pinned["files"], _where(req, endpoint, pinned["revision"]))
    return require_plan_hashes(make_plan(req, files, endpoint=endpoint, revision=pinned["revision"]),
                               _where(req, endpoint, pinned["revision"]))


def _pin(path: Path, listing: dict) -> dict:
    """Store this run's listing unless another pod stored one first; either way return the stored one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(listing), encoding="utf-8")
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return progress.read_json(path) or listing


def model_folder(root, model_path: str) -> Path:
    problem = path_problem(model_path)
    if problem:
        raise DownloadError(f"Model path {model_path!r} has {problem}", obj=model_path)
    return Path(root) / model_path


# --- files: kept, verified, replaced ------------------------------------------------------------------------


def check_of(f: dict) -> str:
    return CHECK_SHA256 if f.get("sha256") else CHECK_SHA1 if f.get("blob_id") else CHECK_NONE


def matches(f: dict, sha256: str, sha1: str) -> bool:
    if f.get("sha256"):
        return sha256 == f["sha256"]
    if f.get("blob_id"):
        return sha1 == f["blob_id"]
    return True  # no hash listed and the user allowed it: the size was checked


def _stat_key(path: Path) -> list[int]:
    st = os.stat(path, follow_symlinks=False)
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def _record(folder: Path, f: dict, sha256: str, sha1: str, check: str, where: Path | None = None) -> None:
    """Our record of a verified file: its hashes and the stat of ``where`` (the file in the folder, or its staged
    replacement in ``partial/``, which keeps that stat when it is moved into place)."""
    where = safe_path(folder, f["path"]) if where is None else where
    progress.write_json(progress.verified_file(folder, f["path"]), {
        "path": f["path"], "ok": True, "size": f["size"], "sha256": sha256, "git_sha1": sha1, "check": check,
        "stat": _stat_key(where)}, sync=False)  # the bytes were synced before: losing this only means re-hashing


def staged(folder: Path, f: dict) -> bool:
    """A verified replacement of ``f`` waits in ``partial/`` for every other file to verify."""
    part = progress.partial_file(folder, f)
    record = progress.verification(folder, f["path"])
    try:
        return progress.record_matches(record, f) and record.get("stat") == _stat_key(part)
    except FileNotFoundError:
        return False


def _known_mismatch(record, final: Path, f: dict) -> bool:
    """Our own record of the very file on disk (same stat) gives hashes that are not the listed ones."""
    if not record or not record.get("ok") or record.get("stat") != _stat_key(final):
        return False
    return bool((f.get("sha256") and record.get("sha256") and record["sha256"] != f["sha256"])
                or (f.get("blob_id") and record.get("git_sha1") and record["git_sha1"] != f["blob_id"]))


def file_good(folder: Path, f: dict) -> bool:
    """The file in the model folder already has the listed size and hash (trusting our own record of it while
    its size, mtime and inode are unchanged)."""
    final = safe_path(folder, f["path"])
    try:
        st = os.stat(final, follow_symlinks=False)
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(st.st_mode) or st.st_size != f["size"]:
        return False
    record = progress.verification(folder, f["path"])
    if progress.record_matches(record, f) and record.get("stat") == _stat_key(final):
        return True
    if check_of(f) == CHECK_NONE or _known_mismatch(record, final, f) or staged(folder, f):
        return False  # nothing to compare with, our record already says no, or a verified replacement waits
    try:
        sha256, sha1 = hash_file(final, f["size"])
    except OSError:  # replaced meanwhile by a folder, a FIFO or a symlink: not good (and never waited on)
        return False
    if not matches(f, sha256, sha1):
        return False
    _record(folder, f, sha256, sha1, check_of(f))
    return True


def _expected(f: dict) -> str:
    return f.get("sha256") or f.get("blob_id") or f"{f['size']} bytes"


class Durability:
    """Verification records of files fetched without their own fsync, held until their bytes are durable.

    A record says "these staged bytes are verified" and is trusted on a rerun without hashing again, so it may
    only exist once the bytes are on stable storage. One fsync per small file made a 20,000-file model crawl;
    instead the records wait here and :meth:`flush` makes the whole file system durable once (``syncfs``) for
    up to :data:`BATCH` files or :data:`EVERY_S` seconds, then writes them. A crash before that loses only
    records: the bytes are hashed again."""

    BATCH = 512
    EVERY_S = 1.0

    def __init__(self, folder: Path):
        self.folder, self.waiting, self.since = folder, [], time.monotonic()

    def add(self, f: dict, sha256: str, sha1: str, where: Path) -> None:
        self.waiting.append((f, sha256, sha1, where))
        if len(self.waiting) >= self.BATCH or time.monotonic() - self.since >= self.EVERY_S:
            self.flush()

    def flush(self) -> None:
        if self.waiting:
            sync_file_system(progress.tracking_dir(self.folder))
            for f, sha256, sha1, where in self.waiting:
                _record(self.folder, f, sha256, sha1, check_of(f), where=where)
            self.waiting.clear()
        self.since = time.monotonic()


def _sync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_file_system(path: Path) -> None:
    """Make every write to the file system holding ``path`` durable: syncfs(2) on Linux, else sync(2)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        os.sync()
        return
    try:
        if getattr(ctypes.CDLL(None, use_errno=True), "syncfs", lambda fd: -1)(fd) != 0:
            os.sync()
    except OSError:
        os.sync()
    finally:
        os.close(fd)


def finalize(plan: dict, f: dict, opts: Options, durable: Durability | None = None) -> bool:
    """Verify the gathered bytes of ``f``; fetch them whole once more on a mismatch. Verified bytes stay in
    ``partial/`` (staged): :func:`swap_in` moves them into the folder only once every file of the plan verified,
    so a failed run never leaves a mixture of old and new files. True when this call verified them (False: they
    were verified already). With ``durable`` the record waits there until the bytes are synced."""
    folder = opts.folder
    if staged(folder, f):
        return False
    part = progress.partial_file(folder, f)
    sha256, sha1 = hash_file(part, f["size"])
    if not matches(f, sha256, sha1):
        log(opts.index, f"{f['path']}: {check_of(f)} mismatch - downloading it again")
        fetch_file(plan, f, 0, f["size"], opts, lambda pos, fd: None)
        sha256, sha1 = hash_file(part, f["size"])
    if not matches(f, sha256, sha1):
        part.unlink(missing_ok=True)
        message = (f"{f['path']} failed verification twice: expected {check_of(f)} {_expected(f)}, got "
                   f"{sha1 if check_of(f) == CHECK_SHA1 else sha256}. The hub or mirror served corrupt data; "
                   f"nothing was replaced (the folder keeps its previous files and completion state) - run the "
                   f"download again, or use another endpoint")
        progress.write_json(progress.verified_file(folder, f["path"]), {"path": f["path"], "ok": False,
                                                                         "error": message})
        raise VerificationError(message, obj=f["path"])
    if durable is not None:
        durable.add(f, sha256, sha1, part)
    else:
        _sync(part)  # bytes fetched earlier, maybe by a worker that died before syncing them
        _record(folder, f, sha256, sha1, check_of(f), where=part)
    if f["size"] >= QUIET_BELOW:
        log(opts.index, f"{f['path']}: verified ({check_of(f)}); staged until every file is verified")
    return True


def swap_in(plan: dict, files: list[dict], opts: Options) -> None:
    """Move verified replacements into the folder, clearing the completion marker just before."""
    folder = opts.folder
    files = [f for f in files if progress.partial_file(folder, f).exists()]  # not yet moved by another shard
    if files and marker_path(folder).exists():
        clear_completion(folder)
        log(opts.index, f"every file verified: replacing {len(files)} file(s) (completion marker cleared meanwhile)")
    made = set()
    for f in files:
        final = safe_path(folder, f["path"])
        if final.parent not in made:
            final.parent.mkdir(parents=True, exist_ok=True)
            made.add(final.parent)
        try:
            os.replace(progress.partial_file(folder, f), final)  # keeps the stat our staged record holds
        except FileNotFoundError:  # another shard moved it first
            if not file_good(folder, f):
                raise


def fetch_file(plan: dict, f: dict, start: int, end: int, opts: Options, on_progress, *, sync: bool = True) -> None:
    """Fetch bytes [start, end) of ``f`` into its partial file; ``sync=False`` leaves the final fsync to the
    caller (a :class:`Durability` batch)."""
    url = file_url(plan["source"], _endpoint(plan, opts), plan["repo_id"], plan["revision"], f["path"])
    fd = open_for_write(progress.partial_file(opts.folder, f), f["size"])
    try:
        fetch(url, request_headers(plan["source"], opts.token), fd, start, end, f["size"], opts, f["path"],
              plan["revision"], on_progress, sync=sync)
    finally:
        os.close(fd)


# --- one shard --------------------------------------------------------------------------------------------


SAVE_EVERY_S = 0.25  # a shard's small state at most this often while it runs (readers poll twice a second)
PIECES_EVERY_S = 2.0  # its list of pieces (what a restarted worker resumes from) at most this often
QUIET_BELOW = 1 << 20  # pieces smaller than this get no log line of their own: a 20,000-file model stays readable


def shared_paths(shards: list, index: int) -> set:
    """The paths shard ``index`` shares with another shard (files cut into byte ranges across shards)."""
    holders: dict[str, set] = {}
    for i, pieces in enumerate(shards):
        for p in pieces:
            holders.setdefault(p[0], set()).add(i)
    return {p for p, where in holders.items() if len(where) > 1 and index in where}


class Shard:
    """One shard's pieces and how many bytes of each are on disk, and how many files it verified.

    Its state is two files, so that progress costs the same for 20 files or 20,000: ``parts/<index>.json`` (small,
    written often: status, bytes, files verified by check, and the pieces of files split across shards, which
    the other shards wait on) and ``parts/<index>.pieces.json`` (every piece and its bytes on disk, what a
    restarted worker resumes from; written at most every :data:`PIECES_EVERY_S` and at the end). Both only
    under-claim: bytes are synced before they are recorded."""

    def __init__(self, plan: dict, folder: Path, index: int, run_id: str):
        self.plan, self.folder, self.index, self.run_id = plan, folder, index, run_id
        self.files = {f["path"]: f for f in plan["files"]}
        self.pieces = [tuple(p) for p in plan["shards"][index]] if index < len(plan["shards"]) else []
        self.shared = shared_paths(plan["shards"], index)
        self.by_path: dict[str, list[int]] = {}
        for i, (p, _, _) in enumerate(self.pieces):
            self.by_path.setdefault(p, []).append(i)
        self.shared_pieces = [i for i, (p, _, _) in enumerate(self.pieces) if p in self.shared]
        self.done = self._bytes_on_disk(self._saved_pieces())
        self.total = sum(e - s for _, s, e in self.pieces)
        self.verified, self.checks = 0, {}
        self._saved_at = self._pieces_at = float("-inf")

    def _bytes_on_disk(self, known: dict) -> list[int]:
        """Each piece's saved byte count, 0 where its partial file is gone (verified and moved, or removed after a
        failure): those bytes are not there."""
        return [known.get(p, 0) if known.get(p) and progress.partial_file(self.folder, self.files[p[0]]).exists()
                else 0 for p in self.pieces]

    def _saved_pieces(self) -> dict:
        for path in (progress.pieces_file(self.folder, self.index), progress.shard_file(self.folder, self.index)):
            saved = progress.read_json(path) or {}
            if saved.get("plan_id") == self.plan["plan_id"] and isinstance(saved.get("pieces"), list):
                return {(p, s, e): d for p, s, e, d in saved["pieces"]}
        return {}

    def count(self, f: dict) -> None:
        """``f`` verified (or found verified) in this run: the counters progress shows, kept per shard."""
        self.verified += 1
        self.checks[check_of(f)] = self.checks.get(check_of(f), 0) + 1

    def save(self, status: str, error: str | None = None, kind: str | None = None, file=None, *,
             force: bool = False) -> None:
        """Record the shard's state: always (with the pieces list) when ``force`` or the status is not 'running',
        else at most every :data:`SAVE_EVERY_S` (the pieces list at most every :data:`PIECES_EVERY_S`)."""
        now = time.monotonic()
        final = force or status != progress.RUNNING
        if not final and now - self._saved_at < SAVE_EVERY_S:
            return
        plan_id = self.plan["plan_id"]
        if final or now - self._pieces_at >= PIECES_EVERY_S:
            progress.write_json(progress.pieces_file(self.folder, self.index), {
                "plan_id": plan_id, "run": self.run_id,
                "pieces": [[p, s, e, d] for (p, s, e), d in zip(self.pieces, self.done)]}, sync=False)
            self._pieces_at = now
        shared = [[*self.pieces[i], self.done[i]] for i in self.shared_pieces]
        progress.write_json(progress.shard_file(self.folder, self.index), {
            "plan_id": plan_id, "run": self.run_id, "index": self.index, "status": status, "error": error,
            "kind": kind, "file": file, "host": socket.gethostname(), "updated": time.time(), "shared": shared,
            "bytes_done": sum(self.done), "bytes_total": self.total, "files_verified": self.verified,
            "checks": self.checks}, sync=False)
        self._saved_at = now


def file_ready(shard: Shard, path: str) -> bool:
    """Every piece of ``path``, in every shard, is on disk (this shard from memory, others from their state:
    read only for files split across shards)."""
    pieces = shard.pieces
    if any(shard.done[i] < pieces[i][2] - pieces[i][1] for i in shard.by_path.get(path, ())):
        return False
    if path in shard.shared:
        plan = shard.plan
        states = progress.shard_states(shard.folder, plan["plan_id"], len(plan["shards"]), shard.run_id)
        for index, theirs in enumerate(plan["shards"]):
            if index == shard.index:
                continue
            done = {(p, s, e): d for p, s, e, d in states.get(index, {}).get("shared", [])}
            if any(p == path and done.get((p, s, e), -1) < e - s for p, s, e in theirs):
                return False
    return progress.partial_file(shard.folder, shard.files[path]).exists()


def _fetch_piece(shard: Shard, i: int, opts: Options, *, sync: bool = True) -> None:
    path, start, end = shard.pieces[i]
    state = {"synced": start + shard.done[i], "at": time.monotonic(), "said": time.monotonic()}

    def on_progress(pos, fd):
        now = time.monotonic()
        if pos - state["synced"] >= opts.sync_bytes or now - state["at"] > 1.0:
            os.fsync(fd)
            shard.done[i], state["synced"], state["at"] = pos - start, pos, now
            shard.save(progress.RUNNING, force=True)  # at most once a second: what a killed worker resumes from
        if now - state["said"] > 15:  # a line for kubectl logs now and then
            state["said"] = now
            log(shard.index, f"{sum(shard.done) / max(shard.total, 1):.0%} of {shard.total / 1e9:.2f} GB")

    fetch_file(shard.plan, shard.files[path], start + shard.done[i], end, opts, on_progress, sync=sync)
    shard.done[i] = end - start
    shard.save(progress.RUNNING, force=path in shard.shared)  # the other shards of this file wait for it
    if end - start >= QUIET_BELOW:
        log(shard.index, f"{path} bytes {start}-{end} done")


def _run_pieces(shard: Shard, opts: Options) -> None:
    durable = Durability(opts.folder)
    try:
        _each_piece(shard, opts, durable)
    except BaseException:
        with contextlib.suppress(OSError):  # keep what verified; the error that stopped us is the one to report
            durable.flush()
        raise
    durable.flush()


def _each_piece(shard: Shard, opts: Options, durable: Durability) -> None:
    folder = opts.folder
    for i, (path, start, end) in enumerate(shard.pieces):
        f = shard.files[path]
        if file_good(folder, f) or staged(folder, f):  # kept, or verified in an earlier run (maybe with another
            if shard.done[i] < end - start and f["size"] >= QUIET_BELOW:  # split) and waiting to be swapped in
                log(shard.index, f"{path}: already verified ({check_of(f)}): kept")
            shard.done[i] = end - start
            if start == 0:  # each file is counted once: by the shard holding its first byte
                shard.count(f)
            shard.save(progress.RUNNING)
            continue
        if shard.done[i] < end - start or not progress.partial_file(folder, f).exists():
            # a file fetched whole by this shard is synced with others in a batch; a shared one here and now
            _fetch_piece(shard, i, opts, sync=path in shard.shared)
        if file_ready(shard, path) and finalize(shard.plan, f, opts, durable):
            shard.count(f)
            shard.save(progress.RUNNING)


def _manifest(plan: dict, folder: Path, mode: str) -> dict:
    entries = []
    for f in plan["files"]:
        record = progress.verification(folder, f["path"]) or {}
        entries.append({"path": f["path"], "size": f["size"], "sha256": record.get("sha256"),
                        "git_sha1": record.get("git_sha1"), "check": record.get("check", check_of(f))})
    return {"format": 2, "model": plan["model_path"], "source": plan["source"], "repo_id": plan["repo_id"],
            "revision": plan["revision"], "requested_revision": plan.get("requested_revision"), "mode": mode,
            "total_bytes": sum(f["size"] for f in plan["files"]), "files": entries}


def _complete(folder: Path, manifest: dict) -> None:
    """Write manifest and marker unless the folder already carries exactly this manifest."""
    if completeness_problem(folder) is None and read_manifest(folder) == manifest:
        return
    write_completion(folder, manifest)


def _drop_stale_partials(folder: Path, plan: dict) -> None:
    """Once complete, bytes gathered for files this plan does not hold (an older listing) are of no use."""
    keep = {progress.partial_file(folder, f).name for f in plan["files"]}
    where = progress.tracking_dir(folder) / "partial"
    for path in where.iterdir() if where.is_dir() else ():
        if path.name not in keep:
            path.unlink(missing_ok=True)


def _stage_all(plan: dict, opts: Options, on_verified=None) -> list[dict]:
    """Verify every file not yet good in the folder; the staged replacements to swap in. ``on_verified(f)`` for
    each file verified here (not before)."""
    durable = Durability(opts.folder)
    try:
        replacements = _stage_each(plan, opts, on_verified, durable)
    except BaseException:
        with contextlib.suppress(OSError):
            durable.flush()
        raise
    durable.flush()  # every record written, its bytes durable, before the manifest is made from the records
    return replacements


def _stage_each(plan: dict, opts: Options, on_verified, durable: Durability) -> list[dict]:
    folder, replacements = opts.folder, []
    for f in plan["files"]:
        if file_good(folder, f):
            continue
        try:
            if finalize(plan, f, opts, durable) and on_verified is not None:
                on_verified(f)
        except FileNotFoundError:  # no bytes gathered, or another finishing shard moved them in meanwhile
            if file_good(folder, f):
                continue
            record = progress.verification(folder, f["path"]) or {}
            raise (VerificationError if record.get("error") else DownloadError)(
                record.get("error") or f"{f['path']} is neither on disk nor being downloaded: run the download "
                                       f"again", obj=f["path"]) from None
        replacements.append(f)
    return replacements


def finish_download(plan: dict, opts: Options, mode: str = DOWNLOAD, on_verified=None) -> bool:
    """If every shard is done: verify what is not yet verified (``on_verified(f)`` for each), write manifest and
    marker. True when complete."""
    folder = opts.folder
    states = progress.shard_states(folder, plan["plan_id"], len(plan["shards"]), opts.run_id)
    waiting = [i for i in range(len(plan["shards"])) if states.get(i, {}).get("status") != progress.DONE]
    if waiting:
        log(opts.index, f"shard done; waiting for shard(s) {waiting} to finish before completion")
        return False
    swap_in(plan, _stage_all(plan, opts, on_verified), opts)
    _complete(folder, _manifest(plan, folder, mode))
    _drop_stale_partials(folder, plan)
    checks = {}
    for f in plan["files"]:
        checks[check_of(f)] = checks.get(check_of(f), 0) + 1
    said = ", ".join(f"{n} by {c}" for c, n in checks.items())
    log(opts.index, f"all {len(plan['files'])} files verified ({said}): wrote the completion marker")
    return True


def _adopt_problem(folder: Path, f: dict) -> str:
    where = safe_path(folder, f["path"])
    if not where.exists():
        return "is missing"
    if where.is_symlink() or not where.is_file():
        return "is not a regular file"
    if where.stat().st_size != f["size"]:
        return f"has {where.stat().st_size} bytes, the hub lists {f['size']}"
    return f"does not match the hub's {check_of(f)} {_expected(f)}"


def adopt(plan: dict, opts: Options) -> bool:
    """Files already in the folder (fetched by other means): check each against the listing, fetch nothing."""
    folder = opts.folder
    for f in plan["files"]:
        if not file_good(folder, f):
            raise VerificationError(f"{f['path']} {_adopt_problem(folder, f)} in {folder}: adopting fetches nothing "
                                    f"and writes no marker; run the download (it keeps every intact file) or adopt "
                                    f"with --trust-files", obj=f["path"])
    _complete(folder, _manifest(plan, folder, ADOPT))
    log(opts.index, f"adopted {len(plan['files'])} files checked against the hub: wrote the completion marker")
    return True


def _untrustable(folder: Path, rel: str, what: str) -> InvalidSpecError:
    return InvalidSpecError(f"{rel!r} in {folder} {what}: trusting records only plain files inside the model folder "
                            f"(nothing a link points to); copy the real files into its place or remove it, then "
                            f"trust the folder again", field="folder", value=rel, obj=rel)


def _trusted_entry(folder: Path, rel: str) -> dict:
    if path_problem(rel):
        raise _untrustable(folder, rel, f"has a name a model file cannot have ({path_problem(rel)})")
    try:
        fd, st = open_in_folder(folder, rel)
    except OSError as exc:
        raise _untrustable(folder, rel, os_problem(exc)) from None
    try:
        sha256, sha1, got = hash_fd(fd, st.st_size)
    finally:
        os.close(fd)
    if got != st.st_size:
        raise DownloadError(f"{rel} in {folder} changed while it was hashed: trust the folder again once nothing "
                            f"writes to it", obj=rel)
    return {"path": rel, "size": st.st_size, "sha256": sha256, "git_sha1": sha1, "check": TRUSTED}


def trust(folder: Path, opts: Options) -> bool:
    """The explicit opt-out: record the files present, hashed, as trusted without a hub listing. Only plain files
    and folders count: a symlink (to a file or a folder), a FIFO or a device is refused, never skipped."""
    entries = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in dirnames:
            if os.path.islink(os.path.join(dirpath, name)):  # os.walk lists a symlinked folder, never enters it
                rel = (Path(dirpath) / name).relative_to(folder).as_posix()
                raise _untrustable(folder, rel, "is a symlinked folder")
        for name in sorted(filenames):
            entries.append(_trusted_entry(folder, (Path(dirpath) / name).relative_to(folder).as_posix()))
    if not entries:
        raise DownloadError(f"{folder} holds no files to trust: download the model first", obj=str(folder))
    _complete(folder, {"format": 2, "model": opts.model_path, "source": None, "repo_id": None, "revision": None,
                       "mode": TRUST, "total_bytes": sum(e["size"] for e in entries), "files": entries})
    log(opts.index, f"trusted {len(entries)} files without a hub check: wrote the completion marker")
    return True


def _fail(shard: Shard, exc: BaseException) -> None:
    kind = "verification" if isinstance(exc, VerificationError) else "hub" if isinstance(exc, HubError) \
        else "download"
    shard.save(progress.FAILED, str(exc), kind, exc.obj if isinstance(getattr(exc, "obj", None), str) else None)


def run_plan(plan: dict, opts: Options) -> bool:
    """Fetch and verify shard ``opts.index`` of ``plan``; True if this call completed the model."""
    folder = opts.folder
    folder.mkdir(parents=True, exist_ok=True)
    progress.write_json(progress.plan_file(folder), plan)
    shard = Shard(plan, folder, opts.index, opts.run_id)
    shard.save(progress.RUNNING)
    try:
        _run_pieces(shard, opts)
        shard.save(progress.DONE)
        verified = shard.verified
        complete = finish_download(plan, opts, on_verified=shard.count)
        if shard.verified != verified:  # files this shard verified while completing
            shard.save(progress.DONE)
        return complete
    except OSError as exc:  # the volume, not the hub: full, read-only, gone
        error = DownloadError(f"Writing into {folder} failed: {exc}. Check that the PVC is mounted, writable and "
                              f"has room for {sum(f['size'] for f in plan['files']) / 1e9:.2f} GB", obj=str(folder))
        _fail(shard, error)
        raise error from exc
    except DownloadError as exc:
        _fail(shard, exc)
        raise
    except KeyboardInterrupt:  # Ctrl-C reaches the workers too: record the synced bytes, so a rerun resumes there
        with contextlib.suppress(OSError):
            shard.save(progress.FAILED, "stopped by Ctrl-C: run the download again to resume", "download")
        raise


@dataclass
class Options:
    """How one worker runs: its shard (``index``; 'final' for the completion step), the model folder, the retry
    policy and timeout of each request, the hub endpoint and token overrides, and the run it belongs to."""

    folder: Path
    model_path: str | None  # None: trusting a folder without a spec
    index: int | str = 0
    retries: int = 5
    backoff: float = 0.5
    max_backoff: float = 20.0
    timeout: float = 60.0
    sync_bytes: int = 8 * CHUNK
    endpoint: str | None = None
    token: str | None = None
    run_id: str = "local"


def options(root, index, model_path: str | None, *, folder=None, **kw) -> Options:
    """The options of a worker for shard ``index`` writing ``<root>/<model_path>`` (or ``folder``)."""
    return Options(folder=Path(folder) if folder is not None else model_folder(root, model_path),
                   model_path=model_path, index=index, **kw)


def complete(plan: dict, root, *, run_id: str, token: str | None = None, retries: int = 3,
             max_backoff: float = 5.0) -> bool:
    """The completion step on its own, as the last shard runs it: when every shard of ``run_id`` is done, verify
    what is not yet verified, swap the replacements in and write manifest and marker. True when complete."""
    opts = options(root, "final", plan["model_path"], retries=retries, max_backoff=max_backoff, token=token,
                   run_id=run_id)
    return finish_download(plan, opts)


def run(doc: dict, root, index: int, mode: str = DOWNLOAD, **kw) -> bool:
    """Everything one worker does: plan (listing the hub if needed), then download, adopt or trust."""
    req = doc.get("plan") or doc["request"]
    opts = options(root, index, req["model_path"], **kw)
    if mode == TRUST:
        return trust(opts.folder, opts) if index == 0 else False
    plan = load_plan(doc, Path(root), opts)
    if mode == ADOPT:
        return adopt(plan.to_dict(), opts) if index == 0 else False
    return run_plan(plan.to_dict(), opts)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Download one shard of a tke-playbook plan.")
    parser.add_argument("--plan", required=True, help="plan JSON file ({'request': ..., 'plan': ...})")
    parser.add_argument("--root", required=True, help="PVC root; the model goes to <root>/<model_path>")
    parser.add_argument("--index", type=int, default=None, help="shard (default $JOB_COMPLETION_INDEX)")
    parser.add_argument("--mode", choices=(DOWNLOAD, ADOPT, TRUST), default=None)
    parser.add_argument("--retries", type=int, default=int(os.environ.get("TKE_DOWNLOAD_RETRIES", 5)))
    parser.add_argument("--backoff", type=float, default=float(os.environ.get("TKE_DOWNLOAD_BACKOFF", 0.5)))
    parser.add_argument("--timeout", type=float, default=float(os.environ.get("TKE_DOWNLOAD_TIMEOUT", 60)))
    parser.add_argument("--run-id", default=os.environ.get("TKE_RUN_ID") or "job")
    parser.add_argument("--parent-pid", type=int, default=int(os.environ.get("TKE_PARENT_PID") or 0))
    args = parser.parse_args(argv)
    die_with_parent(args.parent_pid)
    index = args.index if args.index is not None else int(os.environ.get("JOB_COMPLETION_INDEX", "0"))
    doc = json.loads(Path(args.plan).read_text(encoding="utf-8"))
    if "request" not in doc and "plan" not in doc:
        doc = {"plan": doc}
    mode = args.mode or (doc.get("request") or {}).get("mode") or DOWNLOAD
    try:
        run(doc, args.root, index, mode, retries=args.retries, backoff=args.backoff, timeout=args.timeout,
            run_id=args.run_id)
    except DownloadError as exc:
        print(f"[shard {index}] FAILED: {exc}", file=sys.stderr, flush=True)
        return 3 if isinstance(exc, VerificationError) else 1
    except ValueError as exc:  # the request itself (e.g. include/exclude leave nothing)
        print(f"[shard {index}] FAILED: {exc}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
