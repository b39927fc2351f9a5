"""Teardown: delete everything the toolkit created in a namespace, found by its labels; keep the PVC unless asked.

Objects are found with ``labels.selector()`` (``app.kubernetes.io/managed-by=tke-playbook``), optionally narrowed
to one model. Serving goes first, then downloads, then configuration; the PVC (and the labelled StorageClass, on
a full teardown) only with ``keep_pvc=False``. Pods go with their owners (cascade).
"""

from __future__ import annotations

import time

from ..errors import WaitTimeoutError
from ..specs.labels import selector
from ..specs.objects import ObjectMeta
from .apply import Cascade, delete, get, list_objects
from .client import Kube, ObjectRef

ORDER = (
    ("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet"), ("apps/v1", "Deployment"), ("v1", "Service"),
    ("batch/v1", "Job"), ("v1", "ConfigMap"), ("v1", "Secret"),
)
STORAGE = (("v1", "PersistentVolumeClaim"),)


def find_created(kube: Kube, namespace: str, keep_pvc: bool = True, model: str | None = None) -> list[ObjectRef]:
    """What :func:`teardown` would delete, in order (a dry run)."""
    label_selector = selector(model=model)  # everything the toolkit made, or one model's objects
    kinds = ORDER + (() if keep_pvc else STORAGE)
    refs = [ObjectRef(api_version, kind, ObjectMeta.from_api(obj).name, namespace)
            for api_version, kind in kinds
            for obj in list_objects(kube, api_version, kind, namespace, label_selector)]
    if not keep_pvc and model is None:
        refs += [ObjectRef("storage.k8s.io/v1", "StorageClass", ObjectMeta.from_api(obj).name)
                 for obj in list_objects(kube, "storage.k8s.io/v1", "StorageClass", None, label_selector)]
    return refs


def teardown(kube: Kube, namespace: str, keep_pvc: bool = True, model: str | None = None, *,
             cascade: Cascade | str = Cascade.FOREGROUND, wait: float = 0.0, poll: float = 2.0) -> list[ObjectRef]:
    """Delete what the toolkit created in ``namespace`` (only ``model``'s objects when given); returns what was
    deleted. The PVC holding downloaded models stays unless ``keep_pvc=False``. With ``wait`` > 0, return only
    once the objects are gone (foreground deletion first removes a Job's pods), or raise WaitTimeoutError."""
    deleted = []
    for ref in find_created(kube, namespace, keep_pvc, model):
        if delete(kube, ref, cascade):
            deleted.append(ref)
    deadline = time.monotonic() + wait
    remaining = list(deleted) if wait > 0 else []
    while remaining:
        remaining = [ref for ref in remaining if get(kube, ref) is not None]
        if remaining and time.monotonic() >= deadline:
            raise WaitTimeoutError(f"Deleted {len(deleted)} object(s) but after {wait:g} s these still exist: "
                                   f"{', '.join(map(str, remaining))}. Kubernetes may be waiting on finalizers or "
                                   f"on pods to stop; check again later.", obj=remaining)
        if remaining:
            time.sleep(max(0.01, min(poll, deadline - time.monotonic())))
    return deleted
