"""``tke-playbook``: render, helm values, fit, and one-line errors with exit status 2."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import pytest
import yaml

from tke_playbook.cli import build_parser, main
from tke_playbook.plan import build_helm_values
from tke_playbook.serving import seed_profile


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_render_seed_prints_the_plan(capsys, k8s_valid):
    code, out, err = run(capsys, "render", "--profile", "seed")
    assert code == 0 and err == ""
    docs = [d for d in yaml.safe_load_all(out) if d]
    assert [d["kind"] for d in docs] == ["PersistentVolumeClaim", "Job", "Secret", "Deployment", "Service"]
    for doc in docs:
        k8s_valid(doc)
    command = docs[3]["spec"]["template"]["spec"]["containers"][0]["command"][2]
    assert command.startswith("vllm serve /data/model --served-model-name intfloat/e5-mistral-7b-instruct -tp 1")


def test_render_helm_values(capsys):
    code, out, _ = run(capsys, "render", "--profile", "seed", "--helm-values")
    assert code == 0 and yaml.safe_load(out) == build_helm_values(seed_profile())


def test_render_overrides(capsys, monkeypatch):
    monkeypatch.setenv("MY_KEY", "abc")
    code, out, _ = run(capsys, "render", "--model", "BAAI/bge-m3", "--pvc", "models", "--completions", "2",
                       "--vllm-version", "0.12.0", "--service-type", "ClusterIP", "--namespace", "team-a",
                       "--vpc-id", "vpc-a1", "--subnet-id", "subnet-b2", "--api-key-env", "MY_KEY",
                       "--max-model-len", "8192", "--instance-type", "PNV5b.8XLARGE96", "--show-secrets")
    assert code == 0
    docs = {d["kind"]: d for d in yaml.safe_load_all(out) if d}
    assert docs["StorageClass"]["parameters"]["vpcid"] == "vpc-a1"
    assert docs["PersistentVolumeClaim"]["metadata"] == {**docs["PersistentVolumeClaim"]["metadata"],
                                                         "name": "models", "namespace": "team-a"}
    assert (docs["Job"]["spec"]["completions"], docs["Job"]["spec"]["parallelism"]) == (2, 2)
    assert docs["Service"]["spec"]["type"] == "ClusterIP" and docs["Deployment"]["metadata"]["name"] == "vllm-bge-m3"
    command = docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]["command"][2]
    assert "--cudagraph-capture-sizes" in command and "--disable-log-requests" not in command
    assert "--max-num-batched-tokens 16384" in command
    assert docs["Secret"]["data"]["api-key"] == "YWJj"  # base64("abc")


def test_render_redacts_secrets_unless_asked(capsys, monkeypatch, k8s_valid):
    monkeypatch.setenv("TKE_PLAYBOOK_API_KEY", "sup3r-s3cret-key")
    encoded = base64.b64encode(b"sup3r-s3cret-key").decode()
    code, out, _ = run(capsys, "render")
    assert code == 0 and "sup3r" not in out and encoded not in out
    secret = next(d for d in yaml.safe_load_all(out) if d and d["kind"] == "Secret")
    assert secret["data"] == {"api-key": "<redacted>"}
    assert any(line.startswith("# Secret values are shown as <redacted>") and "--show-secrets" in line
               for line in out.splitlines())
    code, out, _ = run(capsys, "render", "--show-secrets")
    secret = next(d for d in yaml.safe_load_all(out) if d and d["kind"] == "Secret")
    assert code == 0 and base64.b64decode(k8s_valid(secret)["data"]["api-key"]) == b"sup3r-s3cret-key"
    assert "<redacted>" not in out


def test_render_says_what_it_leaves_out(capsys):
    code, out, _ = run(capsys, "render", "--pip-index-url", "https://mirrors.cloud.tencent.com/pypi/simple")
    comments = [line for line in out.splitlines() if line.startswith("#")]
    assert code == 0
    assert any("StorageClass 'cfs' is not rendered" in c and "--vpc-id" in c for c in comments)
    assert any("ConfigMap 'download-e5-mistral-7b-instruct-worker'" in c and "NOT rendered" in c
               and "--list-files" in c for c in comments)
    assert any("pip install httpx" in c and "https://mirrors.cloud.tencent.com/pypi/simple" in c for c in comments)
    job = next(d for d in yaml.safe_load_all(out) if d and d["kind"] == "Job")
    assert "--index-url https://mirrors.cloud.tencent.com/pypi/simple" in \
        job["spec"]["template"]["spec"]["containers"][0]["command"][2]


def test_render_puts_download_pods_on_the_download_nodes(capsys, k8s_valid):
    code, out, _ = run(capsys, "render", "--node-selector", "node.kubernetes.io/instance-type=SA5.LARGE8",
                       "--node-selector", "tke.cloud.tencent.com/nodepool=download")
    job = k8s_valid(next(d for d in yaml.safe_load_all(out) if d and d["kind"] == "Job"))
    assert code == 0 and job["spec"]["template"]["spec"]["nodeSelector"] == {
        "node.kubernetes.io/instance-type": "SA5.LARGE8", "tke.cloud.tencent.com/nodepool": "download"}


def test_render_list_files_adds_the_worker_configmap(capsys, monkeypatch, tmp_path, k8s_valid):
    from tke_playbook.download.mirror import HubMirror

    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "model.safetensors").write_bytes(bytes(range(256)) * 400)
    (repo / "config.json").write_text("{}")
    with HubMirror({"BAAI/bge-small-en-v1.5": repo}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        code, out, err = run(capsys, "render", "--model", "bge-small-en-v1.5", "--source", "huggingface",
                             "--completions", "2", "--list-files")
    assert code == 0, err
    docs = [d for d in yaml.safe_load_all(out) if d]
    kinds = [d["kind"] for d in docs]
    assert kinds.index("ConfigMap") == kinds.index("Job") - 1
    for doc in docs:
        k8s_valid(doc)
    configmap, job = docs[kinds.index("ConfigMap")], docs[kinds.index("Job")]
    plan = json.loads(configmap["data"]["plan.json"])
    assert job["metadata"]["annotations"]["tke-playbook.io/plan-id"] == plan["plan_id"]
    assert len(plan["shards"]) == 2 and {f["path"] for f in plan["files"]} == {"model.safetensors", "config.json"}
    assert "NOT rendered" not in out


def test_fit_verdicts_and_exit_status(capsys):
    code, out, _ = run(capsys, "fit", "intfloat/e5-mistral-7b-instruct", "--gpu", "L20", "--max-model-len", "2048")
    assert code == 0 and out.splitlines()[0].startswith("intfloat/e5-mistral-7b-instruct fits on 1 × L20")
    assert "headroom" in out and "Fits on L20" in out
    code, out, _ = run(capsys, "fit", "e5-mistral-7b-instruct", "--gpu", "T4", "--max-model-len", "2048")
    assert code == 1 and "Does not fit" in out and "Use A10" in out


def test_gpus_lists_hardware(capsys):
    code, out, _ = run(capsys, "gpus")
    assert code == 0 and "PNV5b.8XLARGE96" in out and "SA5.LARGE8" in out and "L20" in out


BAD = [
    pytest.param(["render", "--pvc", "AI_Model"], "PVC name 'AI_Model' is not a valid Kubernetes name",
                 id="pvc-name"),
    pytest.param(["render", "--namespace", "Team_A"], "Namespace 'Team_A' is not a valid Kubernetes name",
                 id="namespace"),
    pytest.param(["render", "--size", "lots"], "PVC size 'lots' is not a Kubernetes quantity", id="quantity"),
    pytest.param(["render", "--port", "0"], "service port 0 is outside 1–65535", id="port-zero"),
    pytest.param(["render", "--port", "65536"], "service port 65536 is outside 1–65535", id="port-high"),
    pytest.param(["render", "--completions", "2", "--parallelism", "3"], "parallelism 3 is above completions 2",
                 id="parallelism-above-completions"),
    pytest.param(["render", "--parallelism", "0"], "parallelism 0 must be a whole number of at least 1",
                 id="parallelism-zero"),
    pytest.param(["render", "--completions", "0"], "completions 0 must be a whole number of at least 1",
                 id="completions-zero"),
    pytest.param(["render", "--tp", "2"], "tp_size × pp_size = 2 × 1 = 2 does not match the 1 GPU(s)",
                 id="tp-vs-gpus"),
    pytest.param(["render", "--model", "bge-m4"], "Unknown model 'bge-m4'. Did you mean 'BAAI/bge-m3'?",
                 id="unknown-model"),
    pytest.param(["render", "--max-model-len", "40000"], "max_model_len 40000 is above "
                 "intfloat/e5-mistral-7b-instruct's limit of 32768 tokens", id="length-above-limit"),
    pytest.param(["render", "--no-api-key"], "A public LoadBalancer without an API key", id="public-lb-no-key"),
    pytest.param(["render", "--gpu", "T4"], "Does not fit: e5-mistral-7b-instruct needs about", id="does-not-fit"),
    pytest.param(["render", "--profile", "sed"], "Unknown profile 'sed'. Did you mean 'seed'?", id="profile"),
    pytest.param(["render", "--pip-index-url", "pypi.example"], "pip_index_url 'pypi.example' must be a URL",
                 id="pip-index-url"),
    pytest.param(["render", "--node-selector", "SA5.LARGE8"], "--node-selector 'SA5.LARGE8' is not KEY=VALUE",
                 id="node-selector-not-key-value"),
    pytest.param(["render", "--node-selector", "pool=a b"], "node selector value 'a b' for 'pool' is not a valid "
                 "label value", id="node-selector-bad-value"),
    pytest.param(["render", "--vllm-version", "0.10.1", "--image", "x/vllm"], None, id="image-ok-with-version"),
    pytest.param(["fit", "e5-mistral-7b-instruct", "--gpu", "L2O"], "Unknown GPU or node type 'L2O'",
                 id="unknown-gpu"),
    pytest.param(["fit", "e5-mistral-7b-instruct", "--gpu", "L20", "--gpu-memory-utilization", "1.5"],
                 "gpu_memory_utilization 1.5 must be a fraction", id="utilization"),
]


@pytest.mark.parametrize("argv, message", BAD)
def test_bad_input_is_one_line_and_status_2(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    if message is None:
        assert code == 0
        return
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err
    assert err.startswith(f"tke-playbook {argv[0]}: error: ")


def test_usage_errors_are_one_line(capsys):
    code, _, err = run(capsys, "render", "--completions", "many")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "invalid int value" in err
    code, _, err = run(capsys, "explode")
    assert code == 2 and "invalid choice" in err


def test_other_areas_register_their_subcommands():
    choices = build_parser()._subparsers._group_actions[0].choices
    assert {"render", "fit", "gpus"} <= set(choices)
    for name in ("serve", "preflight"):  # present once those areas are installed
        if name in choices:
            assert choices[name].get_default("func") is not None


def test_module_entry_point():
    result = subprocess.run([sys.executable, "-m", "tke_playbook.cli", "render", "--profile", "seed",
                             "--helm-values"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout)["model"]["name"] == "intfloat/e5-mistral-7b-instruct"
