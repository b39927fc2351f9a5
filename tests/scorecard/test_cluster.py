"""The scorecard's cluster path: the parity reference Job (manifests valid for Kubernetes, its script run here on
the offline model, and the apply-wait-read loop against the fake API server), and a scorecard over two
"deployments" found through the fake API server - local endpoints standing in for vLLM. A `cluster`-marked test
runs the scorecard for two deployed models on a real cluster (KUBECONFIG)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # fake_embedding_server
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cluster"))  # fake API server and helpers

from fake_apiserver import FakeApiServer  # noqa: E402
from fake_cluster import NS, job_pods, job_pods_succeed, until  # noqa: E402
from fake_embedding_server import FakeEmbeddingServer  # noqa: E402

from tke_playbook.embed.local import LocalEmbedder  # noqa: E402
from tke_playbook.errors import InvalidSpecError, PlaybookError  # noqa: E402
from tke_playbook.hostenv import offline_model_dir  # noqa: E402
from tke_playbook.kube.client import Kube  # noqa: E402
from tke_playbook.scorecard import run_scorecard  # noqa: E402
from tke_playbook.scorecard import (BM25Retriever, Cause, Hybrid, ReferenceJobSpec, build_reference_configmap,
                                    build_reference_job, check_parity, deployed_embedders, parse_reference_log,
                                    probe_set, run_reference_job, target_systems)
from tke_playbook.scorecard.parity import LONG_PROBE  # noqa: E402

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
SHORT = [t for t in probe_set(10) if t != LONG_PROBE]


@pytest.fixture(scope="module")
def spec():
    return ReferenceJobSpec(MINILM, namespace=NS)


def test_reference_job_and_configmap_are_valid_kubernetes(spec, k8s_valid):
    job, configmap = k8s_valid(build_reference_job(spec)), k8s_valid(build_reference_configmap(spec, SHORT))
    pod = job["spec"]["template"]["spec"]
    mount = pod["containers"][0]["volumeMounts"][0]
    assert (mount["mountPath"], mount["subPath"], mount["readOnly"]) == ("/data/model", MINILM, True)
    assert pod["volumes"][0]["persistentVolumeClaim"] == {"claimName": "ai-model"}
    assert "nvidia.com/gpu" not in json.dumps(job) and job["spec"]["backoffLimit"] == 0
    request = json.loads(configmap["data"]["request.json"])
    assert request["alternatives"] == SHORT and request["pooling"] == "mean"
    assert job["metadata"]["name"] == configmap["metadata"]["name"] == "parity-ref-all-minilm-l6-v2"


@pytest.mark.parametrize("kwargs, error, message", [
    pytest.param({"model": "no-such-model"}, LookupError, "no-such-model", id="unknown-model"),
    pytest.param({"model": MINILM, "pvc": "AI_model"}, InvalidSpecError, "pvc", id="bad-pvc-name"),
    pytest.param({"model": MINILM, "memory": "lots"}, InvalidSpecError, "memory", id="bad-memory"),
])
def test_bad_job_specs_are_refused(kwargs, error, message):
    with pytest.raises(error, match=message):
        ReferenceJobSpec(**kwargs)


@pytest.fixture(scope="module")
def job_log(spec, tmp_path_factory):
    """What the Job's pod prints: its script run here on the offline model folder (as mounted on the PVC)."""
    folder = tmp_path_factory.mktemp("config")
    configmap = build_reference_configmap(spec, SHORT)
    (folder / "request.json").write_text(configmap["data"]["request.json"], encoding="utf-8")
    (folder / "reference.py").write_text(configmap["data"]["reference.py"], encoding="utf-8")
    env = dict(os.environ, TKE_PARITY_CONFIG=str(folder), TKE_PARITY_MODEL=str(offline_model_dir()))
    done = subprocess.run([sys.executable, str(folder / "reference.py")], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_the_jobs_script_gives_a_reference_that_passes_the_right_model_and_catches_cls(job_log, minilm):
    reference = parse_reference_log(job_log, MINILM)
    assert reference.max_tokens == 256
    assert check_parity(minilm, reference, probes=SHORT).passed
    wrong = check_parity(LocalEmbedder(pooling="cls"), reference, probes=SHORT)
    assert wrong.cause is Cause.POOLING


def test_a_log_without_results_says_so():
    with pytest.raises(PlaybookError, match="has no result"):
        parse_reference_log("Traceback (most recent call last):\nOSError: no such folder", MINILM)


@pytest.fixture
def apiserver():
    with FakeApiServer() as fake:
        fake.put("namespaces", {"metadata": {"name": NS}})
        yield fake


@pytest.fixture
def kube(apiserver):
    with Kube.from_host(apiserver.url) as connection:
        yield connection


def test_run_reference_job_applies_waits_and_reads_the_log(apiserver, kube, spec, job_log, minilm):
    def cluster():  # what the Job controller and the pod would do
        until(lambda: apiserver.exists("jobs", spec.name, NS), timeout=30)
        pod = job_pods(apiserver, NS, spec.name, [0])[0]
        apiserver.append_log(NS, pod, *job_log.splitlines())
        job_pods_succeed(apiserver, NS, spec.name, [0])

    worker = threading.Thread(target=cluster)
    worker.start()
    try:
        reference = run_reference_job(kube, spec, SHORT, timeout=60, poll=0.2)
    finally:
        worker.join(30)
    assert apiserver.exists("configmaps", spec.name, NS)
    assert check_parity(minilm, reference, probes=SHORT).passed


def _service(name: str, port: int) -> dict:
    return {"metadata": {"name": name, "namespace": NS},
            "spec": {"type": "LoadBalancer", "selector": {"app": name}, "ports": [{"port": port}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "127.0.0.1"}]}}}


