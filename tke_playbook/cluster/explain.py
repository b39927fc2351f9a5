"""The I/O side of diagnosis: gather a pod's or PVC's status, events and log, and explain what is wrong.

``explain(kube, namespace)`` looks at everything the toolkit created there (by its labels) - the "why is it not
working?" cell of a notebook. ``wait_for_pvc_bound`` waits for storage with the same rules. The rules themselves
are the pure functions in :mod:`.diagnose`.
"""

from __future__ import annotations

import time

from ..errors import ClusterError, WaitTimeoutError
from ..labels import selector
from .client import Kube, cluster_error
from ..diagnosis import Diagnosis, Severity, diagnose_pod, diagnose_pvc, format_diagnoses
from .inventory import list_pods, list_pvcs, object_events, pod_events, pod_logs


def explain_pod(kube: Kube, pod: dict | str, namespace: str | None = None, tail_lines: int = 50) -> list[Diagnosis]:
    """What is wrong with one pod (a name or the pod dict), from its status, events and recent log."""
    if isinstance(pod, str):
        try:
            pod = kube.to_dict(kube.core.read_namespaced_pod(pod, namespace or "default"))
        except Exception as exc:
            raise cluster_error(exc, f"read pod {pod}", kube, pod) from None
    return diagnose_pod(pod, pod_events(kube, pod, namespace), pod_logs(kube, pod, tail_lines, namespace))


def explain_pvc(kube: Kube, pvc: dict | str, namespace: str | None = None) -> list[Diagnosis]:
    """Why a PVC is not Bound (an empty list when it is)."""
    if isinstance(pvc, str):
        try:
            pvc = kube.to_dict(kube.core.read_namespaced_persistent_volume_claim(pvc, namespace or "default"))
        except Exception as exc:
            raise cluster_error(exc, f"read PVC {pvc}", kube, pvc) from None
    meta = pvc.get("metadata") or {}
    events = object_events(kube, "PersistentVolumeClaim", meta.get("name", ""),
                           namespace or meta.get("namespace") or "default")
    return diagnose_pvc(pvc, events)


def explain(kube: Kube, namespace: str, label_selector: str | None = None) -> list[Diagnosis]:
    """Findings for every toolkit pod and PVC in ``namespace`` (or those matching ``label_selector``)."""
    label_selector = label_selector or selector()
    found: list[Diagnosis] = []
    for pvc in list_pvcs(kube, namespace, label_selector):
        found += explain_pvc(kube, pvc, namespace)
    for pod in list_pods(kube, namespace, label_selector):
        if (pod.get("status") or {}).get("phase") != "Succeeded":
            found += explain_pod(kube, pod, namespace)
    return sorted(found, key=lambda d: d.severity.rank)


def wait_for_pvc_bound(kube: Kube, name: str, namespace: str, timeout: float = 180.0, *, poll: float = 2.0) -> dict:
    """Wait until PVC ``name`` is Bound and return it. A StorageClass that binds on first use returns at once
    (the download Job's pod binds it); a missing StorageClass or failed provisioning raises ClusterError."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            pvc = kube.to_dict(kube.core.read_namespaced_persistent_volume_claim(name, namespace))
        except Exception as exc:
            raise cluster_error(exc, f"read PVC {name}", kube, name) from None
        findings = explain_pvc(kube, pvc, namespace)
        if not findings or any(d.code == "pvc-wait-for-consumer" for d in findings):
            return pvc
        errors = [d for d in findings if d.severity is Severity.ERROR]
        if errors:
            raise ClusterError(f"PVC {name} will not bind:\n{format_diagnoses(errors)}", obj=errors)
        if time.monotonic() >= deadline:
            raise WaitTimeoutError(f"Timed out after {timeout:g} s waiting for PVC {name} to be Bound:\n"
                                   f"{format_diagnoses(findings)}", obj=findings)
        time.sleep(max(0.01, min(poll, deadline - time.monotonic())))
