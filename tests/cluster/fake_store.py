"""In-memory object store with the Kubernetes API semantics the cluster layer relies on.

Objects are plain dicts keyed by (api prefix, plural, namespace, name). Every write bumps a global
resourceVersion and appends a watch event. Errors are raised as :class:`StatusError` carrying a Status body.
"""

from __future__ import annotations

import copy
import re
import threading
import uuid
from datetime import datetime, timezone

# plural -> (api prefix, kind, namespaced)
RESOURCES = {
    "namespaces": ("api/v1", "Namespace", False), "nodes": ("api/v1", "Node", False),
    "pods": ("api/v1", "Pod", True), "services": ("api/v1", "Service", True),
    "configmaps": ("api/v1", "ConfigMap", True), "secrets": ("api/v1", "Secret", True),
    "persistentvolumeclaims": ("api/v1", "PersistentVolumeClaim", True),
    "events": ("api/v1", "Event", True), "serviceaccounts": ("api/v1", "ServiceAccount", True),
    "deployments": ("apis/apps/v1", "Deployment", True), "replicasets": ("apis/apps/v1", "ReplicaSet", True),
    "jobs": ("apis/batch/v1", "Job", True),
    "storageclasses": ("apis/storage.k8s.io/v1", "StorageClass", False),
    "customresourcedefinitions": ("apis/apiextensions.k8s.io/v1", "CustomResourceDefinition", False),
    "leaderworkersets": ("apis/leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet", True),
    "apiservices": ("apis/apiregistration.k8s.io/v1", "APIService", False),  # scale-out preflight (H16)
}
LWS_CRD = "leaderworkersets.leaderworkerset.x-k8s.io"
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class StatusError(Exception):
    def __init__(self, code: int, reason: str, message: str, *, kind: str = "", name: str = ""):
        super().__init__(message)
        self.code = code
        self.body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                     "message": message, "reason": reason, "details": {"name": name, "kind": kind}, "code": code}


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge(base, patch):
    """RFC 7386 merge patch (strategic-merge and apply patches are treated the same way here)."""
    if not isinstance(patch, dict) or not isinstance(base, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge(out.get(key), value)
    return out


def lookup(obj: dict, dotted: str):
    for part in dotted.split("."):
        obj = obj.get(part) if isinstance(obj, dict) else None
    return obj


def label_match(labels: dict, selector: str | None) -> bool:
    for term in filter(None, (t.strip() for t in (selector or "").split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def field_match(obj: dict, selector: str | None) -> bool:
    for term in filter(None, (t.strip() for t in (selector or "").split(","))):
        key, value = term.replace("==", "=").split("=", 1)
        if str(lookup(obj, key) or "") != value:
            return False
    return True


class Store:
    def __init__(self):
        self.objects: dict[tuple, dict] = {}
        self.history: list[tuple[int, str, tuple, dict]] = []
        self.deletions: list[tuple[str, str, str, str | None]] = []  # (plural, namespace, name, propagation)
        self.rv = 100
        self.cond = threading.Condition()

    # --- helpers -------------------------------------------------------------------------------------------
    def resource(self, prefix: str, plural: str) -> tuple[str, bool]:
        spec = RESOURCES.get(plural)
        served = spec and spec[0] == prefix
        if served and plural == "leaderworkersets":
            served = ("apis/apiextensions.k8s.io/v1", "customresourcedefinitions", "", LWS_CRD) in self.objects
        if not served:
            raise StatusError(404, "NotFound", "the server could not find the requested resource")
        return spec[1], spec[2]

    def _record(self, kind: str, key: tuple, obj: dict) -> None:
        self.rv += 1
        if kind != "DELETED":
            obj["metadata"]["resourceVersion"] = str(self.rv)
        self.history.append((self.rv, kind, key, copy.deepcopy(obj)))
        self.cond.notify_all()

    def _get(self, key: tuple) -> dict:
        if key not in self.objects:
            raise StatusError(404, "NotFound", f'{key[1]} "{key[3]}" not found', kind=key[1], name=key[3])
        return self.objects[key]

    # --- verbs ---------------------------------------------------------------------------------------------
    def create(self, prefix, plural, namespace, body) -> dict:
        kind, namespaced = self.resource(prefix, plural)
        if not isinstance(body, dict):
            raise StatusError(400, "BadRequest", "the body of the request was not a JSON object")
        if body.get("kind") not in (None, kind):
            raise StatusError(400, "BadRequest", f"the API version in the data ({body.get('kind')}) does not "
                                                 f"match the expected kind {kind}")
        meta = body.get("metadata") or {}
        name = meta.get("name") or ""
        if not name or len(name) > 253 or not _NAME.match(name):
            why = "Required value: name or generateName is required" if not name else (
                f"Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case "
                f"alphanumeric characters, '-' or '.'")
            raise StatusError(422, "Invalid", f'{kind} "{name}" is invalid: metadata.name: {why}', kind=kind,
                              name=name)
        if namespaced and meta.get("namespace") not in (None, namespace):
            raise StatusError(400, "BadRequest", "the namespace of the provided object does not match the "
                                                 "namespace sent on the request")
        with self.cond:
            key = (prefix, plural, namespace if namespaced else "", name)
            if key in self.objects:
                raise StatusError(409, "AlreadyExists", f'{plural} "{name}" already exists', kind=plural, name=name)
            obj = copy.deepcopy(body)
            obj["apiVersion"], obj["kind"] = prefix.split("/", 1)[1], kind
            obj["metadata"] = dict(meta, uid=str(uuid.uuid4()), creationTimestamp=now(), generation=1)
            if namespaced:
                obj["metadata"]["namespace"] = namespace
            self.objects[key] = obj
            self._record("ADDED", key, obj)
            return copy.deepcopy(obj)

    def get(self, prefix, plural, namespace, name) -> dict:
        _, namespaced = self.resource(prefix, plural)
        with self.cond:
            return copy.deepcopy(self._get((prefix, plural, namespace if namespaced else "", name)))

    def list(self, prefix, plural, namespace, label_selector=None, field_selector=None) -> dict:
        kind, _ = self.resource(prefix, plural)
        with self.cond:
            items = [copy.deepcopy(o) for (p, pl, ns, _), o in sorted(self.objects.items())
                     if p == prefix and pl == plural and (not namespace or ns == namespace)
                     and label_match(o["metadata"].get("labels") or {}, label_selector)
                     and field_match(o, field_selector)]
            return {"kind": f"{kind}List", "apiVersion": prefix.split("/", 1)[1],
                    "metadata": {"resourceVersion": str(self.rv)}, "items": items}

    def replace(self, prefix, plural, namespace, name, body) -> dict:
        _, namespaced = self.resource(prefix, plural)
        with self.cond:
            key = (prefix, plural, namespace if namespaced else "", name)
            current = self._get(key)
            given = (body.get("metadata") or {}).get("resourceVersion")
            if given and given != current["metadata"]["resourceVersion"]:
                raise StatusError(409, "Conflict", f'Operation cannot be fulfilled on {plural} "{name}": the object '
                                  f"has been modified; please apply your changes to the latest version and try again",
                                  kind=plural, name=name)
            return self._update(key, current, dict(copy.deepcopy(body), metadata=dict(
                current["metadata"], **{k: v for k, v in body.get("metadata", {}).items()
                                        if k in ("labels", "annotations")})))

    def patch(self, prefix, plural, namespace, name, patch, *, apply=False) -> tuple[int, dict]:
        _, namespaced = self.resource(prefix, plural)
        with self.cond:
            key = (prefix, plural, namespace if namespaced else "", name)
            if apply and key not in self.objects:
                return 201, self.create(prefix, plural, namespace, patch)
            current = self._get(key)
            patch = dict(patch)
            patch.pop("status", None) if apply else None
            meta = {k: v for k, v in (patch.pop("metadata", None) or {}).items() if k in ("labels", "annotations")}
            new = merge(current, dict(patch, metadata=meta))
            if plural == "jobs" and lookup(new, "spec.template") != lookup(current, "spec.template"):
                raise StatusError(422, "Invalid", f'Job.batch "{name}" is invalid: spec.template: Invalid value: '
                                  f'core.PodTemplateSpec{{...}}: field is immutable', kind="jobs", name=name)
            return 200, self._update(key, current, new)

    def _update(self, key, current, new) -> dict:
        new["metadata"] = merge(current["metadata"], new.get("metadata") or {})
        new["apiVersion"], new["kind"] = current["apiVersion"], current["kind"]
        if new.get("spec") != current.get("spec"):
            new["metadata"]["generation"] = current["metadata"].get("generation", 1) + 1
        self.objects[key] = new
        self._record("MODIFIED", key, new)
        return copy.deepcopy(new)

    def delete(self, prefix, plural, namespace, name, propagation=None) -> dict:
        _, namespaced = self.resource(prefix, plural)
        with self.cond:
            key = (prefix, plural, namespace if namespaced else "", name)
            obj = self._get(key)
            self.deletions.append((plural, key[2], name, propagation))
            self._remove(key)
            if propagation != "Orphan":  # the garbage collector: dependents go too
                uid = obj["metadata"]["uid"]
                for other_key, other in list(self.objects.items()):
                    if any(ref.get("uid") == uid for ref in other["metadata"].get("ownerReferences", [])):
                        self._remove(other_key)
            return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                    "details": {"name": name, "kind": plural, "uid": obj["metadata"]["uid"]}}

    def _remove(self, key) -> None:
        obj = self.objects.pop(key)
        self._record("DELETED", key, obj)

    def events_since(self, rv: int, prefix, plural, namespace, label_selector, field_selector):
        """Watch events after ``rv`` that match; call with ``self.cond`` held."""
        return [(r, kind, obj) for r, kind, key, obj in self.history
                if r > rv and key[0] == prefix and key[1] == plural and (not namespace or key[2] == namespace)
                and label_match(obj["metadata"].get("labels") or {}, label_selector)
                and field_match(obj, field_selector)]