def test_scorecard_of_two_deployments_found_through_the_api(apiserver, kube, local_server, tmp_path):
    with FakeEmbeddingServer(dim=32, model="BAAI/bge-m3", api_key="k-123") as bge:
        apiserver.put("services", _service("vllm-all-minilm-l6-v2", local_server.port), NS)
        apiserver.put("services", _service("vllm-bge-m3", bge.port), NS)
        apiserver.put("secrets", {"metadata": {"name": "vllm-bge-m3-api-key", "namespace": NS},
                                  "data": {"api-key": base64.b64encode(b"k-123").decode()}}, NS)
        clients = deployed_embedders(kube, NS, ["all-MiniLM-L6-v2", "BAAI/bge-m3"])
        result = run_scorecard(clients + [BM25Retriever(), Hybrid(clients[1])], cache_dir=tmp_path,
                               progress=False, visuals=False)
        seen = len(bge.requests)
    assert [c.base_url for c in clients] == [local_server.url, bge.url]
    assert result.systems == [MINILM, "BAAI/bge-m3", "bm25", "hybrid-bge-m3+bm25"]
    assert seen > 0 and result.table.loc[MINILM, "ndcg@10"] > result.table.loc["BAAI/bge-m3", "ndcg@10"]
    assert result.table["queries"].eq(22).all()


@pytest.mark.cluster
@pytest.mark.skipif(not os.environ.get("KUBECONFIG"), reason="needs a real cluster: set KUBECONFIG")
def test_scorecard_of_two_deployed_models_on_a_real_cluster(tmp_path):
    from tke_playbook.playbook import open_target

    models = os.environ.get("TKE_PLAYBOOK_SCORECARD_MODELS", "BAAI/bge-m3,intfloat/e5-mistral-7b-instruct")
    pb = open_target("cluster")
    result = run_scorecard(target_systems(pb, models.split(",")), cache_dir=tmp_path, progress=False)
    assert len(result.systems) == 4 and result.table["ndcg@10"].between(0, 1).all()
    assert result.paired(result.systems[0], result.systems[1]).queries == 22
