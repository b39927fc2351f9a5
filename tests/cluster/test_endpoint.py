"""The endpoint of a deployment: load balancer address or a port-forward, and the local forwarding loop.

Not covered here: the websocket leg of a real port-forward (the fake server does not implement the upgrade);
test_port_forward_reaches_the_pods_portforward_api only shows the request goes to the right API path.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest
from fake_cluster import NS, add_pod, pod_running

from tke_playbook.errors import ClusterError
from tke_playbook.kube.endpoint import INTERNAL_LB, PortForward, get_endpoint, plan_endpoint, port_forward


def _svc(type_="ClusterIP", ingress=None, target=60000, annotations=None):
    svc = {"metadata": {"name": "vllm-bge-m3", "annotations": annotations or {}},
           "spec": {"type": type_, "selector": {"app": "vllm-bge-m3"},
                    "ports": [{"name": "http", "port": 60000, "targetPort": target}]}}
    if ingress is not None:
        svc["status"] = {"loadBalancer": {"ingress": ingress}}
    return svc


def _pod(name, ready=True, ports=()):
    return {"metadata": {"name": name}, "spec": {"containers": [{"name": "vllm", "ports": list(ports)}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": str(ready)}]}}


@pytest.mark.parametrize("service, expected", [
    pytest.param(_svc("LoadBalancer", [{"ip": "10.0.0.7"}], annotations={INTERNAL_LB: "subnet-1"}),
                 ("load-balancer", "10.0.0.7", True), id="internal-lb-ip"),
    pytest.param(_svc("LoadBalancer", [{"hostname": "lb-abc.clb.tencentclb.com"}]),
                 ("load-balancer", "lb-abc.clb.tencentclb.com", False), id="public-lb-hostname"),
])
def test_load_balancer_with_an_address_is_used_directly(service, expected):
    plan = plan_endpoint(service, [])
    assert (plan.kind, plan.host, plan.internal) == expected and plan.port == 60000


@pytest.mark.parametrize("service, note", [
    pytest.param(_svc(), "", id="cluster-ip"),
    pytest.param(_svc("LoadBalancer", []), "no address yet", id="lb-pending"),
])
def test_otherwise_a_port_forward_to_a_ready_pod(service, note):
    plan = plan_endpoint(service, [_pod("not-ready", ready=False), _pod("ready")])
    assert (plan.kind, plan.pod, plan.remote_port) == ("port-forward", "ready", 60000)
    assert note in plan.note


def test_named_target_port_is_resolved_from_the_pod():
    plan = plan_endpoint(_svc(target="http"), [_pod("p", ports=[{"name": "http", "containerPort": 8000}])])
    assert plan.remote_port == 8000


def test_no_ready_pod_or_wrong_port_says_what_to_do():
    with pytest.raises(ClusterError, match="no ready pod.*wait_for_deployment"):
        plan_endpoint(_svc(), [_pod("p", ready=False)])
    with pytest.raises(ClusterError, match="has no port 8080 \\(it has: 60000\\)"):
        plan_endpoint(_svc(), [_pod("p")], port=8080)


@pytest.fixture
def echo_server():
    """A TCP server on 127.0.0.1 that answers every chunk with b'echo:' + chunk (plays the pod's port)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                while data := conn.recv(1024):
                    conn.sendall(b"echo:" + data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    listener.close()


def _roundtrip(url_port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", url_port), timeout=5) as conn:
        conn.sendall(payload)
        return conn.recv(1024)


def test_forwarding_loop_carries_bytes_both_ways(echo_server):
    opened = []

    def connect():
        opened.append(1)
        return socket.create_connection(("127.0.0.1", echo_server), timeout=5)

    with PortForward(connect, description="echo") as forward:
        assert forward.url.startswith("http://127.0.0.1:")
        assert _roundtrip(forward.local_port, b"one") == b"echo:one"
        assert _roundtrip(forward.local_port, b"two") == b"echo:two"
    assert len(opened) == 2  # one stream per connection
    with pytest.raises(OSError):
        _roundtrip(forward.local_port, b"after close")


def test_a_failing_stream_closes_the_connection_and_is_recorded():
    def connect():
        raise ConnectionRefusedError("pod is gone")

    with PortForward(connect) as forward:
        with socket.create_connection(("127.0.0.1", forward.local_port), timeout=5) as conn:
            assert conn.recv(10) == b""  # closed without a byte
        for _ in range(50):
            if forward.errors:
                break
            time.sleep(0.02)
    assert isinstance(forward.errors[0], ConnectionRefusedError)


def test_get_endpoint_uses_the_load_balancer_address(kube, server):
    server.put("services", dict(_svc("LoadBalancer"), apiVersion="v1", kind="Service"), NS)
    server.set_status("services", "vllm-bge-m3", NS, {"loadBalancer": {"ingress": [{"ip": "10.0.0.7"}]}})
    endpoint = get_endpoint(kube, "vllm-bge-m3", NS, forwarder=pytest.fail)
    assert (endpoint.url, endpoint.kind, endpoint.forward) == ("http://10.0.0.7:60000", "load-balancer", None)


def test_get_endpoint_port_forwards_a_cluster_ip_service(kube, server, echo_server):
    server.put("services", _svc(), NS)
    add_pod(server, NS, "vllm-bge-m3-abc", labels={"app": "vllm-bge-m3"}, container="vllm")
    pod_running(server, NS, "vllm-bge-m3-abc", container="vllm")
    calls = []

    def forwarder(kube_, pod, namespace, remote_port):
        calls.append((pod, namespace, remote_port))
        return PortForward(lambda: socket.create_connection(("127.0.0.1", echo_server), timeout=5))

    with get_endpoint(kube, "vllm-bge-m3", NS, forwarder=forwarder) as endpoint:
        assert calls == [("vllm-bge-m3-abc", NS, 60000)] and endpoint.kind == "port-forward"
        assert _roundtrip(endpoint.forward.local_port, b"ping") == b"echo:ping"


def test_get_endpoint_for_a_missing_service(kube):
    with pytest.raises(ClusterError, match="does not exist.*deploy the model first"):
        get_endpoint(kube, "vllm-nope", NS)


def test_port_forward_reaches_the_pods_portforward_api(kube, server):
    add_pod(server, NS, "p")
    with port_forward(kube, "p", NS, 60000, check=False) as forward:
        with socket.create_connection(("127.0.0.1", forward.local_port), timeout=5) as conn:
            assert conn.recv(10) == b""  # the fake refuses the websocket upgrade, so the stream closes
    assert forward.errors
    assert any(path == f"/api/v1/namespaces/{NS}/pods/p/portforward" for _, path, _ in server.requests)


def test_a_refused_port_forward_fails_when_opened_with_what_to_do(kube, server):
    # the fake refuses the websocket upgrade as an API server refuses a user without pods/portforward rights
    add_pod(server, NS, "p")
    with pytest.raises(ClusterError, match="Cannot open a port-forward to pod .*/p:60000.*pods/portforward") as exc:
        port_forward(kube, "p", NS, 60000)
    assert "answered 404 Not Found (subresource portforward is not served" in str(exc.value)
    assert "content-length" not in str(exc.value)  # no raw response headers


def test_get_endpoint_waits_for_the_load_balancer_address(kube, server, script):
    server.put("services", _svc("LoadBalancer"), NS)
    add_pod(server, NS, "vllm-bge-m3-abc", labels={"app": "vllm-bge-m3"}, container="vllm")
    pod_running(server, NS, "vllm-bge-m3-abc", container="vllm")
    script(lambda: server.set_status("services", "vllm-bge-m3", NS,
                                     {"loadBalancer": {"ingress": [{"ip": "10.0.0.9"}]}}))
    endpoint = get_endpoint(kube, "vllm-bge-m3", NS, wait_for_address=30, poll=0.05, forwarder=pytest.fail)
    assert endpoint.url == "http://10.0.0.9:60000"


def test_load_balancer_still_pending_falls_back_to_a_port_forward(kube, server):
    server.put("services", _svc("LoadBalancer"), NS)
    add_pod(server, NS, "vllm-bge-m3-abc", labels={"app": "vllm-bge-m3"}, container="vllm")
    pod_running(server, NS, "vllm-bge-m3-abc", container="vllm")
    made = []

    def forwarder(kube_, pod, namespace, remote_port):
        made.append(PortForward(lambda: None))
        return made[-1]

    with get_endpoint(kube, "vllm-bge-m3", NS, wait_for_address=0.1, poll=0.05, forwarder=forwarder) as endpoint:
        assert endpoint.kind == "port-forward" and "no address yet" in endpoint.note
    assert made[0]._closing.is_set()  # closing the endpoint closed its forward


def test_read_api_key_from_the_services_secret(kube, server):
    import base64

    from tke_playbook.kube import read_api_key

    server.put("secrets", {"metadata": {"name": "vllm-bge-m3-api-key"},
                           "data": {"api-key": base64.b64encode(b"sk-test-123").decode()}}, NS)
    assert read_api_key(kube, "vllm-bge-m3-api-key", NS) == "sk-test-123"
    assert read_api_key(kube, "vllm-other-api-key", NS) is None
