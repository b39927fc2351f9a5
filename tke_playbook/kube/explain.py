"""The I/O side of PVC diagnosis: gather a PVC's status and events and say why it is not Bound.

``wait_for_pvc_bound`` waits for storage with the same rules. The rules themselves are the pure functions in
:mod:`tke_playbook.specs.diagnosis`.
"""

from __future__ import annotations

import time

from ..errors import ClusterError, WaitTimeoutError
from ..specs.diagnosis import Diagnosis, Severity, diagnose_pvc, format_diagnoses
from ..specs.objects import PersistentVolumeClaim
from .client import Kube, cluster_error
from .inventory import object_events


def explain_pvc(kube: Kube, pvc: dict | PersistentVolumeClaim | str, namespace: str | None = None) -> list[Diagnosis]:
    """Why a PVC is not Bound (an empty list when it is)."""
    if isinstance(pvc, str):
        try:
            pvc = kube.to_dict(kube.core.read_namespaced_persistent_volume_claim(pvc, namespace or "default"))
        except Exception as exc:
            raise cluster_error(exc, f"read PVC {pvc}", kube, pvc) from None
    pvc = PersistentVolumeClaim.of(pvc)
    events = object_events(kube, "PersistentVolumeClaim", pvc.meta.name, namespace or pvc.meta.namespace or "default")
    return diagnose_pvc(pvc, events)


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
