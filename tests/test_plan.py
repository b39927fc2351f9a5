"""The whole plan: order, strict validation, YAML, the chart's values, and cross-spec mistakes."""

from __future__ import annotations

import base64

import pytest
import yaml

from tke_playbook.errors import FitError, InvalidSpecError
from tke_playbook.manifests.plan import build_helm_values, build_plan, check_consistency, helm_values_notes, plan_notes
from tke_playbook.manifests.profiles import get_profile, with_overrides
from tke_playbook.manifests.yamldoc import plan_to_yaml
from tke_playbook.podworker.planner import RepoFile, make_plan
from tke_playbook.specs.download import DownloadSpec
from tke_playbook.specs.serving import ServingChoices, resolve, seed_profile
from tke_playbook.specs.storage import StorageSpec

KEY = "plan-test-key-0123456789"  # a key by specs.apikeys.API_KEY_RULE
SALT = bytes(32)  # the secret salt of the key-revision annotation, which the caller keeps (hostenv.annotation_salt)

# The tutorial's values.yaml (seed-tutorial-zh.txt), with its indentation restored from the chart.
TUTORIAL_VALUES = yaml.safe_load("""
model:
  name: "intfloat/e5-mistral-7b-instruct"
  pvc:
    enabled: true
    name: "ai-model"
    path: "intfloat/e5-mistral-7b-instruct"
  local:
    enabled: false
    path: "/data0/intfloat/e5-mistral-7b-instruct"
server:
  replicas: 1
  lwsGroupSize: 1
  image: "ccr.ccs.tencentyun.com/tke-ai-playbook/vllm-openai:v0.10.1-20250801"
  imagePullPolicy: IfNotPresent
  apiKey: ""
  resources:
    requests:
      nvidia.com/gpu: 1
    limits:
      nvidia.com/gpu: 1
  args:
    tpSize: 1
    ppSize: 1
    epEnabled: false
    maxModelLen: 2048
    maxBatchSize: 32
  extraArgs:
  - --disable-log-requests
  - --cuda-graph-sizes 1 2 4 8 16 24 32
  env:
  - name: VLLM_WORKER_MULTIPROC_METHOD
    value: "spawn"
  service:
    enabled: true
    type: LoadBalancer
    port: 60000
labels: {}
podAnnotations: {}
""")


def _seed():
    profile = get_profile("seed")
    return profile.storage, profile.download, profile.serving


def test_seed_plan_order_and_validity(k8s_valid):
    manifests = build_plan(*_seed(), api_key=KEY, key_salt=SALT)
    assert [(m["kind"], m["metadata"]["name"]) for m in manifests] == [
        ("PersistentVolumeClaim", "ai-model"), ("ConfigMap", "download-e5-mistral-7b-instruct-worker"),
        ("Job", "download-e5-mistral-7b-instruct"), ("Secret", "vllm-e5-mistral-7b-instruct-api-key"),
        ("ConfigMap", "vllm-e5-mistral-7b-instruct-proxy"), ("Deployment", "vllm-e5-mistral-7b-instruct"),
        ("Service", "vllm-e5-mistral-7b-instruct")]
    for manifest in manifests:
        k8s_valid(manifest)
    assert base64.b64decode(manifests[3]["data"]["api-key"]) == KEY.encode()
    job = manifests[2]["spec"]
    assert (job["completions"], job["parallelism"]) == (3, 3)


def test_full_plan_with_storage_class_and_worker_configmap(k8s_valid):
    storage, download, serving = _seed()
    storage = StorageSpec(vpc_id="vpc-abc123", subnet_id="subnet-def456", zone="ap-guangzhou-3")
    files = [RepoFile("config.json", 600), *(RepoFile(f"model-0000{i}-of-00002.safetensors", 7_000_000_000)
                                              for i in (1, 2))]
    manifests = build_plan(storage, download, serving, download_plan=make_plan(download, files), api_key=KEY,
                           key_salt=SALT)
    kinds = [m["kind"] for m in manifests]
    assert kinds == ["StorageClass", "PersistentVolumeClaim", "ConfigMap", "Job", "Secret", "ConfigMap", "Deployment",
                     "Service"]
    for manifest in manifests:
        k8s_valid(manifest)


