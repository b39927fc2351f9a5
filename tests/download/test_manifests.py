"""The Indexed Job, worker ConfigMap and token Secret: valid for Kubernetes 1.28/1.33, and the Job's
anti-affinity really selects its own pods."""

from __future__ import annotations

import json

import pytest

from tke_playbook.errors import InvalidSpecError
from tke_playbook.manifests import build_download_job, build_token_secret, build_worker_configmap
from tke_playbook.podworker.planner import make_plan
from tke_playbook.podworker.rules import RepoFile
from tke_playbook.specs import DownloadSpec, HubToken


def _plan(spec):
    files = [RepoFile("model.safetensors", 3000, "a" * 64), RepoFile("config.json", 10, "b" * 64)]
    return make_plan(spec, files)


def _matches(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector["matchLabels"].items())


@pytest.mark.parametrize("required", [pytest.param(False, id="preferred"), pytest.param(True, id="required")])
def test_job_is_valid_and_anti_affinity_matches_its_pods(k8s_valid, required):
    spec = DownloadSpec(model="bge-m3", node_selector={"tke.cloud.tencent.com/nodepool": "download"},
                        require_spread=required)
    job = k8s_valid(build_download_job(spec, _plan(spec)))
    pod = job["spec"]["template"]
    anti = pod["spec"]["affinity"]["podAntiAffinity"]
    term = (anti["requiredDuringSchedulingIgnoredDuringExecution"][0] if required
            else anti["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"])
    assert _matches(term["labelSelector"], pod["metadata"]["labels"])
    assert term["topologyKey"] == "kubernetes.io/hostname"
    other = DownloadSpec(model="bge-small-en-v1.5")
    other_pod = build_download_job(other)["spec"]["template"]
    assert not _matches(term["labelSelector"], other_pod["metadata"]["labels"])  # E5 and BGE don't repel
    assert job["spec"]["completionMode"] == "Indexed"
    assert (job["spec"]["completions"], job["spec"]["parallelism"]) == (3, 3)
    assert job["spec"]["backoffLimitPerIndex"] == 3 and pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["nodeSelector"] == {"tke.cloud.tencent.com/nodepool": "download"}


