"""A fake Kubernetes API server on 127.0.0.1 for driving the real ``kubernetes`` client in tests.

It serves create/get/list/patch (merge, strategic-merge as merge, server-side apply)/replace/delete with Status
bodies (404, 409, 422), resourceVersions, ``?watch=true`` chunked event streams with ``timeoutSeconds``, pod logs
with ``tailLines``/``previous`` and ``/version``. Tests script what the cluster does through the helpers at the
bottom (a Job's pods succeed or fail, a pod is OOMKilled, an event or a log line appears); there is no controller.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from fake_store import LWS_CRD, StatusError, Store, now

VERSION = {"major": "1", "minor": "30", "gitVersion": "v1.30.0-tke.7", "gitCommit": "fake", "gitTreeState": "clean",
           "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.22", "compiler": "gc", "platform": "linux/amd64"}
WATCH_CAP_S = 10  # a watch without timeoutSeconds still ends, so no request loop is unbounded


def _check_log_container(pod: dict, container: str | None) -> None:
    """As the API server: a pod with several containers needs ``container``, and it must be one of them."""
    names = [c["name"] for c in (pod.get("spec") or {}).get("containers") or []]
    if (container is None and len(names) > 1) or (container is not None and container not in names):
        raise StatusError(400, "BadRequest", f"a container name must be specified for pod "
                                             f"{pod['metadata']['name']}, choose one of: {names}")


def _route(path: str):
    """``/api/v1/namespaces/ns/pods/name/log`` -> (prefix, plural, namespace, name, subresource)."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"]:
        prefix, rest = "/".join(parts[:2]), parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        prefix, rest = "/".join(parts[:3]), parts[3:]
    else:
        raise StatusError(404, "NotFound", f"the server could not find the requested resource ({path})")
    namespace = ""
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    if not rest or len(rest) > 3:
        raise StatusError(404, "NotFound", f"the server could not find the requested resource ({path})")
    return prefix, rest[0], namespace, (rest[1] if len(rest) > 1 else None), (rest[2] if len(rest) > 2 else None)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # keep-alive + Nagle + delayed ACK would add ~40 ms per request
    wbufsize = 1 << 16  # headers and body leave in one write; flushed after each request and watch event
    server: "_HTTPServer"

    def log_message(self, *args):  # keep test output quiet
        pass

    def _send(self, code: int, body, content_type="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw or b"null")
        except ValueError:
            raise StatusError(400, "BadRequest", "the body of the request could not be decoded as JSON") from None

    def _handle(self, method: str):
        fake: FakeApiServer = self.server.fake
        url = urlparse(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        fake.requests.append((method, url.path, query))
        fake.authorizations.append(self.headers.get("Authorization"))
        try:
            if url.path.rstrip("/") == "/version":
                return self._send(200, VERSION)
            prefix, plural, ns, name, sub = _route(url.path)
            store = fake.store
            if sub == "log" and plural == "pods" and method == "GET":
                _check_log_container(store.get(prefix, plural, ns, name), query.get("container"))
                lines = fake.logs.get((ns, name, query.get("previous") == "true"), [])
                if "tailLines" in query:
                    lines = lines[-int(query["tailLines"]):] if int(query["tailLines"]) else []
                return self._send(200, "".join(line + "\n" for line in lines).encode(), "text/plain")
            if sub is not None:
                raise StatusError(404, "NotFound", f"subresource {sub} is not served by the fake")
            if method == "GET" and name is None and query.get("watch") in ("true", "1"):
                return self._watch(prefix, plural, ns, query)
            if method == "GET":
                result = (store.get(prefix, plural, ns, name) if name else
                          store.list(prefix, plural, ns, query.get("labelSelector"), query.get("fieldSelector")))
                return self._send(200, result)
            if method == "POST" and name is None:
                return self._send(201, store.create(prefix, plural, ns, self._body()))
            if method == "PUT" and name:
                return self._send(200, store.replace(prefix, plural, ns, name, self._body()))
            if method == "PATCH" and name:
                kind = (self.headers.get("Content-Type") or "").split(";")[0]
                if kind == "application/json-patch+json":
                    raise StatusError(415, "UnsupportedMediaType", "the fake serves merge and apply patches only")
                if kind == "application/apply-patch+yaml" and not query.get("fieldManager"):
                    raise StatusError(400, "BadRequest", "PATCH, fieldManager is required for apply requests")
                code, obj = store.patch(prefix, plural, ns, name, self._body(),
                                        apply=kind == "application/apply-patch+yaml")
                return self._send(code, obj)
            if method == "DELETE" and name:
                body = self._body() or {}
                policy = query.get("propagationPolicy") or body.get("propagationPolicy")
                return self._send(200, store.delete(prefix, plural, ns, name, policy))
            raise StatusError(405, "MethodNotAllowed", f"{method} is not supported on {url.path}")
        except StatusError as err:
            return self._send(err.code, err.body)

    def _watch(self, prefix, plural, ns, query):
        store = self.server.fake.store
        store.resource(prefix, plural)
        deadline = time.monotonic() + min(int(query.get("timeoutSeconds") or WATCH_CAP_S), WATCH_CAP_S)
        labels, fields = query.get("labelSelector"), query.get("fieldSelector")
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        with store.cond:
            if query.get("resourceVersion"):
                since, pending = int(query["resourceVersion"]), []
            else:  # no resourceVersion: synthetic ADDED events for what exists now, then changes
                since = store.rv
                pending = [(since, "ADDED", o) for o in store.list(prefix, plural, ns, labels, fields)["items"]]
        try:
            while True:
                for rv, kind, obj in pending:
                    self._chunk(json.dumps({"type": kind, "object": obj}).encode() + b"\n")
                    since = max(since, rv)
                left = deadline - time.monotonic()
                if left <= 0 or self.server.fake.closing:
                    break
                with store.cond:
                    pending = store.events_since(since, prefix, plural, ns, labels, fields)
                    if not pending:
                        store.cond.wait(min(left, 0.5))
                        pending = store.events_since(since, prefix, plural, ns, labels, fields)
            self._chunk(b"")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _chunk(self, data: bytes):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def do_PUT(self):
        self._handle("PUT")

    def do_PATCH(self):
        self._handle("PATCH")

    def do_DELETE(self):
        self._handle("DELETE")


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    fake: "FakeApiServer"


class FakeApiServer:
    """``with FakeApiServer() as server: Kube.from_host(server.url)``; script the cluster with the helpers."""

    def __init__(self):
        self.store = Store()
        self.logs: dict[tuple[str, str, bool], list[str]] = {}
        self.requests: list[tuple[str, str, dict]] = []
        self.authorizations: list[str | None] = []
        self.closing = False
        self._http = _HTTPServer(("127.0.0.1", 0), _Handler)
        self._http.fake = self
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}"
        self._thread = threading.Thread(target=self._http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.closing = True
        with self.store.cond:
            self.store.cond.notify_all()
        self._http.shutdown()
        self._http.server_close()

    # --- scripting: put objects in and change their status -------------------------------------------------
    def put(self, plural: str, obj: dict, namespace: str = "") -> dict:
        from fake_store import RESOURCES

        prefix = RESOURCES[plural][0]
        if plural == "leaderworkersets":
            self.install_lws()
        return self.store.create(prefix, plural, namespace or obj["metadata"].get("namespace", ""), obj)

    def get(self, plural: str, name: str, namespace: str = "") -> dict:
        from fake_store import RESOURCES

        return self.store.get(RESOURCES[plural][0], plural, namespace, name)

    def exists(self, plural: str, name: str, namespace: str = "") -> bool:
        try:
            self.get(plural, name, namespace)
            return True
        except StatusError:
            return False

    def set_status(self, plural: str, name: str, namespace: str, status: dict) -> dict:
        """Merge ``status`` into the object's status, as a controller would."""
        from fake_store import RESOURCES

        _, obj = self.store.patch(RESOURCES[plural][0], plural, namespace, name, {"status": status})
        return obj

    def install_lws(self) -> None:
        if not self.exists("customresourcedefinitions", LWS_CRD):
            self.put("customresourcedefinitions", {"metadata": {"name": LWS_CRD}, "spec": {
                "group": "leaderworkerset.x-k8s.io", "names": {"kind": "LeaderWorkerSet", "plural": "leaderworkersets"},
                "scope": "Namespaced", "versions": [{"name": "v1", "served": True, "storage": True}]}})

    def append_log(self, namespace: str, pod: str, *lines: str, previous: bool = False) -> None:
        self.logs.setdefault((namespace, pod, previous), []).extend(lines)

    def add_event(self, namespace: str, kind: str, name: str, reason: str, message: str,
                  type_: str = "Warning", count: int = 1, uid: str | None = None) -> dict:
        involved = {"kind": kind, "name": name, "namespace": namespace, **({"uid": uid} if uid else {})}
        return self.put("events", {
            "metadata": {"name": f"{name}.{len(self.store.history):x}{self.store.rv:x}", "namespace": namespace},
            "involvedObject": involved, "reason": reason,
            "message": message, "type": type_, "count": count, "lastTimestamp": now()}, namespace)