def test_the_plan_takes_the_api_key_it_is_given_and_draws_none(monkeypatch):
    # manifests are pure (issue 22): the key is the caller's to choose (the CLI: $TKE_PLAYBOOK_API_KEY, else random)
    monkeypatch.setenv("TKE_PLAYBOOK_API_KEY", "from-env-0123456789")
    secret = next(m for m in build_plan(*_seed(), api_key=KEY, key_salt=SALT) if m["kind"] == "Secret")
    assert base64.b64decode(secret["data"]["api-key"]) == KEY.encode()
    with pytest.raises(InvalidSpecError, match="needs the API key for Secret 'vllm-e5-mistral-7b-instruct-api-key'"):
        build_plan(*_seed())
    storage, download, serving = _seed()
    assert not any(m["kind"] == "Secret" for m in build_plan(storage, download, serving.replace(
        api_key_required=False, service_type="ClusterIP")))


def test_the_cli_takes_the_key_from_the_environment_or_draws_one(capsys, monkeypatch):
    from tke_playbook.cli.commands import main

    def rendered_key() -> bytes:
        assert main(["render", "--show-secrets"]) == 0
        docs = [d for d in yaml.safe_load_all(capsys.readouterr().out) if d]
        return base64.b64decode(next(d for d in docs if d["kind"] == "Secret")["data"]["api-key"])

    monkeypatch.setenv("TKE_PLAYBOOK_API_KEY", "from-env-0123456789")
    assert rendered_key() == b"from-env-0123456789"
    monkeypatch.delenv("TKE_PLAYBOOK_API_KEY")
    keys = {rendered_key() for _ in range(2)}
    assert len(keys) == 2 and all(len(k) >= 24 for k in keys)


def test_yaml_round_trips_and_carries_notes():
    storage, download, serving = _seed()
    manifests = build_plan(storage, download, serving, api_key=KEY, key_salt=SALT)
    text = plan_to_yaml(manifests, plan_notes(storage, download, serving))
    assert text.startswith("# StorageClass 'cfs' is not rendered")
    assert [d for d in yaml.safe_load_all(text) if d] == manifests
    assert text.splitlines().count("---") == len(manifests)  # one separator before each document


def test_seed_helm_values_are_the_tutorials_with_the_key_in_a_secret():
    values = build_helm_values(seed_profile().replace(service_type="ClusterIP"))
    expected = yaml.safe_load(yaml.safe_dump(TUTORIAL_VALUES))
    # the chart always writes VLLM_API_KEY from apiKey: a second VLLM_API_KEY in env would duplicate it (facts.md 8)
    expected["server"]["env"].append({"name": "TKE_PLAYBOOK_VLLM_API_KEY", "valueFrom": {"secretKeyRef": {
        "name": "vllm-e5-mistral-7b-instruct-api-key", "key": "api-key"}}})
    expected["server"]["extraArgs"] = ["--gpu-memory-utilization 0.9", *expected["server"]["extraArgs"],
                                       '--api-key "${TKE_PLAYBOOK_VLLM_API_KEY:?the API key Secret '
                                       'vllm-e5-mistral-7b-instruct-api-key is missing}"']
    expected["server"]["resources"]["requests"].update(cpu="4", memory="22Gi")  # the chart passes them through
    expected["server"]["service"]["type"] = "ClusterIP"
    assert values == expected
    assert [e["name"] for e in values["server"]["env"]].count("VLLM_API_KEY") == 0


def test_helm_values_follow_the_vllm_version_and_options():
    spec = seed_profile().replace(vllm_version="0.12.0", node_instance_types=("PNV5b.8XLARGE96",),
                                  service_type="ClusterIP", api_key_required=False, ep_enabled=True)
    values = build_helm_values(spec)
    assert values["server"]["extraArgs"] == ["--gpu-memory-utilization 0.9", "--disable-log-requests",
                                             "--cudagraph-capture-sizes 1 2 4 8 16 24 32"]
    assert values["instanceType"] == ["PNV5b.8XLARGE96"] and values["server"]["args"]["epEnabled"] is True
    assert values["server"]["service"]["type"] == "ClusterIP"
    assert values["server"]["env"] == [{"name": "VLLM_WORKER_MULTIPROC_METHOD", "value": "spawn"}]
    bge = build_helm_values(resolve(ServingChoices(model="BAAI/bge-m3", extra_args=(), api_key_required=False)))
    assert bge["server"]["extraArgs"] == ["--max-num-batched-tokens 16384", "--gpu-memory-utilization 0.9"]


