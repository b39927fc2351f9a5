"""The serving spec: the tutorial's values, derived names, and every bad input with its message."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from tke_playbook.errors import InvalidSpecError, UnknownNameError
from tke_playbook.specs.serving import (TUTORIAL_IMAGE, PullPolicy, ServiceType, ServingChoices, ServingSpec, resolve,
                                       seed_profile, version_from_image)
from tke_playbook.specs.vllm_flags import parse_vllm_version

E5 = "intfloat/e5-mistral-7b-instruct"


def test_seed_reproduces_the_tutorial_values():
    seed = seed_profile()
    assert seed == ServingSpec.seed()
    assert (seed.model, seed.served_model_name) == (E5, E5)
    assert (seed.pvc_enabled, seed.pvc_name, seed.pvc_path) == (True, "ai-model", E5)
    assert (seed.local_enabled, seed.local_path) == (False, f"/data0/{E5}")
    assert (seed.replicas, seed.lws_group_size, seed.image) == (1, 1, TUTORIAL_IMAGE)
    assert seed.image == "ccr.ccs.tencentyun.com/tke-ai-playbook/vllm-openai:v0.10.1-20250801"
    assert seed.image_pull_policy is PullPolicy.IF_NOT_PRESENT
    assert (seed.gpu_count, seed.tp_size, seed.pp_size, seed.ep_enabled) == (1, 1, 1, False)
    assert (seed.max_model_len, seed.max_batch_size) == (2048, 32)
    assert seed.extra_args == ("--disable-log-requests", "--cuda-graph-sizes 1 2 4 8 16 24 32")
    assert seed.env == (("VLLM_WORKER_MULTIPROC_METHOD", "spawn"),)
    assert (seed.service_enabled, seed.service_type, seed.service_port) == (True, ServiceType.LOAD_BALANCER, 60000)
    assert (seed.labels, seed.pod_annotations) == ((), ())
    # the tutorial's curl sends a Bearer key: the seed requires one, kept in a Secret
    assert seed.api_key_required and seed.api_key_secret == "vllm-e5-mistral-7b-instruct-api-key"
    assert (seed.vllm_version, seed.gpu_memory_utilization, seed.gpu) == ("0.10.1", 0.9, "L20")


def test_names_derive_from_the_model_so_two_models_coexist():
    bge, e5 = resolve(ServingChoices(model="BAAI/bge-m3")), resolve(ServingChoices(model="e5-mistral-7b-instruct"))
    assert (bge.name, bge.api_key_secret, bge.pvc_path) == ("vllm-bge-m3", "vllm-bge-m3-api-key", "BAAI/bge-m3")
    assert (e5.name, e5.pvc_path) == ("vllm-e5-mistral-7b-instruct", E5)
    assert bge.name != e5.name and bge.api_key_secret != e5.api_key_secret


def test_default_service_is_cluster_internal():
    assert resolve(ServingChoices()).service_type is ServiceType.CLUSTER_IP


def test_encoder_models_get_a_batched_token_budget():
    assert resolve(ServingChoices(model="BAAI/bge-m3")).max_num_batched_tokens == 16384
    assert resolve(ServingChoices(model="BAAI/bge-m3", max_model_len=8192, max_num_batched_tokens=32768
                       )).max_num_batched_tokens == 32768
    assert resolve(ServingChoices(model=E5)).max_num_batched_tokens is None  # decoders keep vLLM's default


def test_replace_rederives_names_for_a_new_model():
    spec = seed_profile().replace(model="BAAI/bge-large-zh-v1.5", max_model_len=512)
    assert (spec.name, spec.served_model_name, spec.pvc_path) == ("vllm-bge-large-zh-v1-5", "BAAI/bge-large-zh-v1.5",
                                                                  "BAAI/bge-large-zh-v1.5")
    assert spec.max_num_batched_tokens == 16384


def test_replace_rederives_the_version_from_a_new_image():
    spec = seed_profile().replace(image="vllm/vllm-openai:v0.12.0")
    assert spec.vllm_version == "0.12.0"
    assert seed_profile().replace(image="vllm/vllm-openai:v0.12.0", vllm_version="0.11.0").vllm_version == "0.11.0"
    assert seed_profile().replace(name="e5").api_key_secret == "e5-api-key"


@pytest.mark.parametrize("text, expected", [("0.10.1", (0, 10, 1)), ("v0.12", (0, 12, 0)),
                                            ("v0.10.1-20250801", (0, 10, 1))])
def test_parse_vllm_version(text, expected):
    assert parse_vllm_version(text) == expected


def test_version_comes_from_the_image_tag():
    assert version_from_image("vllm/vllm-openai:v0.12.0") == "0.12.0"
    assert version_from_image("registry:5000/vllm/vllm-openai") is None
    assert resolve(ServingChoices(image="vllm/vllm-openai:v0.9.2")).vllm_version == "0.9.2"
    assert resolve(ServingChoices(image="vllm/vllm-openai:v0.9.2", vllm_version="0.10.1")).vllm_version == "0.10.1"


def test_enums_accept_their_values():
    spec = resolve(ServingChoices(service_type="LoadBalancer-internal", lb_subnet_id="subnet-abc123", image_pull_policy="always"))
    assert spec.service_type is ServiceType.LOAD_BALANCER_INTERNAL and spec.image_pull_policy is PullPolicy.ALWAYS


def test_spec_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        seed_profile().max_model_len = 4096


BAD = [
    pytest.param({"pvc_name": "AI_Model"}, "PVC name 'AI_Model' is not a valid Kubernetes name", id="pvc-uppercase"),
    pytest.param({"namespace": "team a"}, "Namespace 'team a' is not a valid Kubernetes name", id="namespace-space"),
    pytest.param({"name": "-vllm"}, "Deployment name '-vllm' is not a valid Kubernetes name", id="name-leading-dash"),
    pytest.param({"api_key_secret": "Key_Secret"}, "API key Secret name 'Key_Secret' is not a valid", id="secret-name"),
    pytest.param({"shm_size": "15 GB"}, "shm_size '15 GB' is not a Kubernetes quantity", id="shm-quantity"),
    pytest.param({"memory_request": "lots"}, "memory_request 'lots' is not a Kubernetes quantity", id="memory-qty"),
    pytest.param({"service_port": 0}, "service port 0 is outside 1–65535", id="port-zero"),
    pytest.param({"service_port": 70000}, "service port 70000 is outside 1–65535", id="port-too-high"),
    pytest.param({"tp_size": 2}, r"tp_size × pp_size = 2 × 1 = 2 does not match the 1 GPU\(s\)", id="tp-vs-gpus"),
    pytest.param({"gpu_count": 4, "tp_size": 2}, r"2 × 1 = 2 does not match the 4 GPU\(s\)", id="gpus-vs-tp"),
    pytest.param({"lws_group_size": 2}, r"does not match the 2 GPU\(s\) of a replica \(gpu_count 1 × "
                 r"lws_group_size 2\)", id="lws-vs-tp"),
    pytest.param({"max_model_len": 40000}, "max_model_len 40000 is above intfloat/e5-mistral-7b-instruct's limit "
                 "of 32768 tokens", id="length-above-model-limit"),
    pytest.param({"model": "BAAI/bge-m3", "max_model_len": 9000}, "limit of 8192", id="bge-length"),
    pytest.param({"max_model_len": 0}, "max_model_len 0 must be a whole number of at least 1", id="length-zero"),
    pytest.param({"replicas": 0}, "replicas 0 must be a whole number from 1 to 2,147,483,647", id="replicas-zero"),
    pytest.param({"max_batch_size": True}, "max_batch_size True must be a whole number", id="batch-bool"),
    pytest.param({"service_type": ServiceType.LOAD_BALANCER, "api_key_required": False},
                 "A public LoadBalancer without an API key", id="public-lb-without-key"),
    pytest.param({"service_type": ServiceType.LOAD_BALANCER_INTERNAL},
                 "An internal LoadBalancer needs the subnet", id="internal-lb-without-subnet"),
    pytest.param({"gpu_memory_utilization": 0}, r"gpu_memory_utilization 0 must be a fraction in \(0, 1\]",
                 id="utilization-zero"),
    pytest.param({"gpu_memory_utilization": 1.2}, "must be a fraction", id="utilization-above-one"),
    pytest.param({"pvc_enabled": False}, "Enable exactly one model source", id="no-model-source"),
    pytest.param({"local_enabled": True}, "Enable exactly one model source", id="two-model-sources"),
    pytest.param({"pvc_enabled": False, "local_enabled": True, "local_path": "data0/x"},
                 "local_path 'data0/x' must be an absolute path", id="relative-host-path"),
    pytest.param({"pvc_path": "../etc"}, "must stay inside the PVC", id="pvc-path-escape"),
    pytest.param({"env": {"VLLM_API_KEY": "sk-123"}}, "Do not put VLLM_API_KEY in env", id="literal-api-key"),
    pytest.param({"env": {"1BAD": "x"}}, "env name '1BAD' is not a valid variable name", id="env-name"),
    pytest.param({"labels": {"team": "search engine"}}, "label value 'search engine' for 'team' is not valid",
                 id="label-value"),
    pytest.param({"labels": {"-team": "a"}}, "label key '-team' is not valid", id="label-key"),
    pytest.param({"pod_annotations": {"Bad Key": "x"}}, "annotation key 'Bad Key' is not valid", id="annotation-key"),
    pytest.param({"image": "vllm openai"}, "image 'vllm openai' is not an image reference", id="image-space"),
    pytest.param({"image": "my-registry/vllm"}, "Cannot tell the vLLM version from image", id="untagged-image"),
    pytest.param({"vllm_version": "latest"}, "vLLM version 'latest' is not a version", id="bad-version"),
    pytest.param({"model": "BAAI/bge-m3", "max_num_batched_tokens": 1024},
                 "max_num_batched_tokens 1024 is below max_model_len 2048", id="budget-below-length"),
    pytest.param({"max_num_batched_tokens": 16}, "max_num_batched_tokens 16 is below max_batch_size 32",
                 id="budget-below-batch"),
]


@pytest.mark.parametrize("changes, message", BAD)
def test_bad_input_is_refused_with_a_clear_message(changes, message):
    with pytest.raises(InvalidSpecError, match=message):
        resolve(ServingChoices(**changes))


@pytest.mark.parametrize("changes, message", [
    pytest.param({"model": "bge-m4"}, "Unknown model 'bge-m4'. Did you mean 'BAAI/bge-m3'?", id="unknown-model"),
    pytest.param({"gpu": "L2O"}, "Unknown GPU 'L2O'. Did you mean 'L20'", id="unknown-gpu"),
    pytest.param({"service_type": "NodePorts"}, "Unknown service type 'NodePorts'", id="unknown-service-type"),
])
def test_unknown_names_suggest(changes, message):
    with pytest.raises(UnknownNameError) as info:
        resolve(ServingChoices(**changes))
    assert message in str(info.value)


def test_multi_node_spec_is_valid_when_gpus_add_up():
    spec = resolve(ServingChoices(lws_group_size=2, gpu_count=1, tp_size=1, pp_size=2))
    assert spec.is_multi_node


def test_profiles_pick_their_vllm():
    from tke_playbook.manifests.profiles import get_profile

    assert get_profile("seed").serving.image == "ccr.ccs.tencentyun.com/tke-ai-playbook/vllm-openai:v0.10.1-20250801"
    bge = get_profile("bge-m3").serving
    assert bge.image == "vllm/vllm-openai:v0.34.0" and bge.vllm_version == "0.34.0"  # newest checked release


def test_a_version_the_image_does_not_have_is_noted():
    from tke_playbook.manifests.plan import serving_notes

    notes = serving_notes(seed_profile().replace(vllm_version="0.33.0"))
    assert any("built for vLLM 0.33.0 but image" in n and "says 0.10.1" in n for n in notes)
    assert not any("built for vLLM" in n for n in serving_notes(seed_profile()))


@pytest.mark.parametrize("path", ["/model", "data0/model", "/"])
def test_local_path_needs_a_parent_folder(path):
    with pytest.raises(InvalidSpecError, match="inside a folder"):
        resolve(ServingChoices(pvc_enabled=False, local_enabled=True, local_path=path))


def test_source_ranges_are_normalised():
    spec = seed_profile().replace(lb_source_ranges=["203.0.113.0/24", "2001:DB8::/32"])
    assert spec.lb_source_ranges == ("203.0.113.0/24", "2001:db8::/32")
    assert seed_profile().replace(lb_source_ranges="10.0.0.0/8").lb_source_ranges == ("10.0.0.0/8",)


@pytest.mark.parametrize("image", ["", "nginx latest", None])
def test_bad_proxy_image_is_refused(image):
    with pytest.raises(InvalidSpecError, match="proxy_image"):
        seed_profile().replace(proxy_image=image)


PACKAGE = Path(__file__).resolve().parents[1] / "tke_playbook"
# imports inside functions, each with its reason: pandas only when a report becomes a table (the CLI stays light)
LATE_IMPORTS = {"specs/checks.py": {"pandas"}}


@pytest.mark.parametrize("name", sorted(f"{p.parent.name}/{p.name}" for layer in ("specs", "manifests")
                                         for p in (PACKAGE / layer).glob("*.py")))
def test_modules_import_at_the_top_unless_they_must_not(name):
    tree = ast.parse((PACKAGE / name).read_text())
    late = set()
    for function in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
        for node in ast.walk(function):
            if isinstance(node, ast.ImportFrom):
                late.add("." * node.level + (node.module or ""))
            elif isinstance(node, ast.Import):
                late.update(alias.name for alias in node.names)
    assert late <= LATE_IMPORTS.get(name, set()), f"{name} imports {late - LATE_IMPORTS.get(name, set())} late"
