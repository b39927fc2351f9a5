"""The Indexed Job, worker ConfigMap and token Secret: valid for Kubernetes 1.28/1.33, and the Job's
anti-affinity really selects its own pods."""

from __future__ import annotations

import json

import pytest

from tke_playbook.download import (DownloadSpec, HubToken, RepoFile, build_download_job, build_token_secret,
                                   build_worker_configmap, make_plan)
from tke_playbook.errors import InvalidSpecError


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
    assert volumes["worker"]["configMap"]["name"] == "download-bge-m3-worker"
    container = pod["containers"][0]
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/data", "/opt/tke-playbook"}
    env = {e["name"]: e for e in container["env"]}
    assert env["HUB_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hub-token", "key": "token", "optional": True}
    assert env["HF_ENDPOINT"]["value"] == "https://hf-mirror.com"
    assert "JOB_COMPLETION_INDEX" not in env  # Kubernetes sets it for Indexed Jobs
    assert "worker.py --plan /opt/tke-playbook/plan.json --root /data" in container["command"][-1]
    assert container["image"] == "python:3.11-slim"


def test_no_token_secret_means_no_secret_reference():
    env = build_download_job(DownloadSpec(token_secret=None))["spec"]["template"]["spec"]["containers"][0]["env"]
    assert all("valueFrom" not in e for e in env)


def test_plan_with_other_shard_count_is_refused():
    spec = DownloadSpec(model="bge-m3")
    with pytest.raises(InvalidSpecError, match="asks for 4 completions"):
        build_download_job(spec.replace(completions=4, parallelism=4), _plan(spec))


def test_configmap_ships_the_library_source_and_the_plan(k8s_valid):
    spec = DownloadSpec(model="bge-m3")
    plan = _plan(spec)
    cm = k8s_valid(build_worker_configmap(spec, plan))
    from tke_playbook.download import worker

    assert cm["data"]["worker.py"] == open(worker.__file__, encoding="utf-8").read()
    assert "def write_completion" in cm["data"]["modelfolder.py"]
    assert "def shard_states" in cm["data"]["progress.py"]
    assert json.loads(cm["data"]["plan.json"])["plan_id"] == plan.plan_id
    assert cm["metadata"]["name"] == "download-bge-m3-worker"


def test_token_secret_is_valid_and_token_never_printed(k8s_valid):
    token = HubToken("hf_secretvalue")
    secret = k8s_valid(build_token_secret(token, spec=DownloadSpec(model="bge-m3")))
    assert secret["stringData"] == {"token": "hf_secretvalue"} and secret["metadata"]["name"] == "hub-token"
    assert "secretvalue" not in repr(token) and "secretvalue" not in str(token)
    assert "secretvalue" not in repr(DownloadSpec())
    with pytest.raises(InvalidSpecError, match="empty"):
        build_token_secret("  ")


def test_shipped_worker_files_import_only_stdlib_and_httpx():
    import ast
    import sys

    from tke_playbook.download.manifests import WORKER_FILES

    shipped = {name.removesuffix(".py") for name in WORKER_FILES}
    for name, path in WORKER_FILES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules = [node.module.split(".")[0]]
            else:
                continue
            for module in modules:
                assert module in sys.stdlib_module_names or module in shipped or module == "httpx", (name, module)


def test_download_objects_in_apply_order(k8s_valid):
    from tke_playbook.download import build_download_objects

    spec = DownloadSpec(model="bge-m3")
    kinds = [o["kind"] for o in build_download_objects(spec, _plan(spec), token=HubToken("t0ken"))]
    assert kinds == ["Secret", "ConfigMap", "Job"]
    assert [o["kind"] for o in build_download_objects(spec, _plan(spec))] == ["ConfigMap", "Job"]
    assert spec.pod_model_dir == "/data/BAAI/bge-m3"


# --- the pod's command, run here with sh: missing ConfigMap, pip out of reach, the full happy path -----------


