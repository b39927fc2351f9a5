"""Issue 20 item 5: the node type chosen in 00 reaches everything after it - the serving spec (its GPU and the node
affinity on ``node.kubernetes.io/instance-type``), the fit verdicts, the deployed spec's record, and what 05 and 06
read (``pb.site.node_type()``, the deployed spec's ``gpu``, ``pb.evaluation.price_node()``) - in every kernel, because the choice
lives in the state file, not in the kernel that made it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tke_playbook.playbook import open_target
from tke_playbook.playbook.widgets import NodeTypePicker, ServingForm
from tke_playbook.specs.hardware import get_node_type
from tke_playbook.specs.serving import ServingSpec

T4_NODE = "GN7.2XLARGE32"  # one 16 GB T4 (specs/hardware.py)
INSTANCE_TYPE = "node.kubernetes.io/instance-type"  # the well-known label the kubelet sets


def _affinity_values(pod_spec: dict) -> list[str]:
    terms = pod_spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    return [v for t in terms for e in t["matchExpressions"] if e["key"] == INSTANCE_TYPE for v in e["values"]]


def test_the_choice_is_read_from_the_state_file_in_every_kernel(pb):
    """Two kernels (00 run twice, or 00 in one and 03 in another): the last choice wins everywhere."""
    other_kernel = open_target("local")
    pb.site.choose_node_type(get_node_type(T4_NODE))
    assert other_kernel.site.node_type().name == T4_NODE
    other_kernel.site.choose_node_type(get_node_type("PNV5b.8XLARGE96"))
    assert pb.site.node_type().name == "PNV5b.8XLARGE96"  # not the kernel's own earlier choice
    assert json.loads(pb.records.state.path.read_text())["node_type"]["gpu"]["name"] == "L20"


def test_the_chosen_node_flows_into_the_serving_spec_and_its_manifests(pb):
    pb.site.choose_node_type(NodeTypePicker(pb.site.node_types(), default=T4_NODE).node_type)  # what 00's cells do
    defaults = pb.serving.defaults()
    assert defaults.gpu == "T4" and defaults.node_instance_types == (T4_NODE,)
    form = ServingForm(defaults, pb.storage.names(), pb.site.node_type())
    assert "T4" in form.model.verdict_html.value
    spec = form.spec()
    assert spec.gpu == "T4" and spec.node_instance_types == (T4_NODE,)
    from tke_playbook.manifests.serving import build_serving_objects, pod_templates

    objects = build_serving_objects(spec, "a-test-key-of-24-chars-x", bytes(32))
    workload = next(d for d in objects if d["kind"] == "Deployment")
    assert _affinity_values(pod_templates(workload)[0]["spec"]) == [T4_NODE]


def test_the_deployed_record_and_what_05_and_06_read_follow_the_choice(pb):
    pb.site.choose_node_type(get_node_type(T4_NODE))
    spec = ServingForm(pb.serving.defaults(), pb.storage.names(), pb.site.node_type()).spec()
    pb.records.record_serving(spec)  # what a deploy records
    again = open_target("local")  # 05 or 06, in its own kernel
    deployed = again.serving.deployed_spec()
    assert deployed.gpu == "T4" and deployed.node_instance_types == (T4_NODE,)  # 06's MFU reads spec.gpu
    assert again.site.node_type().name == T4_NODE and again.site.node_type().gpu_count == 1
    assert ServingSpec.from_dict(deployed.to_dict()) == deployed


def test_scorecard_prices_a_cluster_on_the_chosen_node_type_and_a_local_run_on_a_cpu(home):
    from tke_playbook.playbook import ClusterPlaybook

    cluster = ClusterPlaybook(root=home)
    cluster.site.choose_node_type(get_node_type(T4_NODE))
    assert cluster.evaluation.price_node() == T4_NODE
    assert open_target("local").evaluation.price_node() == "SA5.LARGE8"  # measured on this machine's CPU


def test_a_layout_the_chosen_node_cannot_hold_is_refused_in_the_form(pb):
    pb.site.choose_node_type(get_node_type(T4_NODE))
    form = ServingForm(pb.serving.defaults("BAAI/bge-m3"), pb.storage.names(), pb.site.node_type())
    assert "Valid." in form.message.value
    form.tp_size.value = 2
    assert "Valid." not in form.message.value and f"node type {T4_NODE} has 1" in form.message.value


# --- a cluster's own nodes (described from their labels) ---------------------------------------------------------

sys.path.insert(0, str(Path(__file__).parent / "cluster"))


@pytest.fixture
def cluster(home):
    from fake_cluster import cluster_with_nodes

    from tke_playbook.playbook import ClusterPlaybook

    gpu_t4 = {"instance_type": T4_NODE, "product": "Tesla-T4", "gpus": 1}
    with cluster_with_nodes(("gpu-l20", {}), ("gpu-t4", gpu_t4)) as (_, kube):
        yield ClusterPlaybook(kube=kube), kube


def test_a_cluster_node_choice_reaches_a_new_kernel_without_asking_the_cluster(cluster):
    from tke_playbook.playbook import ClusterPlaybook

    pb, kube = cluster
    t4 = next(n for n in pb.site.node_types() if n.name == T4_NODE)
    pb.site.choose_node_type(t4)
    later = ClusterPlaybook(kube=kube)
    assert later.site.node_type().name == T4_NODE and later.site.node_type().gpu.name == "T4"
    assert later.evaluation.price_node() == T4_NODE
    spec = ServingForm(later.serving.defaults("BAAI/bge-m3"), ["ai-model"], later.site.node_type()).spec()
    assert spec.gpu == "T4" and spec.node_instance_types == (T4_NODE,)
