"""Preflight as a pass/fail table with what to do, and the `tke-playbook preflight` command."""

from __future__ import annotations

import argparse
from types import SimpleNamespace

import pytest
from fake_cluster import add_node

from tke_playbook.cli.preflight import register
from tke_playbook.errors import UnknownNameError
from tke_playbook.kube import run_preflight
from tke_playbook.kube.client import Kube
from tke_playbook.kube.preflight import preflight

E5 = "intfloat/e5-mistral-7b-instruct"


def _cfs(server, name="cfs"):
    server.put("storageclasses", {"metadata": {"name": name}, "provisioner": "com.tencent.cloud.csi.cfs"})


def _rows(report):
    return {row.check: row for row in report.rows}


def test_ready_cluster_passes_every_check(kube, server):
    add_node(server, "gpu-1", product="NVIDIA-L20")
    add_node(server, "cpu-1", instance_type="SA5.LARGE8", gpus=0)
    _cfs(server)
    server.install_lws()
    report = run_preflight(kube, E5, lws=True, max_model_len=2048)
    assert report.ok, str(report)
    assert list(_rows(report)) == ["cluster reachable", "nodes", "GPU nodes", "model fits GPU", "CFS StorageClass",
                                   "LeaderWorkerSet CRD"]
    assert "v1.30" in _rows(report)["cluster reachable"].detail
    assert "gpu-1 (PNV5b.8XLARGE96, 1 x L20" in _rows(report)["GPU nodes"].detail
    frame = report.to_frame()
    assert list(frame.columns) == ["check", "result", "detail", "what to do"] and set(frame["result"]) == {"PASS"}


def test_each_failure_says_what_to_do(kube, server):
    add_node(server, "gpu-t4", instance_type="GN7.2XLARGE32", product="Tesla-T4")
    server.put("storageclasses", {"metadata": {"name": "cbs"}, "provisioner": "com.tencent.cloud.csi.cbs"})
    report = run_preflight(kube, E5, lws=True, max_model_len=4096)
    rows = _rows(report)
    assert not report.ok and [r.check for r in report.failures] == ["model fits GPU", "CFS StorageClass",
                                                                    "LeaderWorkerSet CRD"]
    assert "does not fit" in rows["model fits GPU"].detail and rows["model fits GPU"].action
    assert "CFS add-on" in rows["CFS StorageClass"].action
    assert "lws" in rows["LeaderWorkerSet CRD"].action and "lwsGroupSize to 1" in rows["LeaderWorkerSet CRD"].action
    assert "FAIL" in str(report) and "3 check(s) failed" in str(report)


def test_no_gpu_node_and_named_storage_class(kube, server):
    add_node(server, "cpu-1", instance_type="SA5.LARGE8", gpus=0)
    _cfs(server, "cfs-gz6")
    rows = _rows(run_preflight(kube, E5, storage_class="cfs"))
    assert rows["GPU nodes"].ok is False and "GPU node pool" in rows["GPU nodes"].action
    assert rows["model fits GPU"].ok is None
    assert rows["CFS StorageClass"].ok is False and "cfs-gz6" in rows["CFS StorageClass"].detail


def test_serving_spec_supplies_model_length_and_lws(kube, server):
    add_node(server, "gpu-1", product="NVIDIA-L20")
    _cfs(server)
    spec = SimpleNamespace(model=E5, max_model_len=2048, gpu_memory_utilization=0.9, lws_group_size=2,
                           tensor_parallel=1)
    rows = _rows(run_preflight(kube, serving_spec=spec))
    assert rows["model fits GPU"].ok and "2048" in rows["model fits GPU"].detail
    assert rows["LeaderWorkerSet CRD"].ok is False


def test_unreachable_cluster_is_a_failed_row_not_a_traceback():
    with Kube.from_host("http://127.0.0.1:9") as kube:
        report = run_preflight(kube, E5)
    rows = _rows(report)
    assert rows["cluster reachable"].ok is False
    assert "Cannot reach the Kubernetes API" in rows["cluster reachable"].action
    assert all(row.ok is None for name, row in rows.items() if name != "cluster reachable")


def test_missing_kubeconfig_is_a_failed_row(tmp_path):
    report = preflight(str(tmp_path / "nope"), model=E5)
    assert report.rows[0].check == "kubeconfig" and report.rows[0].ok is False
    assert "does not exist" in report.rows[0].action and "TKE console" in report.rows[0].action


def _cli(argv):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def _kubeconfig(tmp_path, url):
    path = tmp_path / "config"
    path.write_text(f"apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: '{url}'}}}}]\n"
                    f"users: [{{name: u, user: {{token: t}}}}]\n"
                    f"contexts: [{{name: x, context: {{cluster: c, user: u}}}}]\ncurrent-context: x\n")
    return str(path)


def test_cli_preflight_prints_the_table_and_sets_the_exit_code(tmp_path, server, capsys):
    add_node(server, "gpu-1", product="NVIDIA-L20")
    config = _kubeconfig(tmp_path, server.url)
    assert _cli(["preflight", "--kubeconfig", config, "--model", E5, "--max-model-len", "2048"]) == 1
    assert "FAIL  CFS StorageClass" in capsys.readouterr().out
    _cfs(server)
    assert _cli(["preflight", "--kubeconfig", config, "--context", "x", "--model", E5, "--max-model-len", "2048"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("Ready.")


def test_cli_unknown_model_suggests_before_connecting(tmp_path):
    with pytest.raises(UnknownNameError, match="Did you mean"):
        _cli(["preflight", "--kubeconfig", str(tmp_path / "nope"), "--model", "bge-m4"])


def test_real_serving_spec_pins_instance_types_and_namespace(kube, server):
    from tke_playbook.specs.serving import ServingChoices, resolve

    add_node(server, "gpu-1", product="NVIDIA-L20")
    _cfs(server)
    spec = resolve(ServingChoices(model=E5, node_instance_types=("PNV5b.16XLARGE192",), namespace="ai", max_model_len=2048))
    rows = _rows(run_preflight(kube, serving_spec=spec))
    assert rows["instance types"].ok is False and "PNV5b.8XLARGE96" in rows["instance types"].detail
    assert rows["model fits GPU"].ok is None  # no node of the pinned type to check against
    assert rows["namespace"].ok is False and "kubectl create namespace ai" in rows["namespace"].action
    server.put("namespaces", {"metadata": {"name": "ai"}})
    spec = resolve(ServingChoices(model=E5, node_instance_types=("PNV5b.8XLARGE96",), namespace="ai", max_model_len=2048))
    report = run_preflight(kube, serving_spec=spec)
    assert report.ok, str(report)


def test_fit_checks_each_gpu_count_not_only_each_gpu_model(kube, server):
    # tensor parallel 4 fits on the 4 x L20 node even though a 1 x L20 node is listed first
    add_node(server, "a-gpu-1", product="NVIDIA-L20", gpus=1)
    add_node(server, "b-gpu-4", instance_type="PNV5b.32XLARGE384", product="NVIDIA-L20", gpus=4)
    _cfs(server)
    spec = SimpleNamespace(model=E5, max_model_len=2048, gpu_memory_utilization=0.9, tp_size=4, lws_group_size=1)
    row = _rows(run_preflight(kube, serving_spec=spec))["model fits GPU"]
    assert row.ok is True, row
    assert "1 x L20" in row.detail and "4 x L20" in row.detail and "does not fit on 1 x L20" in row.action
