"""The connection to a cluster: the official ``kubernetes`` client, configured from kubeconfig or in-cluster.

:class:`Kube` holds one ``ApiClient`` and the typed APIs the cluster layer uses, plus :meth:`Kube.request` for
generic calls on any kind (server-side apply, the LeaderWorkerSet CRD). Everything comes back as plain dicts in the
API's own camelCase shape, so the pure functions (diagnosis, progress) never see client model classes.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from ..errors import ClusterError, InvalidSpecError
from ..hostenv import kubeconfig_path, read_user_text
from ..specs.names import unknown
from ..specs.objects import ObjectMeta

FIELD_MANAGER = "tke-playbook"

# kind -> (plural, namespaced); the API group comes from the manifest's apiVersion.
KINDS: dict[str, tuple[str, bool]] = {
    "Namespace": ("namespaces", False), "Node": ("nodes", False), "Pod": ("pods", True),
    "Service": ("services", True), "ConfigMap": ("configmaps", True), "Secret": ("secrets", True),
    "PersistentVolumeClaim": ("persistentvolumeclaims", True), "PersistentVolume": ("persistentvolumes", False),
    "ServiceAccount": ("serviceaccounts", True), "Event": ("events", True), "Deployment": ("deployments", True),
    "StatefulSet": ("statefulsets", True), "ReplicaSet": ("replicasets", True), "Job": ("jobs", True),
    "StorageClass": ("storageclasses", False),
    "CustomResourceDefinition": ("customresourcedefinitions", False), "LeaderWorkerSet": ("leaderworkersets", True),
    "Role": ("roles", True), "RoleBinding": ("rolebindings", True),
}


@dataclass(frozen=True)
class ObjectRef:
    """Enough to find one object again: ``ObjectRef('apps/v1', 'Deployment', 'vllm-bge-m3', 'default')``."""

    api_version: str
    kind: str
    name: str
    namespace: str | None = None

    @classmethod
    def of(cls, manifest: dict, namespace: str | None = None) -> "ObjectRef":
        if isinstance(manifest, ObjectRef):
            return manifest
        meta = ObjectMeta.from_api(manifest)
        return cls(manifest.get("apiVersion", ""), manifest.get("kind", ""), meta.name, meta.namespace or namespace)

    def path(self, *, collection: bool = False) -> str:
        """The REST path of the object (or of its collection)."""
        if self.kind not in KINDS:
            raise unknown("kind", self.kind, KINDS)
        plural, namespaced = KINDS[self.kind]
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        if namespaced:
            base += f"/namespaces/{self.namespace or 'default'}"
        return f"{base}/{plural}" if collection else f"{base}/{plural}/{self.name}"

    def __str__(self) -> str:
        where = f" in namespace {self.namespace}" if self.namespace and KINDS.get(self.kind, ("", True))[1] else ""
        return f"{self.kind} '{self.name}'{where}"


class Kube:
    """One cluster connection: ``api_client`` plus ``core``, ``apps``, ``batch``, ``storage``, ``custom``,
    ``apiext`` and ``version`` typed APIs."""

    def __init__(self, api_client: k8s.ApiClient, *, context: str | None = None):
        self.api_client = api_client
        self.context = context
        self.core = k8s.CoreV1Api(api_client)
        self.apps = k8s.AppsV1Api(api_client)
        self.batch = k8s.BatchV1Api(api_client)
        self.storage = k8s.StorageV1Api(api_client)
        self.custom = k8s.CustomObjectsApi(api_client)
        self.apiext = k8s.ApiextensionsV1Api(api_client)
        self.version = k8s.VersionApi(api_client)

    @classmethod
    def from_host(cls, host: str, *, token: str | None = None) -> "Kube":
        """A connection to ``host`` without kubeconfig (tests and port-forwarded API servers)."""
        configuration = k8s.Configuration(host=host)
        if token:
            configuration.api_key = {"BearerToken": token}
            configuration.api_key_prefix = {"BearerToken": "Bearer"}
        return cls(k8s.ApiClient(configuration), context=host)

    @property
    def host(self) -> str:
        return self.api_client.configuration.host

    def to_dict(self, model: Any) -> Any:
        """A typed client model as the API's camelCase dict."""
        return self.api_client.sanitize_for_serialization(model)

    def request(self, method: str, path: str, *, query: dict | None = None, body: Any = None,
                content_type: str | None = None, timeout: float | None = 60.0, raw: bool = False) -> Any:
        """One REST call through the official client; JSON (or text when ``raw``) back, ApiException on error."""
        headers = {"Accept": "text/plain" if raw else "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        params = [(k, v) for k, v in (query or {}).items() if v is not None]
        method, url, headers, body, post = self.api_client.param_serialize(
            method, path, query_params=params, header_params=headers, body=body, auth_settings=["BearerToken"])
        response = self.api_client.call_api(method, url, headers, body, post, _request_timeout=timeout)
        response.read()
        text = response.data.decode("utf-8", "replace")
        if not 200 <= response.status <= 299:
            raise ApiException.from_response(http_resp=response, body=text, data=None)
        return text if raw else json.loads(text or "null")

    def close(self) -> None:
        self.api_client.close()

    def __enter__(self) -> "Kube":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Kube(host={self.host!r}, context={self.context!r})"


MAX_KUBECONFIG_BYTES = 16 << 20  # certificates included, a kubeconfig is kilobytes
GET_KUBECONFIG = ("download the cluster's kubeconfig from the TKE console (cluster > Basic information) and pass "
                  "its path")


def check_kubeconfig(path) -> dict:
    """The kubeconfig at ``path`` as a dict, checked before the client library sees it: a regular file (a FIFO or
    /dev/zero would hang the loader), at most 16 MiB, UTF-8 YAML whose top is a mapping with 'clusters' and
    'contexts' lists. InvalidSpecError in one line otherwise (never a YAML traceback)."""
    where = f"kubeconfig {path}"
    try:
        os.stat(os.path.expanduser(os.fspath(path)))
    except FileNotFoundError:
        raise InvalidSpecError(f"Cannot load {where}: the file does not exist: {GET_KUBECONFIG}", field="kubeconfig",
                               value=str(path)) from None
    except OSError:
        pass  # a name too long, a file on the way: read_user_text says which
    text = read_user_text(path, where, "kubeconfig", MAX_KUBECONFIG_BYTES)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1}: {getattr(exc, 'problem', '')})" if mark else ""
        raise InvalidSpecError(f"{where} is not YAML{at}: {GET_KUBECONFIG}", field="kubeconfig",
                               value=str(path)) from None
    except RecursionError:
        raise InvalidSpecError(f"{where} is nested too deeply to be a kubeconfig: {GET_KUBECONFIG}",
                               field="kubeconfig", value=str(path)) from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("clusters", "contexts")):
        raise InvalidSpecError(f"{where} is not a kubeconfig (it has no 'clusters' and 'contexts' lists): "
                               f"{GET_KUBECONFIG}", field="kubeconfig", value=str(path))
    return data


