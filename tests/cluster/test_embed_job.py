"""The bulk embedding Indexed Job end to end against the fake API server: the objects render strict-valid, the
playbook applies them and follows the Job, the pods (played here by the very worker the ConfigMap ships, run as
processes on a folder standing in for the PVC, with the API key from the Secret) embed their shards through the
"Service", one pod is killed mid-shard and its replacement resumes, and the manifest the last pod prints is
checked against the plan and against the vectors on the volume."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fake_cluster import NS, add_pod, job_pod_fails, job_pods, job_pods_succeed, until

sys.path.insert(0, str(Path(__file__).parents[1]))  # fake_embedding_server

from fake_embedding_server import FakeEmbeddingServer, fake_vector  # noqa: E402
from tke_playbook.corpus import Document, corpus_from_documents  # noqa: E402
from tke_playbook.corpus.shards import embed_plan, embedding_progress, read_embeddings, stage_corpus  # noqa: E402
from tke_playbook.errors import InvalidSpecError, VerificationError  # noqa: E402
from tke_playbook.manifests.embedjob import PLAN_KEY, WORKER, build_embed_objects  # noqa: E402
from tke_playbook.playbook.bulkembed import manifest_from_logs, run_embed_job  # noqa: E402
from tke_playbook.specs.embedjob import EmbedJobSpec  # noqa: E402
from tke_playbook.specs.serving import ServingChoices, resolve  # noqa: E402

KEY, SECRET, MODEL = "sk-cluster-embed", "vllm-fake-api-key", "fake-model"


@pytest.fixture
def corpus():
    docs = [Document(f"d{i}", f"d{i}", "txt", " ".join(f"t{i}v{j}" for j in range(4 + i % 5))) for i in range(150)]
    return corpus_from_documents(docs, name="cluster corpus", progress=False)


def test_the_job_renders_strict_valid_from_a_serving_spec(k8s_valid, corpus, tmp_path):
    serving = resolve(ServingChoices(model="BAAI/bge-m3", namespace="team-a"))
    spec = EmbedJobSpec.for_serving(serving, "cluster-corpus", shards=3, parallelism=2)
    assert spec.endpoint == "http://vllm-bge-m3.team-a.svc:60000" and spec.api_key_secret == serving.api_key_secret
    plan = embed_plan(stage_corpus(corpus, tmp_path, shards=3), endpoint=spec.endpoint, model=spec.model)
    objects = build_embed_objects(spec, plan)
    for obj in objects:
        k8s_valid(obj)
    job = objects[1]
    assert job["spec"]["completionMode"] == "Indexed" and job["spec"]["completions"] == 3
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "python:3.11-slim" and "pip" not in " ".join(container["command"])
    assert KEY not in str(objects) and {e["name"] for e in container["env"]} >= {"TKE_EMBED_API_KEY"}
    with pytest.raises(InvalidSpecError, match="the plan has 3 shards but the Job 4"):
        build_embed_objects(EmbedJobSpec.for_serving(serving, "cluster-corpus", shards=4), plan)


class Kubelet:
    """Plays the nodes: for each Job index, a pod running the ConfigMap's worker on the "PVC" folder."""

    def __init__(self, server, name: str, pvc: Path, work: Path):
        self.server, self.name, self.pvc, self.work = server, name, pvc, work
        self.errors: list[BaseException] = []

    def _env(self, index: int) -> dict:
        container = self.server.get("jobs", self.name, NS)["spec"]["template"]["spec"]["containers"][0]
        env = {k: v for k, v in os.environ.items() if k not in ("TKE_EMBED_API_KEY",)}
        for item in container["env"]:
            ref = (item.get("valueFrom") or {}).get("secretKeyRef")
            env[item["name"]] = base64.b64decode(self.server.get("secrets", ref["name"], NS)["data"][ref["key"]]) \
                .decode() if ref else item["value"]
        return dict(env, JOB_COMPLETION_INDEX=str(index))

    def _start(self, index: int) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, str(self.work / WORKER), "--plan", str(self.work / PLAN_KEY),
                                 "--root", str(self.pvc)], env=self._env(index), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)

    def _finish(self, index: int, pod: str, proc: subprocess.Popen) -> None:
        out, _ = proc.communicate(timeout=60)
        self.server.append_log(NS, pod, *out.splitlines())
        assert proc.returncode == 0, out
        job_pods_succeed(self.server, NS, self.name, [index])

    def run(self, plan: dict) -> None:
        try:
            until(lambda: self.server.exists("jobs", self.name, NS))
            self.work.mkdir()
            for key, text in self.server.get("configmaps", self.name, NS)["data"].items():
                (self.work / key).write_text(text, encoding="utf-8")
            job_pods(self.server, NS, self.name, [0, 1, 2])
            others = {i: self._start(i) for i in (0, 2)}
            first = self._start(1)  # index 1 is killed mid-shard, then its replacement resumes
            until(lambda: embedding_progress(self.pvc, plan)[1]["rows_done"] > 0, timeout=30)
            os.kill(first.pid, signal.SIGKILL)
            first.wait()
            job_pod_fails(self.server, NS, self.name, 1, log_lines=["killed"], job_failed=False)
            self.resumed_from = embedding_progress(self.pvc, plan)[1]["rows_done"]
            self._finish(0, f"{self.name}-0-abcde", others[0])
            job = self.server.get("jobs", self.name, NS)
            add_pod(self.server, NS, f"{self.name}-1-retry", owner=job, phase="Running", labels={
                "job-name": self.name, "batch.kubernetes.io/job-completion-index": "1"})
            retry = self._start(1)
            self._finish(2, f"{self.name}-2-abcde", others[2])
            self._finish(1, f"{self.name}-1-retry", retry)
        except BaseException as exc:  # surfaced by the test
            self.errors.append(exc)