def test_job_mounts_pvc_and_worker_and_reads_token_from_optional_secret():
    spec = DownloadSpec(model="bge-m3", source="huggingface", endpoint="https://hf-mirror.com")
    pod = build_download_job(spec)["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["model-store"]["persistentVolumeClaim"]["claimName"] == "ai-model"
    assert volumes["worker"]["configMap"] == {"name": "download-bge-m3-worker"}  # always in the plan: not optional
    container = pod["containers"][0]
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/data", "/opt/tke-playbook", "/tmp"}
    env = {e["name"]: e for e in container["env"]}
    assert env["HUB_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hub-token", "key": "token", "optional": True}
    assert env["HF_ENDPOINT"]["value"] == "https://hf-mirror.com"
    assert "JOB_COMPLETION_INDEX" not in env  # Kubernetes sets it for Indexed Jobs
    assert container["command"] == ["python", "/opt/tke-playbook/worker.py", "--plan", "/opt/tke-playbook/plan.json",
                                    "--root", "/data"]  # no shell, no pip install
    assert container["image"] == "python:3.11-slim"
    run_id = env["TKE_RUN_ID"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert run_id == "metadata.labels['batch.kubernetes.io/controller-uid']"  # set on Job pods since 1.27


def test_no_token_secret_means_no_secret_reference():
    env = build_download_job(DownloadSpec(token_secret=None))["spec"]["template"]["spec"]["containers"][0]["env"]
    assert all("secretKeyRef" not in e.get("valueFrom", {}) for e in env)


def test_pod_is_hardened_but_can_write_the_pvc(k8s_valid):
    job = k8s_valid(build_download_job(DownloadSpec(model="bge-m3")))
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["automountServiceAccountToken"] is False
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert "runAsUser" not in pod["securityContext"]  # the image's user keeps write access to a fresh CFS volume
    data = next(m for m in container["volumeMounts"] if m["mountPath"] == "/data")
    assert not data.get("readOnly")
    pod = build_download_job(DownloadSpec(model="bge-m3", run_as_user=1000))["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == 1000 and pod["securityContext"]["runAsNonRoot"] is True


def test_plan_for_another_spec_is_refused():
    spec = DownloadSpec(model="bge-m3")
    with pytest.raises(InvalidSpecError, match="shards"):
        build_download_job(spec.replace(completions=1, parallelism=1), _plan(spec))
    other = DownloadSpec(model="bge-small-en-v1.5")
    for build in (build_download_job, build_worker_configmap):
        with pytest.raises(InvalidSpecError, match="made for BAAI/bge-m3 but the spec asks for "
                                                   "BAAI/bge-small-en-v1.5"):
            build(other, _plan(spec))
    with pytest.raises(InvalidSpecError, match="pvc 'ai-model'"):
        build_download_job(spec.replace(pvc="models"), _plan(spec))


def test_configmap_ships_the_library_source_and_the_plan(k8s_valid):
    spec = DownloadSpec(model="bge-m3")
    plan = _plan(spec)
    cm = k8s_valid(build_worker_configmap(spec, plan))
    from tke_playbook.podworker import worker

    assert cm["data"]["worker.py"] == open(worker.__file__, encoding="utf-8").read()
    assert "def write_completion" in cm["data"]["modelfolder.py"]
    assert "def shard_states" in cm["data"]["progress.py"]
    doc = json.loads(cm["data"]["plan.json"])
    assert doc["plan"]["plan_id"] == plan.plan_id and doc["request"]["repo_id"] == "BAAI/bge-m3"
    assert cm["metadata"]["name"] == "download-bge-m3-worker"
    bare = k8s_valid(build_worker_configmap(spec))  # no listing: the pods list the hub themselves
    assert json.loads(bare["data"]["plan.json"])["plan"] is None and "worker.py" in bare["data"]


def test_token_secret_is_valid_and_token_never_printed(k8s_valid):
    token = HubToken("hf_secretvalue")
    secret = k8s_valid(build_token_secret(token, spec=DownloadSpec(model="bge-m3")))
    assert secret["stringData"] == {"token": "hf_secretvalue"} and secret["metadata"]["name"] == "hub-token"
    assert "secretvalue" not in repr(token) and "secretvalue" not in str(token)
    assert "secretvalue" not in repr(DownloadSpec())
    with pytest.raises(InvalidSpecError, match="empty"):
        build_token_secret("  ")


def test_shipped_worker_files_import_only_the_standard_library():
    import ast
    import sys

    from tke_playbook.podworker.shipped import shipped_files

    files = shipped_files()
    shipped = {name.removesuffix(".py") for name in files}
    for name, text in files.items():
        tree = ast.parse(text)
        # what runs on import (module level, and both arms of the package-or-pod import); pandas inside the
        # plan's table methods is never called in a pod
        top = [n for stmt in tree.body for n in ([stmt] + (stmt.body + [x for h in stmt.handlers for x in h.body]
                                                         if isinstance(stmt, ast.Try) else []))]
        for node in top:
            if isinstance(node, ast.Import):
                modules = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules = [node.module.split(".")[0]]
            else:
                continue
            for module in modules:
                assert module in sys.stdlib_module_names or module in shipped, (name, module)


def test_download_objects_in_apply_order(k8s_valid):
    from tke_playbook.manifests import build_download_objects

    spec = DownloadSpec(model="bge-m3")
    kinds = [o["kind"] for o in build_download_objects(spec, _plan(spec), token=HubToken("t0ken"))]
    assert kinds == ["Secret", "ConfigMap", "Job"]
    assert [o["kind"] for o in build_download_objects(spec, _plan(spec))] == ["ConfigMap", "Job"]
    assert spec.pod_model_dir == "/data/BAAI/bge-m3"


# --- the pod's command, run here as the pod runs it: no pip, no listing in the ConfigMap ----------------------


def _pod_run(spec, plan, tmp_path, **env):
    """Lay out the ConfigMap as the pod sees it and run the container's command with this test's folders, in an
    interpreter that sees no site-packages (as the plain python image)."""
    import os
    import subprocess
    import sys

    from tke_playbook.manifests.download import DATA_DIR, WORKER_DIR

    shipped = tmp_path / "opt"
    shipped.mkdir(exist_ok=True)
    for key, text in build_worker_configmap(spec, plan)["data"].items():
        (shipped / key).write_text(text)
    command = build_download_job(spec, plan)["spec"]["template"]["spec"]["containers"][0]["command"]
    command = [c.replace(WORKER_DIR, str(shipped)).replace(DATA_DIR, str(tmp_path / "data")) for c in command]
    base = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    return subprocess.run([sys.executable, "-E", "-s", "-S", *command[1:]], env={**base, **env}, capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)


def test_pod_lists_the_hub_itself_when_rendered_without_the_listing(hub, repo_dir, tmp_path):
    """What `render --show-secrets | kubectl apply` gives: the ConfigMap has no plan; each index lists, the first
    pins the listing for the Job run, and they split the same plan."""
    from hubfiles import REPO, sha256

    from tke_playbook.download.listing import plan_download
    from tke_playbook.podworker.modelfolder import is_complete, read_manifest

    spec = DownloadSpec(model=REPO, source="huggingface", endpoint=hub.url, completions=2, parallelism=2)
    for index in (1, 0):
        result = _pod_run(spec, None, tmp_path, JOB_COMPLETION_INDEX=str(index), TKE_RUN_ID="uid-1")
        assert result.returncode == 0, result.stderr
    folder = tmp_path / "data" / REPO
    assert is_complete(folder)
    tree_lists = [p for _, p, _ in hub.log if "/tree/" in p]
    assert len(tree_lists) == 1  # the other index used the pinned listing
    expected = plan_download(spec)
    assert read_manifest(folder)["revision"] == expected.revision == hub.repos[REPO].commit
    for f in expected.files:
        assert sha256(folder / f.path) == sha256(repo_dir / f.path)


def test_pod_refuses_a_plan_without_hashes(hub, tmp_path):
    spec = DownloadSpec(model="BAAI/bge-small-en-v1.5", source="huggingface", endpoint=hub.url, completions=1,
                        parallelism=1)
    plan = make_plan(spec, [RepoFile("model.safetensors", 1_200_000), RepoFile("config.json", 700)])
    result = _pod_run(spec, plan, tmp_path, JOB_COMPLETION_INDEX="0")
    assert result.returncode != 0 and "lists no sha256 or git sha1 for 'config.json'" in result.stderr
    assert not (tmp_path / "data").exists()