@pytest.mark.parametrize("spec, message", [
    pytest.param(resolve(ServingChoices(service_type="LoadBalancer-internal", lb_subnet_id="subnet-a1")),
                 "cannot make an internal LoadBalancer", id="internal-lb"),
    pytest.param(seed_profile(), "cannot put the authenticating proxy", id="public-lb-proxy"),
])
def test_helm_values_refuse_what_the_chart_cannot_express(spec, message):
    with pytest.raises(InvalidSpecError, match=message):
        build_helm_values(spec)


@pytest.mark.parametrize("storage, download, serving, message", [
    pytest.param(StorageSpec(), DownloadSpec(pvc="other"), None, "writes to PVC 'other'", id="download-pvc"),
    pytest.param(StorageSpec(), None, resolve(ServingChoices(pvc_name="other")), "vLLM reads PVC 'other'", id="serving-pvc"),
    pytest.param(StorageSpec(namespace="a"), None, resolve(ServingChoices(namespace="b")), "different namespaces",
                 id="namespaces"),
    pytest.param(None, DownloadSpec(model="BAAI/bge-m3"), resolve(ServingChoices()), "serve the downloaded model",
                 id="serving-another-model"),
])
def test_specs_that_disagree_are_refused(storage, download, serving, message):
    with pytest.raises(InvalidSpecError, match=message):
        check_consistency(storage, download, serving)


def test_a_model_that_does_not_fit_fails_before_rendering():
    with pytest.raises(FitError, match="Does not fit") as info:
        build_plan(None, None, seed_profile().replace(gpu="T4"))
    assert info.value.obj.fits is False
    assert build_plan(None, None, seed_profile().replace(gpu="T4"), check_fit=False, api_key=KEY, key_salt=SALT)


def test_bge_and_e5_side_by_side_share_only_the_pvc(k8s_valid):
    e5 = get_profile("seed")
    bge = with_overrides(e5, model="BAAI/bge-m3", completions=1)
    names = [(m["kind"], m["metadata"]["name"]) for p in (e5, bge)
             for m in build_plan(None, p.download, p.serving, api_key=KEY, key_salt=SALT)]
    assert len(names) == len(set(names)) == 12  # worker ConfigMap, Job, Secret, proxy ConfigMap, Deployment, Service
    assert bge.serving.max_model_len == 2048 and bge.download.parallelism == 1


def test_overrides_keep_specs_consistent():
    profile = with_overrides(get_profile("seed"), pvc="models", namespace="team-a", model="bge-large-zh-v1.5")
    assert profile.storage.pvc_name == profile.download.pvc == profile.serving.pvc_name == "models"
    assert {profile.storage.namespace, profile.download.namespace, profile.serving.namespace} == {"team-a"}
    assert profile.serving.max_model_len == 512  # the model's limit, below the seed's 2048
    check_consistency(profile.storage, profile.download, profile.serving)


def test_notes_explain_translations():
    notes = plan_notes(None, None, seed_profile().replace(vllm_version="0.17.0"))
    assert any("dropped --disable-log-requests" in n for n in notes)
    assert any(n.startswith("intfloat/e5-mistral-7b-instruct fits on 1 × L20") for n in notes)


def test_render_profile_for_notebooks_and_demo():
    from tke_playbook.manifests.profiles import render_profile

    text = render_profile("seed", api_key=KEY, key_salt=SALT)
    assert text.startswith("# tke-playbook plan, profile seed: the tutorial")
    assert [d["kind"] for d in yaml.safe_load_all(text) if d][-2:] == ["Deployment", "Service"]
    cluster_ip = with_overrides(get_profile("seed"), serving={"service_type": "ClusterIP"})
    assert yaml.safe_load(render_profile(cluster_ip, helm_values=True)) == build_helm_values(cluster_ip.serving)


def test_render_profile_redacts_secrets_unless_show_secrets():
    from tke_playbook.manifests.profiles import render_profile

    shown = [d for d in yaml.safe_load_all(render_profile("seed", api_key=KEY, key_salt=SALT)) if d]
    assert next(d for d in shown if d["kind"] == "Secret")["data"] == {"api-key": "<redacted>"}
    appliable = [d for d in yaml.safe_load_all(render_profile("seed", api_key=KEY, key_salt=SALT, show_secrets=True))
                 if d]
    secret = next(d for d in appliable if d["kind"] == "Secret")
    assert base64.b64decode(secret["data"]["api-key"]) == KEY.encode()
    assert [d["kind"] for d in shown] == [d["kind"] for d in appliable]


