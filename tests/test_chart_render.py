"""`render --helm-values` held to the tutorial's own chart, rendered by Helm's Go SDK (PyPI helm-python-sdk).

The chart is the reference copy in ``../shared/reference/upstream/vllm-inference-tke/`` (skipped, saying so, when
that folder is absent). For each spec the chart's Deployment (or LeaderWorkerSet) must match the toolkit's own:
the same ``vllm serve`` command line, the same effective environment (the API key from the same Secret), the
same resources, probes and volumes; no env name twice (the API server rejects duplicates in a LeaderWorkerSet and
Helm 4's server-side apply rejects them in a Deployment, facts.md section 8)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from tke_playbook.manifests.plan import build_helm_values, helm_values_notes
from tke_playbook.manifests.profiles import get_profile
from tke_playbook.manifests.serving import build_workload
from tke_playbook.specs.serving import seed_profile

CHART = Path(__file__).resolve().parents[2] / "shared" / "reference" / "upstream" / "vllm-inference-tke"
pytestmark = pytest.mark.skipif(not CHART.is_dir(), reason=f"the tutorial's chart is not at {CHART} (../shared absent)")

SEED = seed_profile().replace(service_type="ClusterIP")
SPECS = [
    pytest.param(SEED, id="seed-clusterip"),
    pytest.param(get_profile("bge-m3").serving, id="bge-m3-vllm-0.33"),
    pytest.param(SEED.replace(gpu_count=2, tp_size=2), id="two-gpus"),
    pytest.param(SEED.replace(vllm_version="0.9.2"), id="vllm-0.9.2"),
    pytest.param(SEED.replace(model="Qwen/Qwen3-Embedding-8B", max_model_len=2048), id="qwen3-8b-runner"),
    pytest.param(SEED.replace(api_key_required=False, node_instance_types=("PNV5b.8XLARGE96",)), id="no-key-pinned"),
    pytest.param(SEED.replace(lws_group_size=2, tp_size=2), id="two-nodes-lws"),
]


def render_chart(values: dict) -> list[dict]:
    from helm_python import Chart

    rendered = Chart.load(str(CHART)).render(values, name="vllm-service", namespace="default")
    return [d for text in rendered.values() for d in yaml.safe_load_all(text) if d]


def _workload(docs: list[dict]) -> dict:
    return next(d for d in docs if d["kind"] in ("Deployment", "LeaderWorkerSet"))


def _main_container(workload: dict) -> dict:
    if workload["kind"] == "LeaderWorkerSet":
        return workload["spec"]["leaderWorkerTemplate"]["leaderTemplate"]["spec"]["containers"][0]
    return workload["spec"]["template"]["spec"]["containers"][0]


def _pod(workload: dict) -> dict:
    if workload["kind"] == "LeaderWorkerSet":
        return workload["spec"]["leaderWorkerTemplate"]["leaderTemplate"]["spec"]
    return workload["spec"]["template"]["spec"]


def _argv(container: dict) -> list[str]:
    script = container["command"][2] if len(container["command"]) > 2 else container["args"][0]
    script = script.replace("\\\n", " ").split(";", 1)[-1]  # the LWS leader starts Ray first
    return shlex.split(script)


def effective(container: dict) -> dict:
    """What vLLM gets: argv without the key, the Secret the key comes from, the rest of the env."""
    argv, env = _argv(container), {e["name"]: e for e in container.get("env", ())}
    key_ref = None
    if "--api-key" in argv:  # from the chart: --api-key "${VAR:?…}" with VAR from a secretKeyRef
        i = argv.index("--api-key")
        var = re.match(r"^\$\{(\w+)", argv[i + 1]).group(1)
        key_ref = env.pop(var)["valueFrom"]["secretKeyRef"]
        del argv[i:i + 2]
        assert env.pop("VLLM_API_KEY").get("value") in (None, "")  # the chart's own line, left empty
    elif "VLLM_API_KEY" in env:
        entry = env.pop("VLLM_API_KEY")  # the chart writes an empty one when there is no key: vLLM ignores it
        key_ref = entry["valueFrom"]["secretKeyRef"] if "valueFrom" in entry else None
    return {"argv": argv, "key": key_ref,
            "env": {k: e.get("value", e.get("valueFrom")) for k, e in env.items()}}


def _resources(container: dict) -> dict:
    return {kind: {k: str(v) for k, v in values.items()} for kind, values in container["resources"].items()}


@pytest.mark.parametrize("spec", SPECS)
def test_chart_renders_what_the_toolkit_deploys(spec):
    chart = _workload(render_chart(build_helm_values(spec)))
    ours = build_workload(spec)
    assert chart["kind"] == ours["kind"]
    theirs_c, ours_c = _main_container(chart), _main_container(ours)
    assert effective(theirs_c) == effective(ours_c)
    assert _resources(theirs_c) == _resources(ours_c)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        theirs_p, ours_p = dict(theirs_c[probe]), dict(ours_c[probe])
        port = theirs_p["httpGet"]["port"]
        theirs_p["httpGet"] = {**theirs_p["httpGet"], "port": 60000 if port == "vllm" else port}
        assert theirs_p == ours_p, probe
    assert _pod(chart)["volumes"] == _pod(ours)["volumes"]
    strip = [{k: v for k, v in m.items() if k != "readOnly"} for m in ours_c["volumeMounts"]]
    assert theirs_c["volumeMounts"] == strip  # ours adds readOnly on the mount (never on the volume)
    assert all(m.get("readOnly") for m in ours_c["volumeMounts"] if m["name"] == "model")


@pytest.mark.parametrize("spec", SPECS)
def test_chart_env_has_no_name_twice(spec):
    for doc in render_chart(build_helm_values(spec)):
        if doc["kind"] not in ("Deployment", "LeaderWorkerSet"):
            continue
        pods = [doc["spec"]["template"]["spec"]] if doc["kind"] == "Deployment" else [
            doc["spec"]["leaderWorkerTemplate"][t]["spec"] for t in ("leaderTemplate", "workerTemplate")]
        for pod in pods:
            for container in pod["containers"]:
                names = [e["name"] for e in container.get("env", ())]
                assert len(names) == len(set(names)), f"{container['name']}: {names}"


def _prune_nulls(value):
    """The API server drops null fields of a custom resource before validation (unless the schema says nullable);
    the chart writes `value:` (null) for an empty apiKey."""
    if isinstance(value, dict):
        return {k: _prune_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_prune_nulls(v) for v in value]
    return value


@pytest.mark.parametrize("spec", SPECS)
def test_chart_output_is_strictly_valid(spec, k8s_valid):
    for doc in render_chart(build_helm_values(spec)):
        k8s_valid(_prune_nulls(doc) if doc["kind"] == "LeaderWorkerSet" else doc)


def test_chart_pods_ask_for_cpu_and_memory():
    container = _main_container(_workload(render_chart(build_helm_values(SEED))))
    assert {"cpu", "memory"} <= container["resources"]["requests"].keys()  # not BestEffort beside a 15Gi shm


def test_key_never_sits_in_the_values_in_plain_text():
    values = build_helm_values(SEED)
    assert values["server"]["apiKey"] == ""
    assert "valueFrom" in values["server"]["env"][-1]


def test_chart_command_stops_when_the_key_is_missing():
    argv = _argv(_main_container(_workload(render_chart(build_helm_values(SEED)))))
    # bash's ${VAR:?message} stops vLLM from starting without a key instead of serving unprotected
    assert re.match(r"^\$\{TKE_PLAYBOOK_VLLM_API_KEY:\?.*\}$", argv[argv.index("--api-key") + 1])


def test_the_chart_reference_is_the_tutorials():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["name"] == "vllm-inference-service"
    assert "VLLM_API_KEY" in (CHART / "templates" / "server.yaml").read_text()


def test_what_the_chart_fixes_is_said_not_silently_dropped():
    # the chart hard-codes /dev/shm (15Gi) and the startup probe (360 × 10 s): a spec asking otherwise gets the
    # chart's values, and the notes must say so (read from the rendered chart, not from our own constants)
    spec = SEED.replace(shm_size="30Gi", startup_timeout_s=7200)
    chart, ours = _workload(render_chart(build_helm_values(spec))), build_workload(spec)
    notes = " ".join(helm_values_notes(spec))
    shm = [next(v for v in _pod(w)["volumes"] if v["name"] == "dshm")["emptyDir"]["sizeLimit"] for w in (chart, ours)]
    assert shm[0] != shm[1] and "shm_size 30Gi" in notes and shm[0] in notes
    startup = [_main_container(w)["startupProbe"]["failureThreshold"] for w in (chart, ours)]
    assert startup[0] != startup[1] and "startup_timeout_s 7200" in notes
    assert not any("shm_size" in n or "startup_timeout_s" in n for n in helm_values_notes(SEED))
