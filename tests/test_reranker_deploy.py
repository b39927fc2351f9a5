"""Notebook 03's reranker beside the embedder (issue 24, item 3). On a cluster: a second vLLM Deployment and Service
for the reranker (BAAI/bge-reranker-v2-m3 by default) on the newest checked vLLM, while the embedder stays the
endpoint 04-07 use. Locally: the server 03 started answers /rerank itself (vLLM's answer for an embedding model: the
cosine of the pooled vectors), so nothing else starts."""

from __future__ import annotations

import re

import sys
import threading
from pathlib import Path

import pytest

from tke_playbook.errors import InvalidSpecError, NotDeployedError
from tke_playbook.specs.catalog import OFFLINE_MODEL

sys.path.insert(0, str(Path(__file__).parent / "cluster"))


@pytest.fixture
def cluster(home):
    from fake_cluster import cluster_with_nodes

    from tke_playbook.playbook import ClusterPlaybook

    with cluster_with_nodes(("gpu-1", {})) as (server, kube):
        yield server, ClusterPlaybook(kube=kube)


def _deploy(server, deploy, spec, pod, ip):
    from fake_cluster import serve_when_applied

    helper = threading.Thread(target=serve_when_applied, args=(server, spec, pod), kwargs={"ip": ip})
    helper.start()
    endpoint = deploy(spec, timeout=60)
    helper.join()
    return endpoint


def test_the_cluster_runs_the_reranker_as_a_second_deployment_beside_the_embedder(cluster):
    server, pb = cluster
    embedder = pb.serving.defaults("BAAI/bge-m3")
    reranker = pb.serving.reranker_defaults()
    assert reranker.model == "BAAI/bge-reranker-v2-m3" and reranker.name != embedder.name
    assert reranker.vllm_version == "0.34.0"  # the newest release whose parser was checked
    _deploy(server, pb.serving.deploy, embedder, "vllm-bge-m3-1", "10.0.0.7")
    found = _deploy(server, pb.serving.deploy_beside, reranker, "vllm-rerank-1", "10.0.0.8")
    assert found.url == "http://10.0.0.8:60000" and found.model == "BAAI/bge-reranker-v2-m3"
    assert server.exists("deployments", embedder.name, "default") and server.exists("services", reranker.name,
                                                                                    "default")
    assert pb.serving.endpoint().model == "BAAI/bge-m3"  # 04-07 keep using the embedder
    assert pb.serving.endpoint("BAAI/bge-reranker-v2-m3").url == "http://10.0.0.8:60000"


def test_the_qwen3_reranker_gets_its_overrides_on_the_cluster(cluster):
    _, pb = cluster
    spec = pb.serving.reranker_defaults("Qwen/Qwen3-Reranker-0.6B")
    assert spec.hf_overrides["is_original_qwen3_reranker"] is True and "--hf-overrides" in pb.serving.render(spec)


def test_an_embedder_is_not_a_reranker_on_a_cluster(cluster):
    _, pb = cluster
    with pytest.raises(InvalidSpecError, match="not a reranker.*BAAI/bge-reranker-v2-m3"):
        pb.serving.reranker_defaults("BAAI/bge-m3")


def test_locally_the_embedders_server_is_the_reranker(pb):
    spec = pb.serving.reranker_defaults()
    assert spec.model == OFFLINE_MODEL and spec == pb.serving.defaults()
    with pytest.raises(NotDeployedError):  # nothing deployed yet: run 03's deploy cell first
        pb.serving.deploy_beside(spec)


def test_locally_a_second_model_is_refused_in_one_line(pb):
    pb.records.record_serving(pb.serving.defaults())  # as 03's deploy cell records it
    with pytest.raises(InvalidSpecError, match="one model at a time") as caught:
        pb.serving.deploy_beside(pb.serving.defaults().replace(name="another-server"))
    assert "\n" not in str(caught.value)


def test_the_fit_table_of_the_reranker_on_the_chosen_node_type(cluster):
    _, pb = cluster
    table = pb.serving.fit_table(pb.serving.reranker_defaults())
    notes = dict(zip(table["item"], table["note"]))
    assert "cross-encoder" in notes["weights"] and "(cross-encoder reranker) fits" in notes["verdict"]
    assert any("query and the document together" in str(n) for n in table["note"])
    # a table to read: no NaN on the verdict and note rows (03 showed 'verdict NaN'), one format down GiB
    assert "nan" not in table.to_string().lower()
    gib = dict(zip(table["item"], table["GiB"]))
    assert gib["verdict"] == "" and all(re.fullmatch(r"\d+\.\d\d", gib[item]) for item in
                                          ("GPU memory", "usable", "weights", "headroom"))
