"""The parity reference on a cluster: a CPU Job that reads the model from the PVC and embeds the probes with
sentence-transformers (falling back to transformers with the catalog's pooling when the image lacks it).

Pure builders (:func:`build_reference_configmap`, :func:`build_reference_job`) return plain dicts; the pod prints
one ``TKE-PARITY <json>`` line per text, which :func:`parse_reference_log` turns into a
:class:`PrecomputedReference` that :func:`~tke_playbook.scorecard.parity.check_parity` accepts like the in-process
reference. :func:`run_reference_job` is the thin I/O: apply, wait, read the log.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InvalidSpecError, PlaybookError
from ..specs.catalog import ModelInfo, Pooling, get_model
from ..specs.labels import common_labels
from ..specs.names import slug, validate_name, validate_quantity
from ..specs.storage import DEFAULT_PVC
from ..specs.vllm_args import MODEL_DIR
from .parity import probe_set

if TYPE_CHECKING:  # the local path never loads the Kubernetes client
    from ..kube import Kube

DEFAULT_IMAGE = "ccr.ccs.tencentyun.com/tke-ai-playbook/vllm-openai:v0.10.1-20250801"  # the tutorial's image
MARKER = "TKE-PARITY "
COMPONENT = "parity-reference"
CONFIGMAP_MAX_BYTES = 1 << 20  # the Kubernetes API: "data stored in a ConfigMap cannot exceed 1 MiB"
SCRIPT = r'''
import base64, json, os, sys
os.environ["HF_HUB_OFFLINE"] = "1"
import numpy as np
import torch
request = json.load(open(os.path.join(os.environ.get("TKE_PARITY_CONFIG", "/config"), "request.json")))
path = os.environ.get("TKE_PARITY_MODEL", "/data/model")
def b64(v):
    return base64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode()
def pool(tokens, how):
    return tokens[0] if how == "cls" else tokens[-1] if how == "last" else tokens.mean(0)
try:
    from sentence_transformers import SentenceTransformer
    st = SentenceTransformer(path, device="cpu")
    reference = lambda texts: st.encode(texts, convert_to_numpy=True)
    tokens_of = lambda texts: [t.float().numpy() for t in st.encode(texts, output_value="token_embeddings",
                                                                    convert_to_numpy=False)]
    max_tokens = st.max_seq_length
except ImportError:
    from transformers import AutoModel, AutoTokenizer
    tok, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    max_tokens = request["max_tokens"]
    def tokens_of(texts):
        out = []
        for t in texts:
            ids = tok(t, return_tensors="pt", truncation=True, max_length=max_tokens)
            with torch.inference_mode():
                out.append(model(**ids).last_hidden_state[0].float().numpy())
        return out
    def reference(texts):
        v = np.stack([pool(t, request["pooling"]) for t in tokens_of(texts)])
        return v / np.linalg.norm(v, axis=1, keepdims=True) if request["normalize"] else v
for text, vec in zip(request["texts"], reference(request["texts"])):
    print("TKE-PARITY " + json.dumps({"text": text, "kind": "reference", "vector": b64(vec)}), flush=True)
for text, tokens in zip(request["alternatives"], tokens_of(request["alternatives"])):
    for how in ("cls", "mean", "last"):
        print("TKE-PARITY " + json.dumps({"text": text, "kind": how, "vector": b64(pool(tokens, how))}), flush=True)
print("TKE-PARITY " + json.dumps({"kind": "max_tokens", "value": int(max_tokens)}), flush=True)
'''


@dataclass(frozen=True)
class ReferenceJobSpec:
    """Where the reference runs: the model on PVC ``pvc`` at ``/<hf_id>``, a CPU pod with ``cpu``/``memory``."""

    model: str
    namespace: str = "default"
    pvc: str = DEFAULT_PVC
    image: str = DEFAULT_IMAGE
    cpu: str = "4"
    memory: str = "16Gi"

    def __post_init__(self) -> None:
        object.__setattr__(self, "model", get_model(self.model).hf_id)
        validate_name(self.namespace, "namespace")
        validate_name(self.pvc, "pvc")
        validate_quantity(self.cpu, "cpu")
        validate_quantity(self.memory, "memory")
        if not self.image or " " in self.image:
            raise InvalidSpecError(f"image={self.image!r}: give an image reference with Python, torch and "
                                   "transformers (the vLLM image has them)", field="image", value=self.image)

    @property
    def name(self) -> str:
        return f"parity-ref-{slug(self.model, max_length=40)}"


def reference_texts(model: str | ModelInfo, probes: Sequence[str] | None = None, queries: int = 8) -> dict:
    """Every text check_parity asks the reference for: prompted documents and queries, raw queries; the
    documents also get every pooling (to name a pooling cause)."""
    info = get_model(model)
    texts = list(probes or probe_set())
    docs = [info.format_document(t) for t in texts]
    asked = docs + [info.format_query(t) for t in texts[:queries]] + texts[:queries]
    return {"texts": list(dict.fromkeys(asked)), "alternatives": docs, "pooling": info.pooling.value,
            "normalize": info.normalize, "max_tokens": info.recommended_max_tokens or info.max_tokens}


def build_reference_configmap(spec: ReferenceJobSpec, probes: Sequence[str] | None = None) -> dict:
    """The request (texts, pooling) and the script for the Job. Refused when its data exceeds the 1 MiB the
    Kubernetes API allows a ConfigMap."""
    request = json.dumps(reference_texts(spec.model, probes), ensure_ascii=False)
    size = len(request.encode("utf-8")) + len(SCRIPT.lstrip().encode("utf-8"))
    if size > CONFIGMAP_MAX_BYTES:
        raise InvalidSpecError(f"the reference request is {size / 2**20:.1f} MiB, above the "
                               f"{CONFIGMAP_MAX_BYTES >> 20} MiB the Kubernetes API allows a ConfigMap: pass fewer or "
                               "shorter probes",
                               field="probes", value=size)
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": spec.name, "namespace": spec.namespace,
                         "labels": common_labels(COMPONENT, spec.name, spec.model)},
            "data": {"request.json": request, "reference.py": SCRIPT.lstrip()}}


def build_reference_job(spec: ReferenceJobSpec) -> dict:
    """A one-shot CPU Job: the PVC's model folder read-only at /data/model, the request and script from the
    ConfigMap at /config; no GPU, no service-account token, no retries (a failure is read from its log)."""
    labels = common_labels(COMPONENT, spec.name, spec.model)
    container = {
        "name": "reference", "image": spec.image, "command": ["python", "/config/reference.py"],
        "env": [{"name": "HF_HUB_OFFLINE", "value": "1"}, {"name": "CUDA_VISIBLE_DEVICES", "value": ""}],
        "resources": {"requests": {"cpu": spec.cpu, "memory": spec.memory}, "limits": {"memory": spec.memory}},
        "volumeMounts": [{"name": "model", "mountPath": MODEL_DIR, "subPath": spec.model, "readOnly": True},
                         {"name": "config", "mountPath": "/config", "readOnly": True}],
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}
    pod = {"metadata": {"labels": labels},
           "spec": {"restartPolicy": "Never", "automountServiceAccountToken": False, "containers": [container],
                    "volumes": [{"name": "model", "persistentVolumeClaim": {"claimName": spec.pvc}},
                                {"name": "config", "configMap": {"name": spec.name}}]}}
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": spec.name, "namespace": spec.namespace, "labels": labels},
            "spec": {"backoffLimit": 0, "ttlSecondsAfterFinished": 3600, "template": pod}}


class PrecomputedReference:
    """Reference vectors read from the Job's log; answers ``encode`` and ``pooled`` by lookup."""

    def __init__(self, model: str | ModelInfo, vectors: dict[tuple[str, str], np.ndarray], max_tokens: int):
        self.model, self.vectors, self.max_tokens = get_model(model), vectors, max_tokens
        self.name = f"cluster reference ({self.model.short_name})"

    def _get(self, text: str, kind: str) -> np.ndarray:
        try:
            return self.vectors[(kind, text)]
        except KeyError:
            raise PlaybookError(f"the reference Job computed no {kind} vector for {text[:40]!r}: rerun it with the "
                                "same probes", obj=text) from None

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self._get(t, "reference") for t in texts])

    def pooled(self, texts: Sequence[str], pooling: Pooling, normalize: bool) -> np.ndarray:
        vectors = np.stack([self._get(t, Pooling(pooling).value) for t in texts])
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12) if normalize else vectors


