"""Issue 10's acceptance matrix: `tke-playbook render --profile seed` with each change below gives objects that
are strictly valid (Kubernetes 1.28 and 1.33; LeaderWorkerSets against the LWS v0.10.0 CRD), a vLLM command line
that release accepts (facts.md section 3), every referenced ConfigMap/Secret/PVC in the plan, `Recreate` (or no
surge) for GPU Deployments, CPU and memory requests on every container, and a public LoadBalancer that never
reaches vLLM's port. The checks below walk the YAML themselves; they do not call the toolkit's own checkers."""

from __future__ import annotations

import json
import shlex

import pytest
import yaml

from tke_playbook.cli.commands import main

VLLM_PORT = 60000
MATRIX = [
    pytest.param([], id="seed"),
    pytest.param(["--model", "BAAI/bge-m3"], id="bge-m3"),
    pytest.param(["--model", "Qwen/Qwen3-Embedding-8B"], id="qwen3-8b"),
    pytest.param(["--gpus", "2"], id="two-gpus"),
    pytest.param(["--nodes", "2", "--tp", "2"], id="two-nodes"),
    pytest.param(["--vllm-version", "0.9.2"], id="vllm-0.9.2"),
    pytest.param(["--vllm-version", "0.10.1"], id="vllm-0.10.1"),
    pytest.param(["--vllm-version", "0.11.2"], id="vllm-0.11.2"),
    pytest.param(["--vllm-version", "0.33.0"], id="vllm-0.33.0"),
    pytest.param(["--service-type", "LoadBalancer"], id="public-lb"),
    pytest.param(["--zone", "ap-guangzhou-3", "--vpc-id", "vpc-1", "--subnet-id", "subnet-1"], id="cfs-zone"),
    # issue 24: the retrieval stack, on both releases whose parsers were run on these lines (test_vllm_parsers.py)
    *[pytest.param([*args, "--vllm-version", v], id=f"{name}-{v}") for v in ("0.33.0", "0.34.0") for name, args in (
        ("reranker-bge", ["--model", "BAAI/bge-reranker-v2-m3"]),
        ("reranker-qwen3", ["--model", "Qwen/Qwen3-Reranker-0.6B"]),
        ("bge-m3-sparse", ["--model", "BAAI/bge-m3", "--pooling-mode", "sparse"]),
        ("bge-m3-multi-vector", ["--model", "BAAI/bge-m3", "--pooling-mode", "multi-vector"]),
        ("matryoshka-qwen3-4b", ["--model", "Qwen/Qwen3-Embedding-4B"]),
        ("reranker-public-lb", ["--model", "Qwen/Qwen3-Reranker-0.6B", "--service-type", "LoadBalancer"]))],
]

# facts.md section 3: the releases that reject a flag (True = accepted), as read from their own parsers
REJECTED = {
    "--task": ("0.13.0", "0.33.0"),
    "--runner": ("0.9.2",), "--convert": ("0.9.2",), "--enable-log-requests": ("0.9.2",),
    "--disable-log-requests": ("0.17.0", "0.20.0"),
    "--cuda-graph-sizes": ("0.13.0", "0.33.0"),
    "--cudagraph-capture-sizes": ("0.9.2", "0.10.1", "0.11.0"),
    "--max-cudagraph-capture-size": ("0.9.2", "0.10.1", "0.11.0"),
    "--override-pooler-config": ("0.12.0", "0.33.0"),
    "--pooler-config": ("0.9.2", "0.10.1"),
}
CORE_FLAGS = {"--served-model-name", "--max-model-len", "--max-num-seqs", "--host", "--port",
              "--gpu-memory-utilization", "--max-num-batched-tokens", "--distributed-executor-backend",
              "--enable-expert-parallel", "--hf-overrides", *REJECTED}  # --hf-overrides: no checked release rejects it


def _render(capsys, args) -> list[dict]:
    code = main(["render", "--profile", "seed", "--show-secrets", *args])
    out, err = capsys.readouterr()
    assert code == 0, err
    return [d for d in yaml.safe_load_all(out) if d]


def _pods(doc: dict) -> list[dict]:
    if doc["kind"] == "LeaderWorkerSet":
        lwt = doc["spec"]["leaderWorkerTemplate"]
        return [lwt["leaderTemplate"]["spec"], lwt["workerTemplate"]["spec"]]
    if doc["kind"] in ("Deployment", "Job"):
        return [doc["spec"]["template"]["spec"]]
    return []


def _containers(pod: dict) -> list[dict]:
    return [*pod.get("initContainers", ()), *pod["containers"]]


