"""``tke-playbook``: render, helm values, fit, and one-line errors with exit status 2."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import pytest
import yaml

from tke_playbook.cli.commands import build_parser, main
from tke_playbook.manifests.plan import build_helm_values
from tke_playbook.specs.serving import seed_profile


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_render_seed_prints_the_plan(capsys, k8s_valid):
    code, out, err = run(capsys, "render", "--profile", "seed")
    assert code == 0 and err == ""
    docs = [d for d in yaml.safe_load_all(out) if d]
    assert [d["kind"] for d in docs] == ["PersistentVolumeClaim", "ConfigMap", "Job", "Secret", "ConfigMap",
                                         "Deployment", "Service"]
    for doc in docs:
        k8s_valid(doc)
    command = docs[5]["spec"]["template"]["spec"]["containers"][0]["command"][2]
    assert command.startswith("vllm serve /data/model --served-model-name intfloat/e5-mistral-7b-instruct -tp 1")


def test_render_helm_values(capsys):
    code, out, _ = run(capsys, "render", "--profile", "seed", "--helm-values", "--service-type", "ClusterIP")
    assert code == 0 and yaml.safe_load(out) == build_helm_values(seed_profile().replace(service_type="ClusterIP"))
    code, out, err = run(capsys, "render", "--profile", "seed", "--helm-values")  # the tutorial's public LB
    assert code == 2 and out == "" and "cannot put the authenticating proxy" in err and len(err.splitlines()) == 1


def test_render_overrides(capsys, monkeypatch):
    monkeypatch.setenv("MY_KEY", "abc-0123456789-key")
    code, out, _ = run(capsys, "render", "--model", "BAAI/bge-m3", "--pvc", "models", "--completions", "2",
                       "--vllm-version", "0.12.0", "--service-type", "ClusterIP", "--namespace", "team-a",
                       "--vpc-id", "vpc-a1", "--subnet-id", "subnet-b2", "--zone", "ap-shanghai-2",
                       "--api-key-env", "MY_KEY",
                       "--max-model-len", "8192", "--instance-type", "PNV5b.8XLARGE96", "--show-secrets")
    assert code == 0
    docs = {d["kind"]: d for d in yaml.safe_load_all(out) if d}
    assert docs["StorageClass"]["parameters"] == {"vpcid": "vpc-a1", "subnetid": "subnet-b2", "zone": "ap-shanghai-2",
                                                  "vers": "3", "storagetype": "SD"}
    assert docs["PersistentVolumeClaim"]["metadata"] == {**docs["PersistentVolumeClaim"]["metadata"],
                                                         "name": "models", "namespace": "team-a"}
    assert (docs["Job"]["spec"]["completions"], docs["Job"]["spec"]["parallelism"]) == (2, 2)
    assert docs["Service"]["spec"]["type"] == "ClusterIP" and docs["Deployment"]["metadata"]["name"] == "vllm-bge-m3"
    command = docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]["command"][2]
    assert "--cudagraph-capture-sizes" in command and "--disable-log-requests" in command  # accepted until 0.17
    assert "--max-num-batched-tokens 16384" in command
    assert base64.b64decode(docs["Secret"]["data"]["api-key"]) == b"abc-0123456789-key"


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
    code, out, _ = run(capsys, "render")
    comments = [line for line in out.splitlines() if line.startswith("#")]
    assert code == 0
    assert any("StorageClass 'cfs' is not rendered" in c and "--vpc-id" in c and "--zone" in c for c in comments)
    assert any("nginx sidecar" in c for c in comments) and any("--lb-source-range" in c for c in comments)
    assert any("vLLM runs as the image's user (root)" in c for c in comments)


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
    plan = json.loads(configmap["data"]["plan.json"])["plan"]  # with --list-files the plan itself is shipped
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
    pytest.param(["render", "--parallelism", "0"], "parallelism 0 must be a whole number from 1 to 64",
                 id="parallelism-zero"),
    pytest.param(["render", "--completions", "0"], "completions 0 must be a whole number from 1 to 64",
                 id="completions-zero"),
    pytest.param(["render", "--tp", "2", "--gpus", "1"], "tp_size × pp_size = 2 × 1 = 2 does not match the 1 GPU(s)",
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
    pytest.param(["render", "--node-selector", "pool=a b"], "node selector value 'a b' for 'pool' is not valid: use "
                 "letters", id="node-selector-bad-value"),
    pytest.param(["render", "--vllm-version", "0.10.1", "--image", "x/vllm"], None, id="image-ok-with-version"),
    pytest.param(["render", "--nodes", "0"], "lws_group_size 0 must be a whole number of at least 1",
                 id="nodes-zero"),
    pytest.param(["render", "--nodes", "3", "--tp", "2"], "2 × 1 = 2 does not split evenly over 3 nodes",
                 id="nodes-vs-tp"),
    pytest.param(["render", "--zone", "guangzhou-3", "--vpc-id", "vpc-1", "--subnet-id", "subnet-1"],
                 "zone 'guangzhou-3' is not a Tencent Cloud zone", id="zone-malformed"),
    pytest.param(["render", "--zone", "ap-guangzhou-3"], "give vpc_id, subnet_id and zone together",
                 id="zone-alone"),
    pytest.param(["render", "--vpc-id", "vpc-1", "--subnet-id", "subnet-1"], "give vpc_id, subnet_id and zone",
                 id="vpc-subnet-without-zone"),
    pytest.param(["render", "--zone", "ap-guangzhou-3", "--vpc-id", "VPC1", "--subnet-id", "subnet-1"],
                 "vpc_id 'VPC1' does not look like a Tencent Cloud id", id="vpc-malformed"),
    pytest.param(["render", "--zone", "ap-guangzhou-3", "--vpc-id", "vpc-1", "--subnet-id", "sn-1"],
                 "subnet_id 'sn-1' does not look like a Tencent Cloud id", id="subnet-malformed"),
    pytest.param(["render", "--lb-source-range", "10.0.0.300/8"], "is not a CIDR block", id="cidr-malformed"),
    pytest.param(["render", "--lb-source-range", "10.1.2.3/8"], "has host bits set", id="cidr-host-bits"),
    pytest.param(["render", "--service-type", "ClusterIP", "--lb-source-range", "10.0.0.0/8"],
                 "use them with service type 'LoadBalancer'", id="cidr-without-lb"),
    pytest.param(["render", "--vllm-version", "latest"], "vLLM version 'latest' is not a version", id="vllm-version"),
    pytest.param(["render", "--vllm-version", ""], "vLLM version '' is not a version", id="vllm-version-empty"),
    pytest.param(["render", "--zone", "ap-shanghai-fsi-1", "--vpc-id", "vpc-1", "--subnet-id", "subnet-1"], None,
                 id="finance-zone-ok"),  # Tencent's finance zones have a three-part region (ap-shanghai-fsi)
    pytest.param(["render", "--helm-values"], "cannot put the authenticating proxy", id="helm-values-public-lb"),
    pytest.param(["render", "--helm-values", "--service-type", "LoadBalancer-internal", "--lb-subnet-id",
                  "subnet-1"], "cannot make an internal LoadBalancer", id="helm-values-internal-lb"),
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


@pytest.mark.parametrize("argv, message", [
    pytest.param(["--nodes", "two"], "invalid int value", id="nodes-not-int"),
    pytest.param(["--existing-files", "copy"], "invalid choice: 'copy'", id="existing-files")])
def test_bad_new_option_values_are_one_usage_line(capsys, argv, message):
    code, out, err = run(capsys, "render", *argv)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and message in err


def test_nodes_and_source_ranges_reach_the_plan(capsys, k8s_valid):
    code, out, _ = run(capsys, "render", "--nodes", "2", "--lb-source-range", "203.0.113.0/24",
                       "--lb-source-range", "198.51.100.7/32")
    docs = {d["kind"]: d for d in yaml.safe_load_all(out) if d}
    assert code == 0 and docs["LeaderWorkerSet"]["spec"]["leaderWorkerTemplate"]["size"] == 2
    assert "-tp 2" in docs["LeaderWorkerSet"]["spec"]["leaderWorkerTemplate"]["leaderTemplate"]["spec"][
        "containers"][0]["command"][2]  # --nodes alone: tensor parallel over the group's GPUs
    assert docs["Service"]["spec"]["loadBalancerSourceRanges"] == ["203.0.113.0/24", "198.51.100.7/32"]
    k8s_valid(docs["LeaderWorkerSet"])


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
                             "--helm-values", "--service-type", "ClusterIP"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout)["model"]["name"] == "intfloat/e5-mistral-7b-instruct"


@pytest.mark.parametrize("mode", ["adopt", "trust"])
def test_existing_files_reach_the_download_request(capsys, mode):
    code, out, _ = run(capsys, "render", "--existing-files", mode)
    worker = next(d for d in yaml.safe_load_all(out) if d and d["kind"] == "ConfigMap" and
                  d["metadata"]["name"].endswith("-worker"))
    assert code == 0 and json.loads(worker["data"]["plan.json"])["request"]["mode"] == mode


def test_pip_index_url_says_it_no_longer_does_anything(capsys):
    # download pods run a standard-library worker and install nothing (issue 10, item 8): the option is still
    # accepted for old scripts, but must not pretend to change the plan
    code, out, err = run(capsys, "render", "--pip-index-url", "https://mirrors.cloud.tencent.com/pypi/simple")
    assert code == 0 and "mirrors.cloud.tencent.com" not in out
    assert "--pip-index-url has no effect" in err
    help_text = build_parser(plugins=False)._subparsers._group_actions[0].choices["render"].format_help()
    assert "install httpx" not in help_text


def test_a_random_key_warns_that_applying_it_replaces_the_running_key(capsys, monkeypatch):
    # each render without $TKE_PLAYBOOK_API_KEY makes a new key, and the pod template carries its checksum: applying
    # it again restarts vLLM with a new key, which the plan must say (and how to keep one key)
    monkeypatch.delenv("TKE_PLAYBOOK_API_KEY", raising=False)
    code, out, _ = run(capsys, "render")
    comments = " ".join(line for line in out.splitlines() if line.startswith("#"))
    assert code == 0 and "restarts" in comments and "TKE_PLAYBOOK_API_KEY" in comments


def test_the_proxy_image_can_come_from_another_registry(capsys):
    # nodes that cannot pull from Docker Hub need the nginx image from a registry they reach (e.g. TCR / ccr)
    image = "ccr.ccs.tencentyun.com/example/nginx:1.28.0-alpine"
    code, out, _ = run(capsys, "render", "--proxy-image", image)
    deployment = next(d for d in yaml.safe_load_all(out) if d and d["kind"] == "Deployment")
    proxy = next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "auth-proxy")
    assert code == 0 and proxy["image"] == image
    code, out, err = run(capsys, "render", "--proxy-image", "nginx latest")
    assert code == 2 and out == "" and "proxy_image 'nginx latest' is not an image reference" in err
