"""Starting and stopping the server process: refusals before start, faults with the log's tail, clean stops."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import time

import pytest

from tke_playbook.errors import IncompleteModelError, InvalidSpecError, ServerError
from tke_playbook.hostenv import offline_model_dir
from tke_playbook.localserver import start_server
from tke_playbook.localserver.encoder import default_model_name, resolve_model_dir
from tke_playbook.podworker.modelfolder import write_completion


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("TKE_PLAYBOOK_HOME", str(tmp_path / "home"))
    return tmp_path


def broken_folder(root):
    folder = root / "BAAI" / "broken-model"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{ this is not json", encoding="utf-8")
    (folder / "modules.json").write_text("[]", encoding="utf-8")
    write_completion(folder, {"model": "BAAI/broken-model", "files": []})
    return folder


def test_a_folder_without_the_marker_is_refused_before_starting(home):
    folder = home / "half-downloaded"
    folder.mkdir()
    (folder / "config.json").write_text("{}", encoding="utf-8")
    with pytest.raises(IncompleteModelError, match="no completion marker"):
        start_server(folder)
    assert not (home / "home" / "logs").exists()  # nothing was started


def test_a_missing_folder_is_refused(home):
    with pytest.raises(IncompleteModelError, match="does not exist"):
        start_server(home / "nowhere")
    with pytest.raises(ServerError, match="does not exist"):
        resolve_model_dir(home / "nowhere", require_marker=False)


def test_the_offline_model_is_trusted_without_a_marker():
    assert resolve_model_dir(None) == offline_model_dir()
    assert resolve_model_dir(offline_model_dir()) == offline_model_dir()
    assert default_model_name(offline_model_dir()) == "sentence-transformers/all-MiniLM-L6-v2"


def test_the_served_name_comes_from_the_manifest_else_the_folder(home):
    named = home / "a" / "e5"
    named.mkdir(parents=True)
    write_completion(named, {"model": "intfloat/e5-mistral-7b-instruct"})
    plain = home / "plain-folder"
    plain.mkdir()
    assert default_model_name(named) == "intfloat/e5-mistral-7b-instruct"
    assert default_model_name(plain) == "plain-folder"


@pytest.mark.parametrize("kwargs, phrase", [
    pytest.param({"port": 70000}, "port 70000 is outside 1–65535", id="port-too-large"),
    pytest.param({"port": -1}, "port -1 is outside 1–65535", id="port-negative"),
    pytest.param({"max_batch": 0}, "max_batch 0 is too small", id="max-batch-zero"),
    pytest.param({"max_queue": 0}, "max_queue 0 is too small", id="max-queue-zero"),
    pytest.param({"host": ""}, "host '' is not an IP address", id="empty-host"),
    pytest.param({"max_wait_ms": float("nan")}, "max_wait_ms nan is not a number", id="nan-wait"),
    pytest.param({"workers": 10 ** 30}, "is too large: give at most 256", id="absurd-workers"),
    pytest.param({"max_tokens_per_request": 0}, "max_tokens 0 is too small", id="zero-tokens"),
])
def test_bad_settings_are_refused_before_starting(home, kwargs, phrase):
    with pytest.raises(InvalidSpecError, match=phrase):
        start_server(**kwargs)
    assert not (home / "home" / "logs").exists()


def server_processes(marker: str) -> list[int]:
    """Pids of live processes whose command line mentions ``marker`` (a unique model folder)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                    if marker.encode() in cmdline.read() and not exited(int(entry)):
                        pids.append(int(entry))
            except OSError:
                pass
    return pids


def hanging_folder(root):
    """A model folder whose modules.json is a FIFO nobody writes: loading it blocks for ever."""
    folder = root / "hangs"
    folder.mkdir()
    (folder / "config.json").write_text("{}", encoding="utf-8")
    os.mkfifo(folder / "modules.json")
    write_completion(folder, {"model": "hangs", "files": []})
    return folder