def test_download_worker_configmap_is_always_in_the_plan():
    storage, download, serving = _seed()
    kinds = {(m["kind"], m["metadata"]["name"])
             for m in build_plan(storage, download, serving, api_key=KEY, key_salt=SALT)}
    assert ("ConfigMap", download.configmap_name) in kinds
    assert not any("NOT rendered" in n for n in plan_notes(storage, download, serving))


def test_every_reference_of_the_seed_plan_is_in_it():
    from tke_playbook.manifests.plan import references

    manifests = build_plan(*_seed(), api_key=KEY, key_salt=SALT)
    present = {(m["kind"], m["metadata"]["name"]) for m in manifests}
    needed = set().union(*(references(m) for m in manifests))
    assert ("Secret", "vllm-e5-mistral-7b-instruct-api-key") in needed
    assert ("ConfigMap", "vllm-e5-mistral-7b-instruct-proxy") in needed
    assert ("PersistentVolumeClaim", "ai-model") in needed
    assert needed <= present


@pytest.mark.parametrize("drop, message", [
    pytest.param("Secret", "needs Secret 'vllm-e5-mistral-7b-instruct-api-key'", id="secret"),
    pytest.param("PersistentVolumeClaim", "needs PersistentVolumeClaim 'ai-model'", id="pvc"),
])
def test_a_missing_reference_is_refused(drop, message):
    from tke_playbook.manifests.plan import check_references

    manifests = [m for m in build_plan(*_seed(), api_key=KEY, key_salt=SALT) if m["kind"] != drop]
    with pytest.raises(InvalidSpecError, match=message):
        check_references(manifests)
    kind, name = {"Secret": ("Secret", "vllm-e5-mistral-7b-instruct-api-key"),
                  "PersistentVolumeClaim": ("PersistentVolumeClaim", "ai-model")}[drop]
    check_references(manifests, [f"{kind}/{name}"])  # named as pre-existing: fine
    check_references(manifests, [(kind, name)])


def test_optional_references_need_not_exist():
    from tke_playbook.manifests.plan import references

    job = {"kind": "Job", "metadata": {"name": "j"}, "spec": {"template": {"spec": {
        "containers": [{"name": "c", "env": [{"name": "T", "valueFrom": {"secretKeyRef": {
            "name": "hub-token", "key": "token", "optional": True}}}]}],
        "volumes": [{"name": "w", "configMap": {"name": "cm", "optional": True}},
                    {"name": "s", "secret": {"secretName": "needed"}}]}}}}
    assert references(job) == {("Secret", "needed")}


def test_without_storage_the_pvc_is_pre_existing_and_bad_names_are_refused():
    # the PVC exists already (the tutorial's console step)
    build_plan(None, None, seed_profile(), api_key=KEY, key_salt=SALT)
    with pytest.raises(InvalidSpecError, match="must be written like 'Secret/hub-token'"):
        build_plan(None, None, seed_profile(), api_key=KEY, key_salt=SALT, pre_existing=["hub-token"])


def test_a_multi_node_group_behind_the_proxy_does_not_claim_vllm_is_unreachable():
    # the LeaderWorkerSet leader runs on the host network (as the chart's), so vLLM's 60000 and Ray's ports sit on
    # the GPU node's own address: the Service does not publish them, but only the node's security group closes them
    notes = " ".join(plan_notes(None, None, seed_profile().replace(lws_group_size=2, tp_size=2)))
    assert "stays inside the cluster" not in notes
    assert "host network" in notes and "security group" in notes
    single = " ".join(plan_notes(None, None, seed_profile()))
    assert "security group" not in single


def test_helm_values_say_how_to_create_the_secret_they_refer_to():
    # the chart renders no Secret, but its pods need one (secretKeyRef): the notes must say how to make it
    spec = seed_profile().replace(service_type="ClusterIP", namespace="team-a")
    notes = " ".join(helm_values_notes(spec))
    assert (f"kubectl -n team-a create secret generic {spec.api_key_secret} --from-literal=api-key=" in notes)
