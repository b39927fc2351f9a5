"""Fixtures shared by every test: strict Kubernetes schema validation of manifest dicts.

``k8s_valid(manifest)`` validates one manifest (a dict) in strict mode with the PyPI package kubernetes-validate
against the Kubernetes 1.28 and 1.33 schemas, and fails the test with the validator's message (version, field
path, reason). Strict mode rejects unknown fields, so a typo such as ``secretKeyRefs`` fails.

LeaderWorkerSet is a CRD (leaderworkerset.x-k8s.io) with no upstream schema: its embedded pod templates
(``leaderTemplate`` and ``workerTemplate``) are validated as ``v1/PodTemplate`` objects instead, and the rest of
the object is checked for the fields the LWS controller requires.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import pytest

K8S_VERSIONS = ("1.28", "1.33")
LWS_API_VERSION = "leaderworkerset.x-k8s.io/v1"


def _validate_builtin(manifest: dict, versions=K8S_VERSIONS) -> None:
    import kubernetes_validate as kv

    for version in versions:
        problem = None
        try:
            kv.validate(copy.deepcopy(manifest), version, strict=True)
        except kv.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path) or "<root>"
            name = manifest.get("metadata", {}).get("name", "?")
            problem = f"{manifest.get('kind')}/{name} is invalid for Kubernetes {exc.version}: {path}: {exc.message}"
        except kv.SchemaNotFoundError as exc:
            problem = exc.message
        if problem:  # failed outside the except block, so the report shows the message without chained tracebacks
            pytest.fail(problem, pytrace=False)


def _pod_template(metadata_name: str, template: dict) -> dict:
    return {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": metadata_name}, "template": template}


def _validate_lws(manifest: dict, versions=K8S_VERSIONS) -> None:
    name = manifest.get("metadata", {}).get("name", "?")
    if manifest.get("apiVersion") != LWS_API_VERSION:
        pytest.fail(f"LeaderWorkerSet/{name}: apiVersion must be {LWS_API_VERSION}", pytrace=False)
    _validate_builtin({"apiVersion": "v1", "kind": "ConfigMap", "metadata": manifest.get("metadata", {})}, versions)
    spec = manifest.get("spec") or {}
    unknown_spec = set(spec) - {"replicas", "leaderWorkerTemplate", "rolloutStrategy", "startupPolicy",
                                "networkConfig"}
    if unknown_spec:
        pytest.fail(f"LeaderWorkerSet/{name}: unknown spec fields {sorted(unknown_spec)}", pytrace=False)
    lwt = spec.get("leaderWorkerTemplate") or {}
    unknown_lwt = set(lwt) - {"leaderTemplate", "workerTemplate", "size", "restartPolicy", "subGroupPolicy"}
    if unknown_lwt:
        pytest.fail(f"LeaderWorkerSet/{name}: unknown leaderWorkerTemplate fields {sorted(unknown_lwt)}",
                    pytrace=False)
    size = lwt.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        pytest.fail(f"LeaderWorkerSet/{name}: leaderWorkerTemplate.size must be an integer >= 1, got {size!r}",
                    pytrace=False)
    if "workerTemplate" not in lwt:
        pytest.fail(f"LeaderWorkerSet/{name}: leaderWorkerTemplate.workerTemplate is required", pytrace=False)
    for key in ("leaderTemplate", "workerTemplate"):
        if key in lwt:
            _validate_builtin(_pod_template(f"{name}-{key.lower()}", lwt[key]), versions)
    _validate_lws_crd(manifest)


LWS_CRD = Path(__file__).resolve().parents[2] / "shared" / "reference" / "upstream" / \
    "lws-leaderworkerset-crd-v0.10.0.yaml"


def _strict(schema):
    """The CRD schema with unknown fields rejected wherever it lists properties and does not preserve unknowns."""
    if isinstance(schema, dict):
        schema = {k: _strict(v) for k, v in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema and \
                not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        schema = [_strict(v) for v in schema]
    return schema


@functools.lru_cache(maxsize=1)
def lws_crd_validator():
    """A jsonschema validator for LeaderWorkerSet v1 from the LWS v0.10.0 CRD (strict), or None without the file."""
    if not LWS_CRD.exists():
        return None
    import jsonschema
    import yaml

    crd = yaml.load(LWS_CRD.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    return jsonschema.Draft7Validator(_strict(version["schema"]["openAPIV3Schema"]))


def _validate_lws_crd(manifest: dict) -> None:
    validator = lws_crd_validator()
    if validator is None:  # ../shared is absent: the pod templates were still checked above
        return
    error = next(iter(sorted(validator.iter_errors(manifest), key=lambda e: list(e.absolute_path))), None)
    if error is not None:
        path = ".".join(str(p) for p in error.absolute_path) or "<root>"
        pytest.fail(f"LeaderWorkerSet/{manifest.get('metadata', {}).get('name', '?')} is invalid for the LWS v0.10.0 "
                    f"CRD: {path}: {error.message}", pytrace=False)


def validate_manifest(manifest: dict, versions=K8S_VERSIONS) -> dict:
    """Validate ``manifest`` strictly against each version in ``versions``; fail the test otherwise."""
    if not isinstance(manifest, dict):
        pytest.fail(f"a manifest must be a dict, got {type(manifest).__name__}", pytrace=False)
    if manifest.get("kind") == "LeaderWorkerSet":
        _validate_lws(manifest, versions)
    else:
        _validate_builtin(manifest, versions)
    return manifest


@pytest.fixture
def k8s_valid():
    """A function: ``k8s_valid(manifest)`` validates in strict mode against Kubernetes 1.28 and 1.33."""
    return validate_manifest


@pytest.fixture
def lws_crd():
    """The strict jsonschema validator of the LWS v0.10.0 CRD; skips when ../shared is absent."""
    validator = lws_crd_validator()
    if validator is None:
        pytest.skip(f"the LWS CRD is not at {LWS_CRD} (../shared absent)")
    return validator


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh toolkit home (state, secrets, the local PVC folders) on the offline local target."""
    monkeypatch.setenv("TKE_PLAYBOOK_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TKE_PLAYBOOK_OFFLINE", "1")
    monkeypatch.delenv("TKE_PLAYBOOK_TARGET", raising=False)
    return tmp_path / "home"


@pytest.fixture
def pb(home):
    """The local playbook in that home; stops what it started."""
    from tke_playbook.playbook import open_target

    playbook = open_target("local")
    yield playbook
    playbook.serving.stop_servers()
    playbook.download.stop()