def test_apply_progress_a_killed_pod_resumed_and_the_output_verified(server, kube, corpus, tmp_path):
    server.put("secrets", {"metadata": {"name": SECRET}, "type": "Opaque",
                           "data": {"api-key": base64.b64encode(KEY.encode()).decode()}}, NS)
    pvc = tmp_path / "pvc"
    with FakeEmbeddingServer(api_key=KEY, model=MODEL, delay_s=0.08) as service:
        spec = EmbedJobSpec("cluster-corpus", MODEL, service.url, shards=3, parallelism=3, namespace=NS,
                            api_key_secret=SECRET)
        plan = embed_plan(stage_corpus(corpus, pvc, shards=3), endpoint=service.url, model=MODEL, batch=2,
                          concurrency=1)
        kubelet = Kubelet(server, spec.name, pvc, tmp_path / "worker")
        thread = threading.Thread(target=kubelet.run, args=(plan,), daemon=True)
        thread.start()
        seen = []
        manifest = run_embed_job(kube, spec, plan, timeout=120, poll=0.2, on_progress=seen.append)
        thread.join(30)
    assert not kubelet.errors, kubelet.errors
    assert any(p.state == "running" and 0 < len(p.completed) < 3 for p in seen) and seen[-1].state == "complete"
    assert 0 < kubelet.resumed_from < plan["shards"][1]["rows"]
    asked = [t for r in service.requests for t in r["inputs"]]
    assert len(asked) <= len(corpus) + 2 and set(asked) == set(corpus.texts)  # the kill lost one batch at most
    ids, parts = read_embeddings(pvc, plan)
    assert ids == corpus.ids and manifest["rows"] == len(corpus)
    np.testing.assert_allclose(np.concatenate(parts), np.stack([fake_vector(t) for t in corpus.texts]), rtol=1e-6)


def test_a_manifest_that_is_missing_or_differs_from_the_plan_is_refused(corpus, tmp_path):
    plan = embed_plan(stage_corpus(corpus, tmp_path, shards=2), endpoint="http://svc:60000", model=MODEL)
    with pytest.raises(VerificationError, match="no pod printed"):
        manifest_from_logs(["[shard 0] done"], plan)
    wrong = '{"key": "%s", "rows": 1, "shards": [{"input": "chunks/shard-00000.jsonl", "rows": 1}]}' % plan["key"]
    with pytest.raises(VerificationError, match="does not match the plan"):
        manifest_from_logs([f"TKE-EMBED-MANIFEST {wrong}"], plan)
