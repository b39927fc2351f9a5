"""Typed, read-only views of the Kubernetes objects the toolkit reads: pods, nodes, Jobs, Deployments and
LeaderWorkerSets, Services, PVCs, events, StorageClasses, APIServices and Secrets.

Each view is a small frozen dataclass parsed once from the API's camelCase dict (``Pod.from_api(obj)``, or
``Pod.of(obj)``, which passes a view through unchanged). Parsing is the one place that tolerates what a real API
server leaves out or sends as ``null``: a missing map is empty, a missing list is empty, a missing number is 0 (or
the API's own default where it has one, e.g. a Deployment's ``replicas`` is 1), a missing string is ''. Numbers
given as strings are read as numbers and timestamps as ISO strings, so code above reads plain attributes instead of
``.get(...) or {}`` chains. Pure: no Kubernetes client here (a model object from the official client goes through
``Kube.to_dict`` first), so ``specs.diagnosis`` and the local path can use them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

V = TypeVar("V", bound="View")


# --- tolerant readers: the one place a missing or odd field is turned into a plain value ------------------------


def _map(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _maps(value: Any) -> list[dict]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, (list, tuple)) else []


def _text(value: Any) -> str:
    """'' for a missing value; a datetime (a client model's timestamp) as its ISO form."""
    if value is None:
        return ""
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _int(value: Any, default: int = 0) -> int:
    """An integer from a number or a numeric string; ``default`` when missing or not a number (bools are not)."""
    if isinstance(value, bool) or value is None:
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        try:
            return int(float(value))
        except (TypeError, ValueError):
            return default


def _strings(value: Any) -> dict[str, str]:
    """A string map (labels, annotations, a selector, allocatable quantities) with every value as text; a key
    whose value is null is left out."""
    return {str(key): _text(item) for key, item in _map(value).items() if item is not None}


def _at(obj: Any, *path: str) -> dict:
    """The nested map at ``path`` (``_at(pod, 'status')``), {} where any step is missing."""
    for key in path:
        obj = _map(obj).get(key)
    return _map(obj)


class View:
    """What every view shares: ``of`` passes a view through and parses anything else."""

    @classmethod
    def from_api(cls: type[V], obj: Any) -> V:  # pragma: no cover - each view defines it
        raise NotImplementedError

    @classmethod
    def of(cls: type[V], obj: Any) -> V:
        return obj if isinstance(obj, cls) else cls.from_api(obj)


# --- pieces several kinds share -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectMeta(View):
    """``metadata``: names, labels and annotations (str -> str), the generation and the timestamps as text."""

    name: str = ""
    namespace: str = ""
    uid: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    generation: int = 0
    resource_version: str = ""
    creation_timestamp: str = ""
    deletion_timestamp: str = ""

    @classmethod
    def from_api(cls, obj: Any) -> "ObjectMeta":
        """From a whole object (its ``metadata`` is read)."""
        meta = _at(obj, "metadata")
        return cls(_text(meta.get("name")), _text(meta.get("namespace")), _text(meta.get("uid")),
                   _strings(meta.get("labels")), _strings(meta.get("annotations")), _int(meta.get("generation")),
                   _text(meta.get("resourceVersion")), _text(meta.get("creationTimestamp")),
                   _text(meta.get("deletionTimestamp")))


@dataclass(frozen=True)
class Condition:
    """One entry of ``status.conditions``; ``status`` is 'True', 'False' or 'Unknown' as the API writes it."""

    type: str
    status: str = ""
    reason: str = ""
    message: str = ""

    @classmethod
    def all_from(cls, conditions: Any) -> tuple["Condition", ...]:
        return tuple(cls(_text(c.get("type")), _text(c.get("status")), _text(c.get("reason")),
                         _text(c.get("message"))) for c in _maps(conditions))

    @property
    def true(self) -> bool:
        return self.status == "True"

    @property
    def false(self) -> bool:
        return self.status == "False"

    def summary(self) -> str:
        """'reason: message', without the separator where one of them is empty."""
        return f"{self.reason}: {self.message}".strip(": ")


class _Conditioned:
    conditions: tuple[Condition, ...]

    def condition(self, kind: str) -> Condition | None:
        """The condition of type ``kind``, or None when the object does not report one."""
        return next((c for c in self.conditions if c.type == kind), None)

    def true_condition(self, *kinds: str) -> Condition | None:
        """The first of ``kinds`` (in that order) whose condition is 'True', or None."""
        found = {c.type: c for c in self.conditions if c.true}
        return next((found[k] for k in kinds if k in found), None)


# --- pods ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Waiting:
    """``state.waiting`` of a container ('' when it is not waiting)."""

    reason: str = ""
    message: str = ""


@dataclass(frozen=True)
class Terminated:
    """``state.terminated`` or ``lastState.terminated``; ``exit_code`` None when the API gave none."""

    reason: str = ""
    exit_code: int | None = None

    @classmethod
    def from_api(cls, value: Any) -> "Terminated | None":
        value = _map(value)
        if not value:
            return None
        code = value.get("exitCode")
        return cls(_text(value.get("reason")), None if code is None else _int(code))


@dataclass(frozen=True)
class ContainerStatus:
    """One entry of ``containerStatuses``: ``terminated`` holds the current then the last termination, those
    that exist."""

    name: str
    image: str = ""
    restart_count: int = 0
    ready: bool = False
    waiting: Waiting = Waiting()
    terminated: tuple[Terminated, ...] = ()

    @classmethod
    def all_from(cls, statuses: Any) -> tuple["ContainerStatus", ...]:
        return tuple(cls._one(s) for s in _maps(statuses))

    @classmethod
    def _one(cls, cs: dict) -> "ContainerStatus":
        waiting = _at(cs, "state", "waiting")
        ended = (Terminated.from_api(_at(cs, "state", "terminated")),
                 Terminated.from_api(_at(cs, "lastState", "terminated")))
        return cls(_text(cs.get("name")), _text(cs.get("image")), _int(cs.get("restartCount")),
                   cs.get("ready") is True, Waiting(_text(waiting.get("reason")), _text(waiting.get("message"))),
                   tuple(t for t in ended if t is not None))


@dataclass(frozen=True)
class Container:
    """One entry of ``spec.containers``: its name and its named ports (name -> containerPort)."""

    name: str
    ports: dict[str, int] = field(default_factory=dict)

    @classmethod
    def all_from(cls, containers: Any) -> tuple["Container", ...]:
        return tuple(cls(_text(c.get("name")), {_text(p.get("name")): _int(p.get("containerPort"))
                                                 for p in _maps(c.get("ports")) if p.get("name")})
                     for c in _maps(containers))


@dataclass(frozen=True)
class Pod(View, _Conditioned):
    """A pod (or a pod template: ``metadata`` and ``spec``). ``phase`` is 'Pending' until the API says otherwise,
    as the API server itself sets it on create."""

    meta: ObjectMeta
    phase: str = "Pending"
    conditions: tuple[Condition, ...] = ()
    init_container_statuses: tuple[ContainerStatus, ...] = ()
    container_statuses: tuple[ContainerStatus, ...] = ()
    containers: tuple[Container, ...] = ()

    @classmethod
    def from_api(cls, obj: Any) -> "Pod":
        status = _at(obj, "status")
        return cls(ObjectMeta.from_api(obj), _text(status.get("phase")) or "Pending",
                   Condition.all_from(status.get("conditions")),
                   ContainerStatus.all_from(status.get("initContainerStatuses")),
                   ContainerStatus.all_from(status.get("containerStatuses")),
                   Container.all_from(_at(obj, "spec").get("containers")))

    @property
    def name(self) -> str:
        return self.meta.name

    @property
    def statuses(self) -> tuple[ContainerStatus, ...]:
        """Init containers' statuses, then the containers'."""
        return self.init_container_statuses + self.container_statuses

    @property
    def restarts(self) -> int:
        """Restarts of all its containers, init containers included."""
        return sum(cs.restart_count for cs in self.statuses)

    @property
    def ready(self) -> bool:
        """Running, and its Ready condition is True (what a Service sends traffic to)."""
        ready = self.condition("Ready")
        return self.phase == "Running" and ready is not None and ready.true

    def container_port(self, name: str) -> int | None:
        """The containerPort named ``name`` in any of its containers, or None."""
        return next((c.ports[name] for c in self.containers if name in c.ports), None)


# --- events -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KubeEvent(View):
    """A core/v1 Event: ``timestamp`` is its lastTimestamp, else its eventTime (newer clients write only that)."""

    reason: str = ""
    message: str = ""
    type: str = ""
    involved_kind: str = ""
    involved_uid: str = ""
    timestamp: str = ""

    @classmethod
    def from_api(cls, obj: Any) -> "KubeEvent":
        obj, involved = _map(obj), _at(obj, "involvedObject")
        return cls(_text(obj.get("reason")), _text(obj.get("message")), _text(obj.get("type")),
                   _text(involved.get("kind")), _text(involved.get("uid")),
                   _text(obj.get("lastTimestamp") or obj.get("eventTime")))


def events_of(events: Iterable[Any]) -> list[KubeEvent]:
    return [KubeEvent.of(e) for e in events]


# --- nodes, storage -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Node(View, _Conditioned):
    """A node: its labels (in ``meta``), ``status.allocatable`` as quantity strings, its conditions."""

    meta: ObjectMeta
    allocatable: dict[str, str] = field(default_factory=dict)
    conditions: tuple[Condition, ...] = ()

    @classmethod
    def from_api(cls, obj: Any) -> "Node":
        status = _at(obj, "status")
        return cls(ObjectMeta.from_api(obj), _strings(status.get("allocatable")),
                   Condition.all_from(status.get("conditions")))

    @property
    def ready(self) -> bool:
        ready = self.condition("Ready")
        return ready is not None and ready.true


@dataclass(frozen=True)
class PersistentVolumeClaim(View):
    """A PVC: ``phase`` is 'Pending' until it is Bound (or Lost); ``storage_class`` '' means the default class."""

    meta: ObjectMeta
    phase: str = "Pending"
    storage_class: str = ""
    volume_name: str = ""

    @classmethod
    def from_api(cls, obj: Any) -> "PersistentVolumeClaim":
        spec = _at(obj, "spec")
        return cls(ObjectMeta.from_api(obj), _text(_at(obj, "status").get("phase")) or "Pending",
                   _text(spec.get("storageClassName")), _text(spec.get("volumeName")))


@dataclass(frozen=True)
class StorageClass(View):
    name: str
    provisioner: str = ""

    @classmethod
    def from_api(cls, obj: Any) -> "StorageClass":
        return cls(ObjectMeta.from_api(obj).name, _text(_map(obj).get("provisioner")))


# --- workloads ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job(View, _Conditioned):
    """A batch/v1 Job. ``completions`` is 1 when unset (the API's default); the index lists are the API's text
    form ('0-2,4'), '' when none."""

    meta: ObjectMeta
    completions: int = 1
    indexed: bool = False
    succeeded: int = 0
    active: int = 0
    completed_indexes: str = ""
    failed_indexes: str = ""
    conditions: tuple[Condition, ...] = ()

    @classmethod
    def from_api(cls, obj: Any) -> "Job":
        spec, status = _at(obj, "spec"), _at(obj, "status")
        return cls(ObjectMeta.from_api(obj), _int(spec.get("completions")) or 1,
                   spec.get("completionMode") == "Indexed", _int(status.get("succeeded")), _int(status.get("active")),
                   _text(status.get("completedIndexes")), _text(status.get("failedIndexes")),
                   Condition.all_from(status.get("conditions")))


@dataclass(frozen=True)
class Workload(View, _Conditioned):
    """A Deployment or LeaderWorkerSet as far as a rollout goes. ``replicas`` is 1 when unset (the API's default;
    0 stays 0); for a LeaderWorkerSet it counts groups."""

    kind: str
    meta: ObjectMeta
    replicas: int = 1
    ready_replicas: int = 0
    updated_replicas: int = 0
    observed_generation: int = 0
    match_labels: dict[str, str] = field(default_factory=dict)
    conditions: tuple[Condition, ...] = ()

    @classmethod
    def from_api(cls, obj: Any) -> "Workload":
        spec, status = _at(obj, "spec"), _at(obj, "status")
        return cls(_text(_map(obj).get("kind")), ObjectMeta.from_api(obj), _int(spec.get("replicas"), 1),
                   _int(status.get("readyReplicas")), _int(status.get("updatedReplicas")),
                   _int(status.get("observedGeneration")), _strings(_at(spec, "selector").get("matchLabels")),
                   Condition.all_from(status.get("conditions")))


# --- services -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServicePort:
    """One entry of a Service's ``ports``: ``target_port`` is a number, a port name, or None (then: ``port``)."""

    port: int
    target_port: int | str | None = None
    name: str = ""

    @classmethod
    def all_from(cls, ports: Any) -> tuple["ServicePort", ...]:
        return tuple(cls(_int(p.get("port")), _int_or_name(p.get("targetPort")), _text(p.get("name")))
                     for p in _maps(ports))


def _int_or_name(value: Any) -> int | str | None:
    """An IntOrString: digits are a number, anything else a name."""
    if value is None or value == "":
        return None
    text = _text(value)
    return int(text) if text.isdigit() else text


@dataclass(frozen=True)
class Service(View):
    """A Service: its type, ports, pod selector and the load balancer's addresses (IP or hostname), if any."""

    meta: ObjectMeta
    type: str = "ClusterIP"
    ports: tuple[ServicePort, ...] = ()
    selector: dict[str, str] = field(default_factory=dict)
    ingress: tuple[str, ...] = ()

    @classmethod
    def from_api(cls, obj: Any) -> "Service":
        spec = _at(obj, "spec")
        ingress = _maps(_at(obj, "status", "loadBalancer").get("ingress"))
        return cls(ObjectMeta.from_api(obj), _text(spec.get("type")) or "ClusterIP", ServicePort.all_from(
            spec.get("ports")), _strings(spec.get("selector")),
            tuple(address for i in ingress if (address := _text(i.get("ip") or i.get("hostname")))))


# --- API registration, secrets ------------------------------------------------------------------------------


@dataclass(frozen=True)
class APIService(View, _Conditioned):
    """An apiregistration.k8s.io APIService: its conditions and the Service behind it ('' when local)."""

    meta: ObjectMeta
    service_namespace: str = ""
    service_name: str = ""
    conditions: tuple[Condition, ...] = ()

    @classmethod
    def from_api(cls, obj: Any) -> "APIService":
        service = _at(obj, "spec", "service")
        return cls(ObjectMeta.from_api(obj), _text(service.get("namespace")), _text(service.get("name")),
                   Condition.all_from(_at(obj, "status").get("conditions")))


@dataclass(frozen=True)
class Secret(View):
    """A Secret's keys: ``data`` base64-encoded as the API returns it, ``string_data`` as written."""

    meta: ObjectMeta
    data: dict[str, str] = field(default_factory=dict, repr=False)
    string_data: dict[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_api(cls, obj: Any) -> "Secret":
        obj = _map(obj)
        return cls(ObjectMeta.from_api(obj), _strings(obj.get("data")), _strings(obj.get("stringData")))
