"""Bulk embedding of a corpus on either target, for the notebooks and the command line.

On a cluster, :func:`run_embed_job` applies the Indexed Job (:mod:`tke_playbook.manifests.embedjob`), follows it
with a progress bar of finished shards, and reads the manifest the last pod printed (``TKE-EMBED-MANIFEST``),
checking it against the plan: every shard present with the planned rows and input, the pods having re-hashed each
output against its record. Locally, :func:`embed_on_target` runs the same worker as processes
(:func:`tke_playbook.corpus.bulk.embed_local`) into the folder that plays the PVC.

The corpus must be on the volume first: locally it is staged for you; on a cluster, stage it where the PVC is
mounted on this machine (``stage_root=``: a CFS file system mounts on any machine in its VPC), or copy a staged
folder in (``kubectl cp``).
"""

from __future__ import annotations

import json
from collections.abc import Callable

from ..corpus.bulk import embed_local
from ..corpus.loading import Corpus
from ..corpus.shards import embed_plan, stage_corpus
from ..errors import InvalidSpecError, NotDeployedError, PlaybookError, VerificationError
from ..hostenv import local_pvc_dir
from ..manifests.embedjob import build_embed_objects
from ..podworker.embedworker import MARKER
from ..specs.embedjob import EmbedJobSpec
from .display import progress_bar


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
                  on_progress: Callable | None = None) -> dict:
    """Apply the bulk embedding Job, wait for it with a progress bar, and return its verified manifest."""
    from ..kube import apply_all, list_pods, pod_logs, wait_for_job  # late: the local path never loads the client

    apply_all(kube, build_embed_objects(spec, plan))

    def show(progress, bar):
        bar.update(len(progress.completed) - bar.n)
        bar.set_postfix_str(progress.summary()[:60])
        if on_progress is not None:
            on_progress(progress)

    with progress_bar(spec.shards, f"Job {spec.name}", unit="shard") as bar:
        wait_for_job(kube, spec.name, spec.namespace, timeout, on_progress=lambda p: show(p, bar), poll=poll)
    pods = list_pods(kube, spec.namespace, f"job-name={spec.name}")
    logs = [pod_logs(kube, pod, tail_lines=200, namespace=spec.namespace) for pod in pods]
    return manifest_from_logs(logs, plan)


def _served(pb):
    spec = pb.deployed_spec()
    if spec is None:
        raise NotDeployedError("Nothing is deployed: run 03_deploy_vllm first (the corpus is embedded by the "
                               "deployed model)", obj=None)
    return spec


def embed_on_target(pb, corpus: Corpus, *, shards: int = 4, stage_root=None, workers: int = 2, batch: int = 64,
                    concurrency: int = 4, progress: bool = True) -> dict:
    """Embed ``corpus`` in bulk with the deployed model: worker processes into the local PVC folder on the local
    target, an Indexed Job on a cluster (``stage_root``: where the PVC is mounted here). Returns the manifest."""
    serving = _served(pb)
    prompt = serving.model_info.document_prompt
    if getattr(pb, "kube", None) is None:
        endpoint = pb.endpoint()
        _, manifest, _, _ = embed_local(corpus, local_pvc_dir(serving.pvc_name), endpoint=endpoint.url,
                                        model=endpoint.model, document_prompt=prompt, shards=shards,
                                        workers=workers, api_key=endpoint.api_key, batch=batch,
                                        concurrency=concurrency, progress=progress)
        return manifest
    if stage_root is None:
        raise InvalidSpecError("On a cluster the corpus goes onto the PVC first: pass stage_root= (where the PVC is "
                               "mounted on this machine), or stage it elsewhere and kubectl cp the corpora/ folder "
                               "into a pod that mounts the PVC", field="stage_root", value=None)
    staged = stage_corpus(corpus, stage_root, shards=shards)
    spec = EmbedJobSpec.for_serving(serving, staged["name"], shards=len(staged["shards"]),
                                    parallelism=min(workers, len(staged["shards"])))
    plan = embed_plan(staged, endpoint=spec.endpoint, model=spec.model, document_prompt=prompt, batch=batch,
                      concurrency=concurrency)
    try:
        return run_embed_job(pb.kube, spec, plan)
    except VerificationError:
        raise
    except PlaybookError as exc:
        raise PlaybookError(f"The embedding Job failed: {exc}. Run it again - finished shards are kept",
                            obj=spec.name, cause=exc) from exc