VECTOR_KINDS = ("reference", *(p.value for p in Pooling))  # what the Job's script prints a vector for


def _bad_line(number: int, line: str, why: str) -> InvalidSpecError:
    return InvalidSpecError(f"line {number} of the reference Job's log is malformed ({why}): {line[:80]!r}. The log "
                            "was cut or another script wrote it: rerun the Job with run_reference_job",
                            field="log", value=number)


def _log_item(number: int, line: str) -> dict:
    try:
        item = json.loads(line[len(MARKER):])
    except ValueError as exc:  # JSONDecodeError, and recursion or number limits of the parser
        raise _bad_line(number, line, f"not JSON: {getattr(exc, 'msg', exc)}") from None
    except RecursionError:
        raise _bad_line(number, line, "JSON nested too deep") from None
    if not isinstance(item, dict):
        raise _bad_line(number, line, f"a JSON {type(item).__name__}, not an object")
    return item


def _max_tokens(number: int, line: str, item: dict) -> int:
    value = item.get("value")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _bad_line(number, line, f"max_tokens value {value!r} is not a whole number >= 1")
    return value


def _vector(number: int, line: str, item: dict) -> tuple[tuple[str, str], np.ndarray]:
    kind, text, vector = item.get("kind"), item.get("text"), item.get("vector")
    if kind not in VECTOR_KINDS:
        raise _bad_line(number, line, f"kind {kind!r} is not one of {', '.join(VECTOR_KINDS)}, max_tokens")
    if not isinstance(text, str) or not isinstance(vector, str):
        raise _bad_line(number, line, "a vector line needs 'text' and 'vector' strings")
    try:
        raw = base64.b64decode(vector, validate=True)
    except (binascii.Error, ValueError):
        raise _bad_line(number, line, "'vector' is not base64") from None
    if not raw or len(raw) % 4:
        raise _bad_line(number, line, f"'vector' holds {len(raw)} bytes, not whole float32 values")
    values = np.frombuffer(raw, dtype="<f4")
    if not np.isfinite(values).all():
        raise _bad_line(number, line, "'vector' holds NaN or infinity")
    return (kind, text), values