def _refs(value, found: set) -> set:
    """Every non-optional (kind, name) a pod spec points at, found by walking it."""
    if isinstance(value, dict):
        optional = value.get("optional") is True
        for key, kind in (("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap"), ("secretRef", "Secret"),
                          ("configMapRef", "ConfigMap"), ("configMap", "ConfigMap")):
            ref = value.get(key)
            if isinstance(ref, dict) and "name" in ref and ref.get("optional") is not True:
                found.add((kind, ref["name"]))
        if isinstance(value.get("secret"), dict) and value["secret"].get("optional") is not True:
            found.add(("Secret", value["secret"]["secretName"]))
        if isinstance(value.get("persistentVolumeClaim"), dict):
            found.add(("PersistentVolumeClaim", value["persistentVolumeClaim"]["claimName"]))
        for child in value.values():
            if not optional:
                _refs(child, found)
    elif isinstance(value, list):
        for child in value:
            _refs(child, found)
    return found


def _version(args) -> str:
    return args[args.index("--vllm-version") + 1] if "--vllm-version" in args else "0.10.1"  # the seed's image


def _vllm_argv(container: dict) -> list[str] | None:
    script = container["command"][-1]
    if "vllm serve" not in script:
        return None
    return shlex.split(script[script.index("vllm serve"):])


@pytest.mark.parametrize("args", MATRIX)
def test_acceptance(capsys, args, k8s_valid):
    docs = _render(capsys, args)
    for doc in docs:
        k8s_valid(doc)
    present = {(d["kind"], d["metadata"]["name"]) for d in docs}
    lines = []
    for doc in docs:
        for pod in _pods(doc):
            missing = _refs(pod, set()) - present
            assert not missing, f"{doc['kind']}/{doc['metadata']['name']} refers to {missing}"
            for container in _containers(pod):
                assert {"cpu", "memory"} <= container.get("resources", {}).get("requests", {}).keys(), \
                    f"{doc['kind']}/{container['name']} has no CPU/memory request"
                argv = _vllm_argv(container)
                lines += [argv] if argv else []
        if doc["kind"] == "Deployment" and _needs_gpu(doc):
            strategy = doc["spec"]["strategy"]
            assert strategy["type"] == "Recreate" or strategy["rollingUpdate"]["maxSurge"] == 0
    assert lines, "no vllm serve command line"
    for argv in lines:
        _check_command_line(argv, _version(args))
    _check_exposure(docs)


def _needs_gpu(doc: dict) -> bool:
    return any("nvidia.com/gpu" in c.get("resources", {}).get("limits", {})
               for p in _pods(doc) for c in p["containers"])


def _check_command_line(argv: list[str], version: str) -> None:
    assert argv[:3] == ["vllm", "serve", "/data/model"]
    flags = [t for t in argv if t.startswith("--")]
    assert set(flags) <= CORE_FLAGS, f"flags the matrix has no fact for: {set(flags) - CORE_FLAGS}"
    for flag in flags:
        assert version not in REJECTED.get(flag, ()), f"vLLM {version} rejects {flag}"
    assert len(flags) == len(set(flags)), flags
    assert "--gpu-memory-utilization" in flags  # vLLM 0.20+ would assume 0.92 otherwise
    for flag in ("--pooler-config", "--override-pooler-config"):
        if flag in argv:
            config = json.loads(argv[argv.index(flag) + 1])
            assert not (tuple(map(int, version.split("."))) >= (0, 16) and "normalize" in config)


def _check_exposure(docs: list[dict]) -> None:
    workloads = [d for d in docs if d["kind"] in ("Deployment", "LeaderWorkerSet")]
    for service in (d for d in docs if d["kind"] == "Service"):
        public = service["spec"]["type"] == "LoadBalancer" and not any(
            "internal" in k for k in service["metadata"].get("annotations", {}))
        if not public:
            continue
        for port in service["spec"]["ports"]:
            assert port["targetPort"] != VLLM_PORT
            owners = [c["name"] for w in workloads for p in _pods(w)[:1] for c in p["containers"]
                      if any(cp["containerPort"] == port["targetPort"] for cp in c.get("ports", ()))]
            assert owners and all("vllm" not in o and o != "leader" for o in owners), owners


def test_the_default_stays_behind_the_proxy_or_inside(capsys):
    # the seed's public LB goes through the proxy; the bge-m3 profile stays ClusterIP
    docs = _render(capsys, [])
    assert next(d for d in docs if d["kind"] == "Service")["spec"]["ports"][0]["targetPort"] != VLLM_PORT
    code = main(["render", "--profile", "bge-m3"])
    out, _ = capsys.readouterr()
    service = next(d for d in yaml.safe_load_all(out) if d and d["kind"] == "Service")
    assert code == 0 and service["spec"]["type"] == "ClusterIP"
