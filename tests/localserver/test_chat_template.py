"""The real server, as a subprocess, serving a model with a chat template (the packaged MiniLM plus a template,
adopted with ``verify --adopt --trust-files``): a client's own template is refused as vLLM refuses it, and with
``--trust-request-chat-template`` a hostile one is stopped at the render bound while /health keeps answering.
Expectations: vLLM's rule and error body (vllm_examples); the health bound here is generous (1 s), the 100 ms
figure is measured in benchmarks/bench_local_server.py."""

from __future__ import annotations

import json
import shutil
import threading
import time

import httpx
import pytest

from tke_playbook.cli.commands import main as cli_main
from tke_playbook.hostenv import offline_model_dir
from tke_playbook.localserver import start_server, surface

from . import vllm_examples as vllm

TEMPLATE = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
CHAT = {"messages": [{"role": "user", "content": "What is TKE?"}]}
NESTED = ("{% for a in range(100000) %}{% for b in range(100000) %}{% for c in range(100000) %}{% endfor %}"
          "{% endfor %}{% endfor %}x")


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pvc") / "minilm-chat"
    shutil.copytree(offline_model_dir(), folder)
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["chat_template"] = TEMPLATE
    config_path.write_text(json.dumps(config), encoding="utf-8")
    assert cli_main(["verify", "--adopt", "--trust-files", str(folder)]) == 0
    return folder


def probe_health(url: str, stop: threading.Event, out: list) -> None:
    with httpx.Client(timeout=1.0) as client:
        while not stop.is_set():
            start = time.perf_counter()
            try:
                out.append((client.get(url + "/health").status_code, time.perf_counter() - start))
            except httpx.HTTPError as exc:
                out.append((type(exc).__name__, time.perf_counter() - start))
            time.sleep(0.05)


def hostile_while_probing(server, body: dict):
    stop, probes = threading.Event(), []
    prober = threading.Thread(target=probe_health, args=(server.url, stop, probes))
    prober.start()
    try:
        response = httpx.post(server.url + "/v1/embeddings", json=body, timeout=60)
    finally:
        stop.set()
        prober.join()
    return response, probes


def test_a_template_in_chat_template_kwargs_is_refused_without_trust(chat_model, tmp_path):
    with start_server(chat_model, timeout=240, log_path=tmp_path / "server.log") as server:
        response, probes = hostile_while_probing(server, {**CHAT, "chat_template_kwargs": {"chat_template": NESTED}})
        assert response.status_code == 400 and response.json() == vllm.UNTRUSTED_CHAT_TEMPLATE
        assert all(code == 200 for code, _ in probes)
        assert httpx.post(server.url + "/v1/embeddings", json=CHAT, timeout=60).status_code == 200


def test_a_trusted_hostile_template_is_stopped_while_health_answers(chat_model, tmp_path, monkeypatch):
    monkeypatch.setenv(surface.CHAT_TEMPLATE_TIMEOUT_ENV, "3")
    with start_server(chat_model, timeout=240, log_path=tmp_path / "server.log",
                      trust_request_chat_template=True) as server:
        response, probes = hostile_while_probing(server, {**CHAT, "chat_template": NESTED})
        assert response.status_code == 400 and vllm.same_shape(response.json(), vllm.UNTRUSTED_CHAT_TEMPLATE)
        assert "timed out after 3s" in response.json()["error"]["message"]
        assert len(probes) >= 10 and all(code == 200 and took < 1.0 for code, took in probes)
        assert httpx.post(server.url + "/v1/embeddings", json=CHAT, timeout=60).status_code == 200
        server.stop(timeout=10)
        assert server.returncode == 0  # SIGTERM is honoured (a frozen event loop needed SIGKILL)
