"""The URL of a deployed embedding service: its load balancer's address, or a port-forward from this notebook.

A Service of type LoadBalancer with an ingress address is used directly. A ClusterIP Service (the default) or a
load balancer still waiting for its address is reached through a port-forward to one ready pod: a local socket
server on 127.0.0.1 whose connections each open a Kubernetes port-forward stream (``kubernetes.stream``).
"""

from __future__ import annotations

import base64
import re
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes.stream import portforward

from ..errors import ClusterError
from ..specs.labels import selector_matching
from ..specs.objects import Pod, Secret, Service, ServicePort
from ..specs.serving import API_KEY_SECRET_KEY
from ..specs.serving import INTERNAL_LB_SUBNET_ANNOTATION as INTERNAL_LB
from .client import Kube, api_status, cluster_error

_CHUNK = 65536


@dataclass(frozen=True)
class EndpointPlan:
    """How to reach a Service (pure): ``kind`` is 'load-balancer' (``host``:``port``) or 'port-forward' (to
    ``pod``:``remote_port``)."""

    kind: str
    port: int
    host: str = ""
    pod: str = ""
    remote_port: int = 0
    internal: bool = False
    note: str = ""


def plan_endpoint(service: dict | Service, pods: list[dict | Pod], port: int | None = None) -> EndpointPlan:
    """Choose between the load balancer's address and a port-forward to a ready pod."""
    service = Service.of(service)
    chosen = next((p for p in service.ports if port is None or p.port == port), None)
    if chosen is None:
        known = ", ".join(str(p.port) for p in service.ports) or "none"
        raise ClusterError(f"Service {service.meta.name} has no port {port} (it has: {known}): pass one of those.",
                           obj=service)
    note = ""
    if service.type == "LoadBalancer":
        if service.ingress:
            return EndpointPlan("load-balancer", chosen.port, host=service.ingress[0],
                                internal=INTERNAL_LB in service.meta.annotations)
        note = "the load balancer has no address yet; using a port-forward meanwhile"
    ready = next((pod for pod in map(Pod.of, pods) if pod.ready), None)
    if ready is None:
        raise ClusterError(f"Service {service.meta.name} has no ready pod to forward to: wait for the deployment "
                           f"(wait_for_deployment) first.", obj=service)
    return EndpointPlan("port-forward", chosen.port, pod=ready.name, remote_port=_pod_port(chosen, ready),
                        internal=True, note=note)


def _pod_port(port: ServicePort, pod: Pod) -> int:
    """The pod port a Service port sends to: its targetPort (a number, or a name looked up in the pod's
    containers), else the port itself."""
    target = port.port if port.target_port is None else port.target_port
    if isinstance(target, str):
        return pod.container_port(target) or port.port
    return target


class PortForward:
    """Forward ``127.0.0.1:<local_port>`` to a pod port. ``connect()`` opens one stream to the pod per accepted
    connection (a socket-like object with ``sendall``, ``recv``, ``fileno`` and ``close``)."""

    def __init__(self, connect: Callable[[], Any], *, local_port: int = 0, description: str = ""):
        self._connect = connect
        self.description = description
        self._closing = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", local_port))
        self._listener.settimeout(0.2)
        self.local_port = self._listener.getsockname()[1]
        self.errors: list[BaseException] = []
        self._threads: list[threading.Thread] = []
        self._accept_thread = threading.Thread(target=self._accept, name=f"port-forward {description}", daemon=True)
        self._accept_thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.local_port}"

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._pump, args=(client,), daemon=True)
            thread.start()
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]

    def _pump(self, client: socket.socket) -> None:
        try:
            remote = self._connect()
        except Exception as exc:  # the pod went away, RBAC forbids pods/portforward, ...
            self.errors.append(exc)
            client.close()
            return
        try:
            peers = {client.fileno(): (client, remote), remote.fileno(): (remote, client)}
            while not self._closing.is_set():
                readable, _, _ = select.select(list(peers), [], [], 0.2)
                for fd in readable:
                    source, sink = peers[fd]
                    data = source.recv(_CHUNK)
                    if not data:
                        return
                    sink.sendall(data)
        except OSError as exc:
            self.errors.append(exc)
        finally:
            for end in (client, remote):
                try:
                    end.close()
                except OSError:
                    pass

    def close(self) -> None:
        self._closing.set()
        self._listener.close()
        self._accept_thread.join(timeout=2)
        for thread in self._threads:
            thread.join(timeout=2)

    def __enter__(self) -> "PortForward":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PortForward({self.url} -> {self.description})"


