"""`tke-playbook render --profile seed --show-secrets` (no --list-files, no hub access) gives a download Job whose
pods need nothing the plan does not contain: the worker ConfigMap is there, and the pods list the hub themselves
and agree on one plan. Run here with the rendered objects as they are, against a hub on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys

import yaml
from hostile_hub import HostileHub

from tke_playbook.cli.commands import main
from tke_playbook.podworker.modelfolder import is_complete, read_manifest

FILES = {"model-00001-of-00002.safetensors": os.urandom(900_000), "model-00002-of-00002.safetensors":
         os.urandom(400_000), "config.json": b'{"model_type": "mistral"}', "tokenizer.json": os.urandom(20_000)}


def _render(capsys) -> list[dict]:
    assert main(["render", "--profile", "seed", "--show-secrets"]) == 0
    return [d for d in yaml.safe_load_all(capsys.readouterr().out) if d]


def test_rendered_job_references_only_what_the_plan_holds(capsys):
    docs = _render(capsys)
    job = next(d for d in docs if d["kind"] == "Job")
    pod = job["spec"]["template"]["spec"]
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for volume in pod["volumes"]:
        if "configMap" in volume:
            assert ("ConfigMap", volume["configMap"]["name"]) in names
        if "persistentVolumeClaim" in volume:
            assert ("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]) in names
    container = pod["containers"][0]
    assert "pip" not in " ".join(container["command"]) and container["command"][0] == "python"
    assert pod["automountServiceAccountToken"] is False


def test_rendered_pods_list_the_hub_and_complete_the_model(capsys, tmp_path):
    docs = _render(capsys)
    job = next(d for d in docs if d["kind"] == "Job")
    container = job["spec"]["template"]["spec"]["containers"][0]
    configmap = next(d for d in docs if d["kind"] == "ConfigMap")
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    shipped, data = tmp_path / "opt", tmp_path / "data"
    shipped.mkdir()
    for key, text in configmap["data"].items():
        (shipped / key).write_text(text)
    command = [c.replace(mounts["worker"], str(shipped)).replace(mounts["model-store"], str(data))
               for c in container["command"]]
    plain = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}  # a clean environment, as in the pod
    with HostileHub(FILES) as hub:
        env = {**plain, **{e["name"]: e["value"] for e in container["env"] if "value" in e},
               "MODELSCOPE_ENDPOINT": hub.url, "TKE_RUN_ID": "job-uid-1"}  # the node's route to a hub mirror
        for index in range(job["spec"]["completions"]):
            # -I: isolated (no site-packages, no PYTHON* variables, not even the script's folder on sys.path
            # from 3.11): the worker needs the standard library and the ConfigMap's files only
            pod = subprocess.run([sys.executable, "-I", "-S", *command[1:]], capture_output=True, text=True,
                                 env={**env, "JOB_COMPLETION_INDEX": str(index)}, timeout=120, cwd=tmp_path)
            assert pod.returncode == 0, pod.stderr
        fetched = set(hub.file_gets)
    folder = data / "intfloat" / "e5-mistral-7b-instruct"
    assert is_complete(folder)
    assert {f["path"] for f in read_manifest(folder)["files"]} == set(FILES)
    for name, content in FILES.items():
        assert (folder / name).read_bytes() == content
    assert fetched == set(FILES)
