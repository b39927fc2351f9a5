"""Bulk embedding of a corpus as the cluster's Indexed Job (``pb.evaluation.embed_corpus`` on a cluster).

:func:`run_embed_job` applies the Indexed Job (:mod:`tke_playbook.manifests.embedjob`), follows it with a progress
bar of finished shards, and reads the manifest the last pod printed (``TKE-EMBED-MANIFEST``), checking it against
the plan: every shard present with the planned rows and input, the pods having re-hashed each output against its
record. Locally the same worker runs as processes (:func:`tke_playbook.corpus.bulk.embed_local`, from
``LocalEvaluation.embed_corpus``).

The corpus must be on the volume first: on a cluster, stage it where the PVC is mounted on this machine
(``stage_root=``: a CFS file system mounts on any machine in its VPC), or copy a staged folder in (``kubectl cp``).
"""

from __future__ import annotations

import json
from collections.abc import Callable

from ..errors import VerificationError
from ..manifests.embedjob import build_embed_objects
from ..podworker.embedworker import MARKER
from ..reporting import Reporter, default_reporter
from ..specs.embedjob import EmbedJobSpec


def manifest_from_logs(logs: list[str], plan: dict) -> dict:
    """The manifest a pod printed, checked against ``plan``; VerificationError when it is missing or differs."""
    found = [json.loads(line[len(MARKER):]) for text in logs for line in text.splitlines() if line.startswith(MARKER)]
    if not found:
        raise VerificationError("no pod printed the embedding manifest: the Job has not finished its last shard - "
                                "read the pods' logs (kubectl logs -l job-name=...)", obj=plan["output"])
    manifest = found[-1]
    want = [(s["file"], s["rows"]) for s in plan["shards"]]
    got = [(s.get("input"), s.get("rows")) for s in manifest.get("shards", [])]
    if manifest.get("key") != plan["key"] or got != want:
        raise VerificationError(f"the manifest ({len(got)} shards, {manifest.get('rows')} rows) does not match the plan "
                                f"({len(want)} shards, {sum(r for _, r in want)} rows): run the Job again",
                                obj=plan["output"])
    return manifest


def run_embed_job(kube, spec: EmbedJobSpec, plan: dict, *, timeout: float = 24 * 3600, poll: float = 5.0,
                  on_progress: Callable | None = None, reporter: Reporter | None = None) -> dict:
    """Apply the bulk embedding Job, wait for it with a progress bar, and return its verified manifest."""
    from ..kube import apply_all, list_pods, pod_logs, wait_for_job  # late: the local path never loads the client

    apply_all(kube, build_embed_objects(spec, plan))

    def show(progress, bar):
        bar.update(len(progress.completed) - bar.n)
        bar.set_postfix_str(progress.summary()[:60])
        if on_progress is not None:
            on_progress(progress)

    with (reporter or default_reporter()).bar(spec.shards, f"Job {spec.name}", unit="shard") as bar:
        wait_for_job(kube, spec.name, spec.namespace, timeout, on_progress=lambda p: show(p, bar), poll=poll)
    pods = list_pods(kube, spec.namespace, f"job-name={spec.name}")
    logs = [pod_logs(kube, pod, tail_lines=200, namespace=spec.namespace) for pod in pods]
    return manifest_from_logs(logs, plan)
