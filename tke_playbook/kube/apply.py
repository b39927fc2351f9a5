"""Idempotent apply and cascading delete of any manifest, by server-side apply through the official client.

Apply sends ``PATCH`` with ``application/apply-patch+yaml`` and fieldManager ``tke-playbook`` (force=true, so
re-running a notebook takes back fields an earlier run set): it creates the object when missing and updates it
otherwise, in one call and without reading it first.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from kubernetes.client.exceptions import ApiException

from ..errors import ApplyError, ClusterError, InvalidSpecError
from ..specs.names import unknown
from .client import FIELD_MANAGER, KINDS, Kube, ObjectRef, api_status, cluster_error

APPLY_PATCH = "application/apply-patch+yaml"


class Cascade(str, enum.Enum):
    FOREGROUND = "Foreground"  # dependents (a Job's pods) go first, then the object
    BACKGROUND = "Background"  # the object goes now, the garbage collector removes dependents
    ORPHAN = "Orphan"          # dependents stay


def _check_manifest(manifest: dict) -> ObjectRef:
    if not isinstance(manifest, dict):
        raise InvalidSpecError(f"A manifest must be a dict, got {type(manifest).__name__}: pass what a build_* "
                               f"function returns", field="manifest", value=manifest)
    ref = ObjectRef.of(manifest)
    if not ref.api_version or not ref.kind or not ref.name:
        raise InvalidSpecError("A manifest needs apiVersion, kind and metadata.name: pass what a build_* function "
                               "returns", field="manifest", value=manifest)
    if ref.kind not in KINDS:
        raise unknown("kind", ref.kind, KINDS)
    return ref


def apply(kube: Kube, manifest: dict, *, namespace: str | None = None) -> dict:
    """Create or update one object; returns it as the server stored it. Raises ApplyError when refused."""
    ref = _check_manifest(manifest)
    if namespace and not ref.namespace and KINDS[ref.kind][1]:
        ref = ObjectRef(ref.api_version, ref.kind, ref.name, namespace)
        manifest = dict(manifest, metadata=dict(manifest["metadata"], namespace=namespace))
    try:
        return kube.request("PATCH", ref.path(), body=manifest, content_type=APPLY_PATCH,
                            query={"fieldManager": FIELD_MANAGER, "force": "true"})
    except ApiException as exc:
        code, reason, message = api_status(exc)
        if code == 404 and ref.kind == "LeaderWorkerSet":
            raise ApplyError(f"Cannot create {ref}: the cluster has no LeaderWorkerSet CRD. Install LWS "
                             f"(kubectl apply --server-side -f https://github.com/kubernetes-sigs/lws/releases/"
                             f"latest/download/manifests.yaml) or set lwsGroupSize to 1.", obj=ref, cause=exc) from None
        if code == 422 and "immutable" in message:  # e.g. a Job's template, a Deployment's selector
            raise ApplyError(f"Kubernetes refused {ref}: {message} (HTTP 422). These fields cannot change on an "
                             f"existing object: delete it first (delete(kube, ref), or teardown) and apply again.",
                             obj=ref, cause=exc) from None
        if code in (400, 409, 422):
            raise ApplyError(f"Kubernetes refused {ref}: {message} ({reason}, HTTP {code}). Fix the manifest and "
                             f"apply again - applying is idempotent.", obj=ref, cause=exc) from None
        if code == 404:
            raise ApplyError(f"Cannot create {ref}: {message}. Create namespace '{ref.namespace}' first, or check "
                             f"the apiVersion '{ref.api_version}'.", obj=ref, cause=exc) from None
        raise cluster_error(exc, f"apply {ref}", kube, ref) from None
    except Exception as exc:  # connection refused, DNS, TLS: the server was never reached
        raise cluster_error(exc, f"apply {ref}", kube, ref) from None


def apply_all(kube: Kube, manifests: Iterable[dict], *, namespace: str | None = None) -> list[dict]:
    """Apply manifests in order; on a refusal, the error says which ones were already applied."""
    manifests = list(manifests)
    for manifest in manifests:
        _check_manifest(manifest)
    done: list[dict] = []
    for manifest in manifests:
        try:
            done.append(apply(kube, manifest, namespace=namespace))
        except ClusterError as exc:
            applied = ", ".join(str(ObjectRef.of(m)) for m in done) or "none"
            exc.message = f"{exc.message} Applied before the failure ({len(done)} of {len(manifests)}): {applied}."
            exc.args = (exc.message,)
            raise
    return done


_MISSING = object()


def _request_or_missing(kube: Kube, ref: ObjectRef, action: str, method: str, path: str, **kwargs):
    """``kube.request``; a 404 gives ``_MISSING``, any other failure a ClusterError naming ``action``."""
    try:
        return kube.request(method, path, **kwargs)
    except Exception as exc:  # ApiException, or the server was never reached (refused, DNS, TLS)
        if isinstance(exc, ApiException) and exc.status == 404:
            return _MISSING
        raise cluster_error(exc, action, kube, ref) from None


def get(kube: Kube, ref: ObjectRef | dict) -> dict | None:
    """The object as the server has it now, or None when it does not exist."""
    ref = ObjectRef.of(ref)
    answer = _request_or_missing(kube, ref, f"read {ref}", "GET", ref.path())
    return None if answer is _MISSING else answer


def delete(kube: Kube, manifest_or_ref: ObjectRef | dict, cascade: Cascade | str = Cascade.FOREGROUND) -> bool:
    """Delete one object and (unless ``cascade='Orphan'``) what it owns. False when it was already gone."""
    try:
        policy = Cascade(cascade)
    except ValueError:
        raise unknown("cascade", str(cascade), [c.value for c in Cascade]) from None
    ref = ObjectRef.of(manifest_or_ref)
    answer = _request_or_missing(kube, ref, f"delete {ref}", "DELETE", ref.path(),
                                 query={"propagationPolicy": policy.value},
                                 body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": policy.value})
    return answer is not _MISSING


def list_objects(kube: Kube, api_version: str, kind: str, namespace: str | None = None,
                 label_selector: str | None = None) -> list[dict]:
    """Objects of one kind matching a label selector; an API the cluster does not serve gives []."""
    ref = ObjectRef(api_version, kind, "", namespace)
    answer = _request_or_missing(kube, ref, f"list {kind} objects", "GET", ref.path(collection=True),
                                 query={"labelSelector": label_selector})
    if answer is _MISSING:  # e.g. no LeaderWorkerSet CRD installed
        return []
    items = answer.get("items") or []
    for item in items:  # list items omit apiVersion/kind
        item.setdefault("apiVersion", api_version)
        item.setdefault("kind", kind)
    return items