def parse_reference_log(text: str, model: str | ModelInfo) -> PrecomputedReference:
    """The reference vectors in a Job's log (its ``TKE-PARITY`` lines; other lines are ignored). A malformed
    marker line raises one InvalidSpecError naming the line; a log without the final line, a PlaybookError."""
    if not isinstance(text, str):
        raise InvalidSpecError(f"the reference log must be text (the pod's log), not {type(text).__name__}",
                               field="log", value=type(text).__name__)
    vectors, max_tokens = {}, None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.startswith(MARKER):
            continue
        item = _log_item(number, line)
        if item.get("kind") == "max_tokens":
            max_tokens = _max_tokens(number, line, item)
        else:
            key, values = _vector(number, line, item)
            vectors[key] = values
    if max_tokens is None:
        raise PlaybookError("the reference Job's log has no result (it failed or is still running): read its log "
                            "with `kubectl logs job/<name>`", obj=text[-400:])
    return PrecomputedReference(model, vectors, max_tokens)


def run_reference_job(kube: Kube, spec: ReferenceJobSpec, probes: Sequence[str] | None = None, *,
                      timeout: float = 1800.0, poll: float = 5.0) -> PrecomputedReference:
    """Apply the ConfigMap and Job, wait for it, and parse the pod's log."""
    from ..kube import list_pods, pod_logs, wait_for_job  # late: as in scorecard.cluster
    from ..kube.apply import apply

    apply(kube, build_reference_configmap(spec, probes))
    apply(kube, build_reference_job(spec))
    wait_for_job(kube, spec.name, spec.namespace, timeout=timeout, poll=poll)
    pods = list_pods(kube, spec.namespace, f"job-name={spec.name}")
    if not pods:
        raise PlaybookError(f"Job {spec.name} finished but its pod is gone: rerun it", obj=spec.name)
    return parse_reference_log(pod_logs(kube, pods[-1], tail_lines=100_000, namespace=spec.namespace), spec.model)