def _pod_script(spec, shipped, root) -> str:
    """The Job's ``sh -c`` script with the pod's mount points moved into this test's folders."""
    from tke_playbook.download.manifests import DATA_DIR, WORKER_DIR

    script = build_download_job(spec)["spec"]["template"]["spec"]["containers"][0]["command"][2]
    return script.replace(WORKER_DIR, str(shipped)).replace(f"--root {DATA_DIR}", f"--root {root}")


def _sh(script, tmp_path, **env):
    import os
    import subprocess
    import sys
    from pathlib import Path

    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # `python` is this venv's
    # this machine's pip settings (local wheel folders, extra indexes) would stand in for the index under test
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON"))}
    base["PIP_CONFIG_FILE"] = os.devnull
    return subprocess.run(["sh", "-c", script], env={**base, "PATH": path, **env}, capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)


def test_pod_without_the_worker_configmap_stops_naming_it(tmp_path):
    spec = DownloadSpec(model="bge-m3")
    volumes = {v["name"]: v for v in build_download_job(spec)["spec"]["template"]["spec"]["volumes"]}
    assert volumes["worker"]["configMap"] == {"name": "download-bge-m3-worker", "optional": True}
    empty = tmp_path / "opt"
    empty.mkdir()  # what an optional ConfigMap volume looks like when the ConfigMap does not exist
    result = _sh(_pod_script(spec, empty, tmp_path / "data"), tmp_path)
    assert result.returncode == 2
    assert "apply ConfigMap 'download-bge-m3-worker'" in result.stderr and "namespace 'default'" in result.stderr
    assert not (tmp_path / "data").exists()


def test_pod_that_cannot_reach_the_pip_index_says_so(tmp_path):
    spec = DownloadSpec(model="bge-m3", pip_index_url="http://127.0.0.1:9/simple")  # nothing listens on port 9
    job = build_download_job(spec, _plan(spec))
    assert "http://127.0.0.1:9/simple" in job["metadata"]["annotations"]["tke-playbook.io/pip-install"]
    shipped = tmp_path / "opt"
    shipped.mkdir()
    for key, text in build_worker_configmap(spec, _plan(spec))["data"].items():
        (shipped / key).write_text(text)
    shadow = tmp_path / "shadow"  # make `import httpx` fail, as in the plain python image
    shadow.mkdir()
    (shadow / "httpx.py").write_text("raise ImportError('not in this image')\n")
    result = _sh(_pod_script(spec, shipped, tmp_path / "data"), tmp_path, PYTHONPATH=str(shadow),
                 PIP_TARGET=str(tmp_path / "site"))  # --target: pip must really fetch, httpx here or not
    assert result.returncode == 2, result.stderr
    assert "could not pip install httpx>=0.27,<1 from http://127.0.0.1:9/simple" in result.stderr
    assert "Set pip_index_url to a PyPI mirror" in result.stderr
    assert not (tmp_path / "data").exists()  # the worker never ran


def test_pod_command_runs_the_worker_end_to_end(hub, repo_dir, tmp_path):
    """With httpx in the image the install is skipped and the shipped worker downloads its shard."""
    from hubfiles import REPO, sha256

    from tke_playbook.download.listing import plan_download
    from tke_playbook.modelfolder import is_complete

    spec = DownloadSpec(model=REPO, source="huggingface", endpoint=hub.url, completions=1, parallelism=1,
                        pip_index_url="http://127.0.0.1:9/simple")
    plan = plan_download(spec)
    shipped = tmp_path / "opt"
    shipped.mkdir()
    for key, text in build_worker_configmap(spec, plan)["data"].items():
        (shipped / key).write_text(text)
    # had pip run, --target would make it fetch from the closed index and fail: the install really is skipped
    result = _sh(_pod_script(spec, shipped, tmp_path / "data"), tmp_path, JOB_COMPLETION_INDEX="0",
                 PIP_TARGET=str(tmp_path / "site"))
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "data" / REPO
    assert is_complete(folder)
    assert sha256(folder / "model.safetensors") == sha256(repo_dir / "model.safetensors")