def _refusal(exc: BaseException) -> str:
    """The gist of a refused websocket handshake ("answered 403 Forbidden (pods "p" is forbidden: ...)")."""
    text = api_status(exc)[2]
    status = re.search(r"Handshake status (\d+[^-{]*)", text)
    message = re.search(r'"message":\s*"((?:[^"\\]|\\.)*)"', text)
    if not status:
        return text
    return f"the API server answered {status.group(1).strip()}" + (f" ({message.group(1)})" if message else "")


def port_forward(kube: Kube, pod: str, namespace: str, remote_port: int, *, local_port: int = 0,
                 check: bool = True) -> PortForward:
    """Forward a local port to ``pod``:``remote_port`` through the API server (like ``kubectl port-forward``).

    With ``check``, one stream is opened first, so a forward the API server refuses (RBAC, pod gone) fails here
    with a ClusterError instead of as dropped connections in the HTTP client later."""
    def connect():
        forward = portforward(kube.core.connect_get_namespaced_pod_portforward, pod, namespace,
                              ports=str(remote_port))
        sock = forward.socket(remote_port)
        sock.setblocking(True)
        return sock

    if check:
        try:
            connect().close()
        except Exception as exc:  # ApiException (status 0 from the websocket leg), socket errors
            raise ClusterError(f"Cannot open a port-forward to pod {namespace}/{pod}:{remote_port}: "
                               f"{_refusal(exc)}. Check that the pod is Running and that your kubeconfig may "
                               f"create pods/portforward (RBAC); or expose the Service as an internal "
                               f"LoadBalancer instead.", obj=pod, cause=exc) from None
    return PortForward(connect, local_port=local_port, description=f"pod {namespace}/{pod}:{remote_port}")


@dataclass
class Endpoint:
    """Where the service answers: ``url`` (e.g. ``http://10.0.0.7:60000``); ``forward`` is set for port-forwards
    and must stay open while the notebook uses the URL (``close()`` when done)."""

    url: str
    kind: str
    internal: bool
    note: str = ""
    forward: PortForward | None = field(default=None, repr=False)

    def close(self) -> None:
        if self.forward:
            self.forward.close()

    def __enter__(self) -> "Endpoint":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_api_key(kube: Kube, secret_name: str, namespace: str, key: str = API_KEY_SECRET_KEY) -> str | None:
    """The API key the service expects (from its Secret, e.g. ``vllm-<slug>-api-key``), or None without one."""
    try:
        secret = kube.to_dict(kube.core.read_namespaced_secret(secret_name, namespace))
    except Exception as exc:
        if getattr(exc, "status", None) == 404:
            return None
        raise cluster_error(exc, f"read Secret {secret_name}", kube, secret_name) from None
    secret = Secret.of(secret)
    if key in secret.data:
        return base64.b64decode(secret.data[key]).decode("utf-8")
    return secret.string_data.get(key)


def _read(kube: Kube, service_name: str, namespace: str) -> tuple[dict, list[dict]]:
    try:
        service = kube.to_dict(kube.core.read_namespaced_service(service_name, namespace))
        selector = selector_matching(Service.of(service).selector)
        pods = [kube.to_dict(p) for p in kube.core.list_namespaced_pod(namespace, label_selector=selector).items] \
            if selector else []
        return service, pods
    except Exception as exc:
        if getattr(exc, "status", None) == 404:
            raise ClusterError(f"Service '{service_name}' does not exist in namespace {namespace}: deploy the model "
                               f"first.", obj=service_name, cause=exc) from None
        raise cluster_error(exc, f"read Service {service_name}", kube, service_name) from None


def get_endpoint(kube: Kube, service_name: str, namespace: str, port: int | None = None, *,
                 wait_for_address: float = 0.0, poll: float = 3.0,
                 forwarder: Callable[..., PortForward] = port_forward) -> Endpoint:
    """The service's URL: the load balancer's address (waiting up to ``wait_for_address`` seconds for TKE to
    assign one), else a port-forward opened from here."""
    deadline = time.monotonic() + wait_for_address
    plan = plan_endpoint(*_read(kube, service_name, namespace), port)
    while plan.note and time.monotonic() < deadline:  # a load balancer without its address yet
        time.sleep(max(0.01, min(poll, deadline - time.monotonic())))
        plan = plan_endpoint(*_read(kube, service_name, namespace), port)
    if plan.kind == "load-balancer":
        return Endpoint(f"http://{plan.host}:{plan.port}", plan.kind, plan.internal, plan.note)
    forward = forwarder(kube, plan.pod, namespace, plan.remote_port)
    return Endpoint(forward.url, plan.kind, True, plan.note, forward)
