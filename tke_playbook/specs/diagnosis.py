"""Why a pod, a PVC or a vLLM server is unhappy, in plain words, with what to do about it.

The ``diagnose_*`` functions are pure: they take objects as the API returns them (camelCase dicts), event dicts
and log text, and return :class:`Diagnosis` records, most severe first. The cluster's I/O layer
(``tke_playbook.kube.wait``, ``inventory``) gathers those inputs; the local target reads its server's log
with :func:`diagnose_log`. Pure and outside ``tke_playbook.kube``, so the local path never loads the
kubernetes client.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass

from .objects import ContainerStatus, KubeEvent, PersistentVolumeClaim, Pod, events_of


class Severity(str, enum.Enum):
    INFO = "info"        # expected while things start (e.g. the model is still loading)
    WARNING = "warning"  # may resolve by itself; worth a look if it lasts
    ERROR = "error"      # will not resolve without a change: waits stop here

    @property
    def rank(self) -> int:
        return {"error": 0, "warning": 1, "info": 2}[self.value]


@dataclass(frozen=True)
class Diagnosis:
    """One finding: ``problem`` (a short title), ``explanation`` and ``action`` in plain words, ``evidence`` (the
    event message or log line it came from), ``severity`` and a stable ``code`` such as ``'no-free-gpu'``."""

    code: str
    problem: str
    explanation: str
    action: str
    evidence: str = ""
    severity: Severity = Severity.ERROR
    subject: str = ""

    def __str__(self) -> str:
        where = f" [{self.subject}]" if self.subject else ""
        text = f"{self.severity.value.upper()}{where}: {self.problem}. {self.explanation} What to do: {self.action}"
        return text + (f" (seen: {self.evidence.strip()[:300]})" if self.evidence else "")


def format_diagnoses(diagnoses: Iterable[Diagnosis]) -> str:
    return "\n".join(f"- {d}" for d in diagnoses)


# (code, severity, pattern, problem, explanation, action) over event messages and pod condition messages
_SCHEDULING = (
    ("no-free-gpu", Severity.ERROR, r"Insufficient nvidia\.com/gpu",
     "No node has a free GPU",
     "The pod asks for a GPU, but every node either has no GPU or has all its GPUs taken by other pods.",
     "Add a GPU node (for example PNV5b.8XLARGE96 with one L20) or scale the GPU node pool in the TKE console, "
     "or free a GPU by tearing down another deployment (teardown(kube, namespace, model=...))."),
    ("no-matching-node", Severity.ERROR,
     r"didn't match (Pod's )?node (affinity|selector)|didn't match node selector|node\(s\) didn't match",
     "No node matches the pod's node selector",
     "The pod may only run on nodes with certain labels (node selector, or the instance-type affinity), and no "
     "node carries them.",
     "Compare the selector with list_nodes(kube): fix the instance type / node selector in the serving or "
     "download spec, or add a node of that type."),
    ("untolerated-taint", Severity.ERROR, r"untolerated taint",
     "Nodes are tainted against this pod",
     "The candidate nodes carry a taint the pod does not tolerate (GPU pools are often tainted).",
     "Add a matching toleration to the spec, or remove the taint from the node pool."),
    ("not-enough-resources", Severity.ERROR, r"Insufficient (cpu|memory|ephemeral-storage)",
     "No node has enough CPU or memory left",
     "The pod requests more CPU or memory than any node still has free.",
     "Lower the pod's requests, or add a larger node."),
    ("pvc-unbound", Severity.WARNING, r"unbound immediate PersistentVolumeClaims|persistentvolumeclaim .* not bound",
     "The pod waits for its PVC",
     "The pod's storage claim is not bound to a volume yet, so the pod cannot be placed.",
     "Check the PVC with diagnose_pvc / list_pvcs: its StorageClass must exist (CFS, in the GPU node's zone) and "
     "the CFS add-on must be installed. A new CFS volume takes up to a minute."),
    ("pvc-missing", Severity.ERROR, r'persistentvolumeclaim "[^"]+" not found',
     "The pod's PVC does not exist",
     "The pod mounts a PersistentVolumeClaim that has not been created in this namespace.",
     "Create the PVC first (build_pvc + apply), in the same namespace as the pod."),
)

_LOG_RULES = (
    ("cuda-oom", Severity.ERROR, r"CUDA out of memory|torch\.(cuda\.)?OutOfMemoryError",
     "The GPU ran out of memory",
     "vLLM could not fit the model weights plus its working memory (and KV cache for decoder models) into the GPU.",
     "Use a larger GPU (an L20 48 GB or larger for a 7B model), lower --max-model-len, or lower "
     "--gpu-memory-utilization if something else uses the GPU; check_fit(model, gpu) tells what fits."),
    ("kv-cache-too-small", Severity.ERROR,
     r"No available memory for the cache blocks|larger than the maximum number of tokens that can be stored in KV",
     "No room for vLLM's KV cache",
     "The weights fit, but what is left of the GPU cannot hold even one sequence of max-model-len tokens.",
     "Lower --max-model-len (e.g. 4096 or 2048), raise --gpu-memory-utilization (e.g. 0.95) or use a larger GPU."),
    ("model-missing", Severity.ERROR,
     r"does not appear to have a file named config\.json|Repo id must be in the form|No such file or directory: "
     r"'/data/model(/config\.json)?'|is not a local folder and is not a valid model identifier|"
     r"IncompleteModelError|has no completion marker|Model folder .* does not exist|"
     r"Invalid repository ID or local directory specified",
     "The model files are missing or incomplete",
     "vLLM found no complete model at /data/model: the download has not finished, failed, or the PVC path "
     "(subPath = the model id) points somewhere else.",
     "Wait for the download Job (wait_for_job) or run it again - it resumes - and check that the serving spec's "
     "model id and PVC name match the download's."),
    ("disk-full", Severity.ERROR, r"No space left on device|Disk quota exceeded",
     "The volume is full",
     "Writing to the volume failed because it has no space left.",
     "Free space on the PVC (delete old models) or create a larger one."),
)

_PROBE = re.compile(r"(Startup|Liveness|Readiness) probe failed: (.*)", re.S)


def _match(rules, text: str, subject: str) -> list[Diagnosis]:
    found = []
    for code, severity, pattern, problem, explanation, action in rules:
        hit = re.search(pattern, text or "")
        if hit:
            line = next((ln for ln in text.splitlines() if re.search(pattern, ln)), hit.group(0))
            found.append(Diagnosis(code, problem, explanation, action, line.strip(), severity, subject))
    return found


def _ordered(found: Iterable[Diagnosis]) -> list[Diagnosis]:
    seen, out = set(), []
    for d in sorted(found, key=lambda d: d.severity.rank):
        if d.code not in seen:
            seen.add(d.code)
            out.append(d)
    return out


def _scheduling(message: str, subject: str) -> list[Diagnosis]:
    """Scheduler findings of one message. "0/4 nodes are available: 1 Insufficient nvidia.com/gpu, 3 node(s) didn't
    match Pod's node affinity/selector" means the GPU node is full; the CPU nodes that were never candidates are
    not the cause, so node-filter findings step back when a node was short of resources."""
    found = _match(_SCHEDULING, message, subject)
    if not any(d.code in ("no-free-gpu", "not-enough-resources") for d in found):
        return found
    kept = []
    for d in found:
        if d.code == "no-matching-node":
            continue
        kept.append(dataclasses.replace(d, severity=Severity.WARNING) if d.code == "untolerated-taint" else d)
    return kept


def diagnose_log(text: str, subject: str = "") -> list[Diagnosis]:
    """Failures a container log shows (CUDA out of memory, model missing, disk full)."""
    return _ordered(_match(_LOG_RULES, text or "", subject))


def _probe(event: KubeEvent, restarts: int, subject: str) -> Diagnosis | None:
    hit = _PROBE.search(event.message)
    if not hit:
        return None
    kind, detail = hit.group(1), hit.group(2)
    loading = bool(re.search(r"connection refused|context deadline exceeded|Client\.Timeout|EOF", detail))
    if kind == "Liveness" and not restarts:  # one failure does not restart it: failureThreshold in a row do
        return Diagnosis(
            "liveness-failing", "The liveness probe fails", "Kubernetes restarts the container after "
            "failureThreshold failures in a row; if vLLM is still loading, that restart starts the load over.",
            "If it keeps failing, give the startup probe more time and keep the liveness probe off until startup "
            "succeeded; under heavy load, raise the liveness probe's timeoutSeconds.", event.message,
            Severity.WARNING, subject)
    if restarts and kind in ("Liveness", "Startup"):
        return Diagnosis(
            "probe-killed", f"The {kind.lower()} probe restarts the container", "Kubernetes kills vLLM because "
            "/health did not answer in time - a large model can take many minutes to load from CFS, and every "
            "restart loads it again from the start.", "Give the startup probe more time (failureThreshold x "
            "periodSeconds longer than the load, e.g. 360 x 10 s) and keep the liveness probe off until startup "
            "succeeded; a faster volume also helps.", event.message, Severity.ERROR, subject)
    return Diagnosis(
        "probe-during-load", "The server is still loading", "The health check is refused because vLLM only "
        "answers /health once the model is in GPU memory." if loading else "The health check failed.",
        "Keep waiting - loading a 7B model from CFS can take several minutes; the log tail shows progress.",
        event.message, Severity.INFO if loading else Severity.WARNING, subject)


def _image_pull(cs: ContainerStatus, subject: str) -> Diagnosis | None:
    if cs.waiting.reason not in ("ImagePullBackOff", "ErrImagePull", "InvalidImageName"):
        return None
    return Diagnosis(
        "image-pull", "The container image cannot be pulled", f"The node could not download image "
        f"{cs.image}: the name or tag is wrong, the registry is not reachable from the node, "
        f"or it is private.", "Check the image name and tag (the seed image is "
        "ccr.ccs.tencentyun.com/tke-ai-playbook/vllm-openai:v0.10.1-20250801), that the node can reach the "
        "registry, and add imagePullSecrets for a private registry.",
        cs.waiting.message or cs.waiting.reason, Severity.ERROR, subject)


def _config_missing(cs: ContainerStatus, subject: str) -> Diagnosis | None:
    if cs.waiting.reason != "CreateContainerConfigError":  # e.g. secret "vllm-e5-api-key" not found
        return None
    return Diagnosis(
        "config-missing", f"Container {cs.name} cannot start: its configuration is missing",
        "It refers to a Secret or ConfigMap (the API-key Secret, the hub token) that does not exist in "
        "this namespace, or to a key that Secret lacks.", "Apply the missing object first (build_secret "
        "+ apply; the message names it), in the pod's namespace; the pod starts once it exists.",
        cs.waiting.message or cs.waiting.reason, Severity.ERROR, subject)


def _oom_or_crash(cs: ContainerStatus, subject: str) -> Diagnosis | None:
    if any(t.reason == "OOMKilled" for t in cs.terminated):
        return Diagnosis(
            "oom-killed", f"Container {cs.name} was killed for using too much memory (OOMKilled)",
            "It used more host memory than its limit allows; vLLM reads the whole checkpoint through host "
            "memory while loading.", "Raise the container's memory limit (or remove it) and use a node with "
            "more memory; for downloads, lower the parallelism per pod.", "lastState.terminated.reason: "
            "OOMKilled, exitCode 137", Severity.ERROR, subject)
    if cs.waiting.reason == "CrashLoopBackOff":
        code = next((t.exit_code for t in cs.terminated), None)
        return Diagnosis(
            "crash-loop", f"Container {cs.name} keeps crashing", f"It exited with code {code} and "
            f"Kubernetes restarts it with growing delays.", "Read the log lines below for the cause.",
            cs.waiting.message or "CrashLoopBackOff", Severity.ERROR, subject)
    return None


# one rule per kind of container-status trouble: (container status, subject) -> a finding or None
_CONTAINER_RULES = (_image_pull, _config_missing, _oom_or_crash)
# a specific cause says more than "it keeps crashing", and probes fail anyway while it crashes
_CAUSES = frozenset({"cuda-oom", "kv-cache-too-small", "model-missing", "disk-full", "oom-killed"})
_SYMPTOMS = frozenset({"crash-loop", "probe-killed", "probe-during-load", "liveness-failing"})


def _scheduling_messages(pod: Pod, events: list[KubeEvent]) -> list[str]:
    messages = [c.message for c in pod.conditions if c.type == "PodScheduled" and c.false]
    return messages + [e.message for e in events
                       if e.reason in ("FailedScheduling", "FailedMount", "FailedAttachVolume")]


def diagnose_pod(pod: dict | Pod, events: Iterable[dict | KubeEvent] = (), log_text: str = "") -> list[Diagnosis]:
    """Everything wrong with one pod, from its status, its events and its log (most severe first)."""
    pod, events = Pod.of(pod), events_of(events)
    subject = f"pod {pod.name}" if pod.name else ""
    found = [d for message in _scheduling_messages(pod, events) for d in _scheduling(message, subject)]
    found += [d for cs in pod.statuses for rule in _CONTAINER_RULES if (d := rule(cs, subject)) is not None]
    found += [d for e in events if e.reason == "Unhealthy" and (d := _probe(e, pod.restarts, subject))]
    found += diagnose_log(log_text, subject)
    if any(d.code in _CAUSES for d in found):
        found = [d for d in found if d.code not in _SYMPTOMS]
    return _ordered(found)


def diagnose_pvc(pvc: dict | PersistentVolumeClaim, events: Iterable[dict | KubeEvent] = ()) -> list[Diagnosis]:
    """Why a PVC is not Bound (an empty list when it is)."""
    pvc = PersistentVolumeClaim.of(pvc)
    name, phase, subject = pvc.meta.name, pvc.phase, f"pvc {pvc.meta.name}"
    if phase == "Bound":
        return []
    sc = pvc.storage_class or "(default)"
    messages = [f"{e.reason}: {e.message}" for e in events_of(events)]
    found = []
    for message in messages:
        if re.search(r'storageclass\.storage\.k8s\.io "[^"]+" not found', message):
            found.append(Diagnosis("storage-class-missing", f"StorageClass {sc} does not exist", "The PVC names a "
                                   "StorageClass the cluster does not have, so no volume is created.",
                                   "Create it (build_storage_class + apply) or use an existing CFS StorageClass "
                                   "(list_storage_classes).", message, Severity.ERROR, subject))
        elif re.search(r"waiting for first consumer", message):
            found.append(Diagnosis("pvc-wait-for-consumer", "The PVC waits for a pod", "Its StorageClass creates "
                                   "the volume only when a pod uses it (WaitForFirstConsumer).", "Nothing: start "
                                   "the download Job and the PVC binds.", message, Severity.INFO, subject))
        elif re.search(r"ProvisioningFailed|failed to provision|provision.*(error|fail)", message, re.I):
            # a timed-out call is retried by the provisioner and often succeeds: not a reason to stop waiting
            transient = re.search(r"DeadlineExceeded|deadline exceeded|timed out|timeout", message, re.I)
            found.append(Diagnosis("pvc-provisioning-failed", "The volume could not be created" + (
                                   " yet" if transient else ""), "The CFS provisioner reported an error (often: CFS "
                                   "add-on not installed, no CFS quota, or the zone/subnet in the StorageClass is "
                                   "wrong)." + (" This one was a timeout; the provisioner retries it." if transient
                                                else ""), "Install the CFS add-on in the TKE console and check the "
                                   "StorageClass's zone matches the GPU node's.", message,
                                   Severity.WARNING if transient else Severity.ERROR, subject))
    if not found:
        found.append(Diagnosis("pvc-unbound", f"PVC {name} is {phase}, not Bound", f"No volume is bound to it yet "
                               f"(StorageClass {sc}).", "Wait a minute for CFS to provision; if it stays Pending, "
                               "check the StorageClass exists and the CFS add-on is installed.",
                               f"status.phase: {phase}", Severity.WARNING, subject))
    return _ordered(found)
