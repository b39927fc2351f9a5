"""The public LoadBalancer's auth proxy, run for real: the generated nginx.conf template, filled in as the
container does (``envsubst '${VLLM_API_KEY}'``), served by Debian's nginx on 127.0.0.1 in front of a tiny backend.

vLLM's own key guards only /v1 (0.10; 0.33 adds /v2, /inference, /cohere) - facts.md section 3 - so the proxy must
refuse every other path without ``Authorization: Bearer <key>`` and let /health through for the probes. Skipped,
saying so, when nginx is not installed (``make nginx-deps`` installs nginx-light)."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

from fakes.localtarget import free_port
from tke_playbook.manifests.serving import PROXY_START, build_proxy_configmap
from tke_playbook.specs.serving import CONTAINER_PORT, PROXY_PORT, seed_profile

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (apt-get install nginx-light)")
KEY = "Abc-123_xyz.~+/key=="  # every character class a bearer token may hold (RFC 6750 b64token)


class _Backend(http.server.BaseHTTPRequestHandler):
    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        pad = int(self.path.partition("pad=")[2] or 0)  # a reply of about that many bytes (a big embeddings batch)
        answer = {"path": self.path, "auth": self.headers.get("Authorization"), "bytes": len(body)}
        reply = json.dumps({**answer, "pad": "0" * pad} if pad else answer)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply.encode())

    do_GET = do_POST = _answer

    def log_message(self, *args):
        pass


def _envsubst(template: str, key: str) -> str:
    """What the container runs: envsubst limited to ${VLLM_API_KEY} (the real tool when present)."""
    command = PROXY_START.split(" < ")[0].split()  # ["envsubst", "'${VLLM_API_KEY}'"]
    assert command == ["envsubst", "'${VLLM_API_KEY}'"]
    if shutil.which("envsubst"):
        return subprocess.run(["envsubst", "${VLLM_API_KEY}"], input=template, capture_output=True, text=True,
                              env={"VLLM_API_KEY": key, "PATH": os.environ["PATH"]}, check=True).stdout
    return template.replace("${VLLM_API_KEY}", key)


def _start_proxy(tmp):
    backend = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Backend)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    port = free_port()
    template = build_proxy_configmap(seed_profile())["data"]["nginx.conf.template"]
    config = _envsubst(template, KEY)
    # only what this machine needs: other ports, private temp paths, root's workers may write them
    config = (config.replace(f"listen {PROXY_PORT};", f"listen 127.0.0.1:{port};")
              .replace(f"127.0.0.1:{CONTAINER_PORT}", f"127.0.0.1:{backend.server_address[1]}")
              .replace("/tmp/", f"{tmp}/"))
    if os.geteuid() == 0:
        config = "user root;\n" + config
    (tmp / "nginx.conf").write_text(config)
    process = subprocess.Popen([NGINX, "-c", str(tmp / "nginx.conf"), "-e", "stderr", "-p", str(tmp)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"nginx did not start: {process.stderr.read().decode(errors='replace')}")
            time.sleep(0.05)
    return f"http://127.0.0.1:{port}", process, backend


def _stop_proxy(process, backend):
    process.terminate()
    process.wait(timeout=10)
    backend.shutdown()


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    url, process, backend = _start_proxy(tmp_path_factory.mktemp("nginx"))
    yield url
    _stop_proxy(process, backend)


@pytest.fixture(scope="module")
def proxy_without_temp_files(tmp_path_factory):
    """The proxy whose temp folders cannot take a file, as when the pod's /tmp (a 64Mi memory volume) is full."""
    tmp = tmp_path_factory.mktemp("nginx-full-tmp")
    url, process, backend = _start_proxy(tmp)
    for path in tmp.iterdir():
        if path.is_dir():  # client_body, proxy, …: replaced by plain files, so nothing can be created in them
            shutil.rmtree(path)
            path.write_text("")
    yield url
    _stop_proxy(process, backend)


def _get(url: str, auth: str | None = None, data: bytes | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    if auth is not None:
        request.add_header("Authorization", auth)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        raw = exc.read() or b"{}"
        try:
            body = json.loads(raw)
        except ValueError:  # nginx's own HTML error page
            body = {"_text": raw.decode(errors="replace")}
        return exc.code, {**body, "_www": exc.headers.get("WWW-Authenticate")}


OPEN_IN_VLLM = ["/pooling", "/score", "/classify", "/tokenize", "/invocations", "/metrics", "/rerank", "/version",
                "/v1/embeddings", "/v1/models", "/v2/rerank", "/inference/v1/generate", "/", "/health/",
                "/healthz", "/ping"]


@pytest.mark.parametrize("path", OPEN_IN_VLLM)
def test_every_path_but_health_needs_the_key(proxy, path):
    status, body = _get(proxy + path)
    assert status == 401 and body["error"] == "Unauthorized" and body["_www"] == "Bearer"
    assert _get(proxy + path, auth="Bearer wrong-key")[0] == 401
    assert _get(proxy + path, auth=f"Bearer {KEY}")[0] == 200


def test_health_stays_open_and_reaches_only_health(proxy):
    assert _get(proxy + "/health") == (200, {"path": "/health", "auth": None, "bytes": 0})
    status, body = _get(proxy + "/pooling/../health")  # normalised by nginx: the backend still sees /health
    assert status == 200 and body["path"] == "/health"


@pytest.mark.parametrize("auth, status", [
    pytest.param(f"Bearer {KEY}", 200, id="bearer"),
    pytest.param(f"bearer {KEY}", 200, id="lower-case-scheme"),  # vLLM 0.33 accepts it too
    pytest.param(f"Bearer {KEY.upper()}", 401, id="key-case-matters"),
    pytest.param(f"Bearer  {KEY}", 401, id="two-spaces"),  # vLLM compares the exact "Bearer <key>" string
    pytest.param(f"Bearer {KEY}x", 401, id="longer-key"),
    pytest.param(f"Bearer {KEY[:-1]}", 401, id="prefix-of-key"),
    pytest.param(f"Basic {KEY}", 401, id="basic-scheme"),
    pytest.param(KEY, 401, id="no-scheme"),
    pytest.param("Bearer ${VLLM_API_KEY}", 401, id="unsubstituted-placeholder"),
])
def test_the_key_must_match_exactly(proxy, auth, status):
    assert _get(proxy + "/pooling", auth=auth)[0] == status


def test_the_key_reaches_vllm_and_big_batches_pass(proxy):
    body = json.dumps({"input": ["x" * 1000] * 2000}).encode()  # ≈ 2 MB: above nginx's 1 MB default
    status, echo = _get(proxy + "/v1/embeddings", auth=f"Bearer {KEY}", data=body)
    assert status == 200 and echo == {"path": "/v1/embeddings", "auth": f"Bearer {KEY}", "bytes": len(body)}


def test_big_bodies_and_replies_stream_without_temp_files(proxy_without_temp_files):
    # the container's /tmp is a 64Mi memory volume: a buffered body or reply spilling there would fail the request
    # (or, past the size limit, get the whole vLLM pod evicted), so nothing may go through temp files
    body = json.dumps({"input": ["x" * 1000] * 2000}).encode()  # ≈ 2 MB request
    status, echo = _get(proxy_without_temp_files + "/v1/embeddings?pad=4000000", auth=f"Bearer {KEY}", data=body)
    assert status == 200 and echo["bytes"] == len(body) and len(echo["pad"]) == 4_000_000