def _config_file(kubeconfig: str | None) -> Path | None:
    """The kubeconfig file to load, or None for in-cluster config. A file that is missing, not a regular file, not
    YAML or not a kubeconfig is a ClusterError in one line."""
    path = kubeconfig or kubeconfig_path()
    if path:
        try:
            check_kubeconfig(path)
        except InvalidSpecError as exc:
            raise ClusterError(str(exc), obj=path, cause=exc) from None
    env = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    if not path and env and not os.environ.get("KUBERNETES_SERVICE_HOST"):
        raise ClusterError(f"Cannot load kubeconfig: KUBECONFIG is set to {os.pathsep.join(env)}, but no such file "
                           f"exists. Fix the path, or download the cluster's kubeconfig from the TKE console "
                           f"(cluster > Basic information) and point KUBECONFIG at it.", obj=env)
    return Path(path).expanduser() if path else None


def connect(kubeconfig: str | None = None, context: str | None = None) -> Kube:
    """Connect from ``kubeconfig`` (default: $KUBECONFIG or ~/.kube/config) or, inside a pod, in-cluster config."""
    path = _config_file(kubeconfig)
    try:
        if path is None:
            configuration = k8s.Configuration()
            k8s_config.load_incluster_config(client_configuration=configuration)
            return Kube(k8s.ApiClient(configuration), context="in-cluster")
        api_client = k8s_config.new_client_from_config(config_file=str(path), context=context)
        if context is None:
            _, active = k8s_config.list_kube_config_contexts(config_file=str(path))
            context = (active or {}).get("name")
        return Kube(api_client, context=context)
    except (k8s_config.ConfigException, yaml.YAMLError, ValueError, TypeError, AttributeError, KeyError) as exc:
        where = f"kubeconfig {path}" if path else "in-cluster config (no kubeconfig found)"
        detail = " ".join(str(exc).split()).rstrip(".") or type(exc).__name__
        raise ClusterError(f"Cannot load {where}{f' context {context!r}' if context else ''}: {detail}. Download the "
                           f"cluster's kubeconfig from the TKE console and set KUBECONFIG to its path.",
                           obj=path, cause=exc) from None


def api_status(exc: BaseException) -> tuple[int, str, str]:
    """(HTTP code, reason, message) of a failed call; code 0 when the server could not be reached."""
    if isinstance(exc, ApiException):
        try:
            body = json.loads(exc.body or "{}")
        except (TypeError, ValueError):
            body = {}
        body = body if isinstance(body, dict) else {}
        return exc.status or 0, body.get("reason") or exc.reason or "", body.get("message") or str(exc.reason or "")
    text = str(exc)
    short = re.search(r"\[Errno -?\d+\] [^'\")]+|(read|connect) timed out|Name or service not known|"
                      r"CERTIFICATE_VERIFY_FAILED[^'\")]*", text)
    return 0, type(exc).__name__, short.group(0) if short else text


def cluster_error(exc: BaseException, what: str, kube: Kube | None = None, obj: Any = None) -> ClusterError:
    """A ClusterError in plain words for a failed call (unreachable, forbidden, unauthorised or other)."""
    code, reason, message = api_status(exc)
    if code == 0:
        host = f" at {kube.host}" if kube else ""
        text = (f"Cannot reach the Kubernetes API{host} while trying to {what}: {message}. Check that the "
                f"kubeconfig context is right, that the cluster's API server endpoint is open to this machine "
                f"(TKE console: cluster > Basic information > Cluster APIServer information) and the network.")
    elif code == 401:
        text = f"The cluster refused our credentials while trying to {what}: download a fresh kubeconfig."
    elif code == 403:
        text = (f"Not allowed to {what}: {message}. Ask the cluster admin for permission (RBAC) or use a "
                f"kubeconfig with more rights.")
    else:
        text = f"Could not {what}: {message or reason} (HTTP {code})."
    return ClusterError(text, obj=obj, cause=exc)