def test_a_server_that_never_becomes_healthy_is_stopped_and_reported(home, tmp_path):
    folder = hanging_folder(tmp_path)
    # 10 s: on a loaded 2-core machine the server's imports alone took over 4 s, so its log had no line to show yet
    with pytest.raises(ServerError, match=r"did not become healthy within 10 s and was stopped") as caught:
        start_server(folder, timeout=10)
    assert f"Loading {folder} ..." in str(caught.value)  # the log's tail
    assert server_processes(f"--model\0{folder}\0") == []


def test_a_server_killed_while_starting_is_reported_with_the_signal(home, tmp_path):
    folder = hanging_folder(tmp_path)
    killed = []

    def killer():
        deadline = time.monotonic() + 60
        while not killed and time.monotonic() < deadline:
            for pid in server_processes(f"--model\0{folder}\0"):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            time.sleep(0.05)

    import threading

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    with pytest.raises(ServerError, match="The local server was killed by SIGKILL before it became healthy"):
        start_server(folder, timeout=60)
    thread.join(5)
    assert killed


def test_a_model_that_cannot_load_raises_server_error_with_the_log_tail(home):
    with pytest.raises(ServerError) as caught:
        start_server(broken_folder(home), timeout=120)
    message = str(caught.value)
    assert "exited with code 2 before it became healthy" in message
    assert "Could not load the sentence-transformers model" in message  # from the server's log


def test_a_taken_port_raises_server_error(home):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(ServerError, match="cannot listen"):
            start_server(port=port, timeout=120)


def test_start_copy_serve_and_stop(home, tmp_path):
    # a downloaded copy of the model, marked complete, served under its manifest name
    folder = tmp_path / "pvc" / "sentence-transformers" / "all-MiniLM-L6-v2"
    shutil.copytree(offline_model_dir(), folder)
    write_completion(folder, {"model": "sentence-transformers/all-MiniLM-L6-v2", "files": []})
    server = start_server(folder, served_model_name="minilm", timeout=240)
    with server:
        assert server.check() is server
        assert server.url == f"http://127.0.0.1:{server.port}" and server.base_url == server.url + "/v1"
        assert server.healthy()
        import httpx

        body = httpx.post(server.url + "/v1/embeddings", json={"model": "minilm", "input": "hi"}, timeout=60).json()
        assert body["model"] == "minilm" and len(body["data"][0]["embedding"]) == 384
        assert "Serving minilm" in server.logs()
        assert json.loads(httpx.get(server.url + "/v1/models", timeout=30).text)["data"][0]["root"] == str(folder)
        pid = server.pid
    assert not server.alive() and server.returncode == 0  # SIGTERM ends it cleanly
    with pytest.raises(ServerError, match="was stopped"):
        server.check()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    server.stop()  # stopping twice is harmless


def test_a_killed_server_is_seen_as_not_healthy(home):
    server = start_server(timeout=240)
    try:
        os.kill(server.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while server.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not server.alive() and not server.healthy()
        with pytest.raises(ServerError, match="was killed by SIGKILL") as caught:
            server.check()
        assert "Serving sentence-transformers/all-MiniLM-L6-v2" in str(caught.value)  # the log's tail
    finally:
        server.stop()


def exited(pid: int) -> bool:
    """True once ``pid`` is gone or a zombie (its new parent may not reap it at once)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def test_the_server_exits_when_the_process_that_started_it_is_killed(home):
    """A notebook kernel killed with -9 must not leave a server holding its port."""
    script = ("import sys; from tke_playbook.localserver import start_server; s = start_server(timeout=240); "
              "print(s.pid, flush=True); sys.stdin.read()")
    import subprocess
    import sys

    parent = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        server_pid = int(parent.stdout.readline())
        os.kill(server_pid, 0)  # it runs
        parent.kill()
        parent.wait(10)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not exited(server_pid):
            time.sleep(0.1)
        if not exited(server_pid):
            os.kill(server_pid, signal.SIGKILL)
            pytest.fail("the server outlived the process that started it")
    finally:
        if parent.poll() is None:
            parent.kill()
