"""Bulk embedding on this machine: the cluster Job's worker, run as local processes against a local endpoint.

The worker's files are laid out exactly as the Job's ConfigMap ships them (in a private temporary folder), one
process per shard with at most ``workers`` at a time, each dying with this process; the folder that plays the PVC
holds the corpus, the vectors and the state, so a rerun redoes only what is missing and a killed worker resumes.
:func:`embed_local` stages, plans, runs and reads back in one call.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


from ..errors import PlaybookError
from ..manifests.embedjob import PLAN_KEY, WORKER, worker_files
from ..podworker import embedworker
from ..reporting import progress_bar
from ..specs.names import slug
from .loading import Corpus
from .shards import embed_plan, embedding_progress, output_dir, read_embeddings, read_embedding_manifest, stage_corpus


def _ship(plan: dict, where: Path) -> Path:
    for key, text in worker_files(plan).items():
        (where / key).write_text(text, encoding="utf-8")
    return where


def _start(shipped: Path, root: Path, index: int, log: Path, env: dict, extra) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, str(shipped / WORKER), "--plan", str(shipped / PLAN_KEY), "--root",
                                 str(root), "--index", str(index), *extra], stdout=out, stderr=subprocess.STDOUT,
                                env=env, stdin=subprocess.DEVNULL)


def _tail(log: Path, since: int, lines: int = 5) -> str:
    try:
        with open(log, "rb") as fh:
            fh.seek(since)
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:]) or "(it wrote nothing)"


class _Processes:
    """Worker processes for the shards, ``workers`` at a time; their exit codes and log offsets."""

    def __init__(self, plan: dict, root: Path, shipped: Path, env: dict, workers: int, extra):
        self.plan, self.root, self.shipped, self.env, self.extra = plan, root, shipped, env, extra
        self.pending = list(range(len(plan["shards"])))
        self.workers, self.running, self.codes, self.logs = workers, {}, {}, {}

    def step(self) -> None:
        while self.pending and len(self.running) < self.workers:
            index = self.pending.pop(0)
            log = output_dir(self.root, self.plan) / ".state" / "logs" / f"{index}.log"
            self.logs[index] = (log, log.stat().st_size if log.exists() else 0)
            self.running[index] = _start(self.shipped, self.root, index, log, self.env, self.extra)
        for index, proc in list(self.running.items()):
            if proc.poll() is not None:
                self.codes[index] = proc.returncode
                del self.running[index]

    @property
    def busy(self) -> bool:
        return bool(self.pending or self.running)

    def stop(self) -> None:
        for proc in self.running.values():
            proc.kill()
            proc.wait()

    def failure(self) -> PlaybookError | None:
        states = {row["shard"]: row for row in embedding_progress(self.root, self.plan)}
        for index, code in sorted(self.codes.items()):
            if code:
                error = states.get(index, {}).get("error")
                log, since = self.logs[index]
                return PlaybookError(f"Embedding shard {index} failed: {error or _tail(log, since)}", obj=index)
        return None


def run_local_embedding(plan: dict, root, *, workers: int = 2, api_key: str | None = None, progress: bool = True,
                        poll_s: float = 0.2, timeout_s: float | None = None, worker_args=()) -> dict:
    """Run ``plan`` with local worker processes writing under ``root``; the verified manifest. A failed shard
    raises PlaybookError with its reason (finished shards are kept: run again to redo only what is missing)."""
    root = Path(root)
    env = dict(os.environ, PYTHONUNBUFFERED="1", TKE_PARENT_PID=str(os.getpid()))
    env.pop(embedworker.API_KEY_ENV, None)
    if api_key:
        env[embedworker.API_KEY_ENV] = api_key  # by environment, never on a command line
    total = sum(s["rows"] for s in plan["shards"])
    deadline = time.monotonic() + timeout_s if timeout_s else None
    with tempfile.TemporaryDirectory(prefix="tke-embed-") as tmp, \
            progress_bar(progress, total, "embedding shards", "chunk") as bar:
        procs = _Processes(plan, root, _ship(plan, Path(tmp)), env, max(1, min(workers, len(plan["shards"]))),
                           tuple(worker_args))
        try:
            while procs.busy:
                procs.step()
                bar.update(sum(r["rows_done"] for r in embedding_progress(root, plan)) - bar.n)
                if deadline and time.monotonic() > deadline:
                    raise PlaybookError(f"The embedding did not finish within {timeout_s:.0f} s: run it again - it "
                                        "resumes", obj=plan["output"])
                time.sleep(poll_s)
        finally:
            procs.stop()
    problem = procs.failure()
    if problem is not None:
        raise problem
    manifest = embedworker.finish_embedding(plan, root, "final")  # should the last worker have stopped before it
    return manifest if manifest is not None else read_embedding_manifest(root, plan)


def embed_local(corpus: Corpus, root, *, endpoint: str, model: str, document_prompt: str = "{text}",
                shards: int = 4, workers: int = 2, api_key: str | None = None, batch: int = 64,
                concurrency: int = 4, progress: bool = True, **options):
    """Stage ``corpus`` under ``root``, embed it with local workers through ``endpoint``, and return
    ``(plan, manifest, ids, vectors)`` - the vectors memory-mapped and verified against the manifest."""
    staged = stage_corpus(corpus, root, shards=shards, name=slug(corpus.name, max_length=60))
    plan = embed_plan(staged, endpoint=endpoint, model=model, document_prompt=document_prompt, batch=batch,
                      concurrency=concurrency)
    manifest = run_local_embedding(plan, root, workers=workers, api_key=api_key, progress=progress, **options)
    ids, vectors = read_embeddings(root, plan)
    return plan, manifest, ids, vectors
