"""`tke-playbook serve`: arguments, one-line errors, and a real foreground run stopped with SIGTERM."""

from __future__ import annotations

import argparse
import re
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from tke_playbook.cli.commands import main
from tke_playbook.localserver import cli as serve_cli


def test_serve_is_registered_with_vllm_like_options():
    parser = argparse.ArgumentParser()
    serve_cli.register(parser.add_subparsers())
    args = parser.parse_args(["serve", "--model", "/m", "--port", "60000", "--api-key-file", "/k",
                              "--served-model-name", "bge"])
    assert (args.model, args.port, args.api_key_file, args.served_model_name) == ("/m", 60000, "/k", "bge")
    assert args.func is serve_cli.run
    assert parser.parse_args(["serve"]).model is None  # the offline model by default


@pytest.fixture()
def taken_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield sock.getsockname()[1]


@pytest.mark.parametrize("extra, phrase", [
    pytest.param(["--model", "{tmp}"], "no completion marker", id="incomplete-folder"),
    pytest.param(["--model", "{tmp}/nowhere"], "does not exist", id="missing-folder"),
    pytest.param(["--port", "{taken}"], "cannot listen on 127.0.0.1:", id="port-in-use"),
    pytest.param(["--port", "70000"], "--port 70000 is outside 1–65535", id="port-too-large"),
    pytest.param(["--port", "-5"], "--port -5 is outside 1–65535", id="port-negative"),
    pytest.param(["--port", "0", "--max-batch", "0"], "--max-batch 0 is too small", id="max-batch-zero"),
    pytest.param(["--port", "0", "--workers", "0"], "--workers 0 is too small", id="workers-zero"),
    pytest.param(["--port", "0", "--max-wait-ms", "-1"], "--max-wait-ms -1.0 is too small", id="negative-wait"),
    pytest.param(["--port", "0", "--max-wait-ms", "nan"], "--max-wait-ms nan is not a number", id="nan-wait"),
    pytest.param(["--port", "0", "--max-wait-ms", "inf"], "--max-wait-ms inf is too large", id="inf-wait"),
    pytest.param(["--port", "0", "--workers", str(10 ** 30)], "--workers 1000000000000000000000000000000 is too "
                 "large: give at most 256", id="absurd-workers"),
    pytest.param(["--port", "0", "--max-batch", "99999999"], "--max-batch 99999999 is too large", id="huge-batch"),
    pytest.param(["--port", "0", "--max-inputs-per-request", "0"], "--max-inputs-per-request 0 is too small",
                 id="zero-inputs"),
    pytest.param(["--port", "0", "--max-body-mb", "nan"], "--max-body-mb (in bytes) nan is not a number",
                 id="nan-body"),
    pytest.param(["--port", "0", "--host", ""], "--host '' is not an IP address", id="empty-host"),
    pytest.param(["--port", "0", "--host", "my laptop"], "--host 'my laptop' is not an IP address", id="bad-host"),
    pytest.param(["--port", "0", "--api-key", "K"], "--api-key puts the key in the process list", id="api-key-argv"),
    pytest.param(["--port", "0", "--api-key-file", "{tmp}/missing"], "--api-key-file {tmp}/missing: cannot read",
                 id="missing-key-file"),
    pytest.param(["--port", "0", "--api-key-file", "{tmp}/empty"], "--api-key-file {tmp}/empty is empty",
                 id="empty-key-file"),
])
def test_bad_input_prints_one_line_and_exits_2(tmp_path, taken_port, capsys, extra, phrase):
    (tmp_path / "empty").write_text("\n", encoding="utf-8")
    (tmp_path / "empty").chmod(0o600)
    argv = ["serve"] + [a.format(tmp=tmp_path, taken=taken_port) for a in extra]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("tke-playbook serve: error: ")
    assert phrase.format(tmp=tmp_path) in err
    assert "\nK" not in err and " K " not in err  # a refused key is not echoed


@pytest.mark.parametrize("argv, phrase", [
    pytest.param(["--port", "abc"], "invalid int value: 'abc'", id="port-not-a-number"),
    pytest.param(["--port", "99999"], "--port 99999 is outside 1–65535", id="port-too-large"),
])
def test_the_module_entry_point_also_answers_in_one_line(argv, phrase, capsys):
    try:
        status = serve_cli.main(argv)
    except SystemExit as exc:  # argparse refuses the value itself
        status = exc.code
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1
    assert err.startswith("python -m tke_playbook.localserver: error: ") and phrase in err


def test_the_key_comes_from_a_file_the_prompt_or_the_environment(tmp_path):
    parser = serve_cli.build_parser()
    key_file = tmp_path / "key"
    key_file.write_text("from-file-0123456789\n", encoding="utf-8")
    key_file.chmod(0o600)
    env = {serve_cli.API_KEY_ENV: "from-env-0123456789"}
    assert serve_cli.resolve_api_key(parser.parse_args(["--api-key-file", str(key_file)]), env) == \
        "from-file-0123456789"
    assert serve_cli.resolve_api_key(parser.parse_args(["--api-key-prompt"]), env,
                                     ask=lambda prompt: " typed-0123456789 \n") == "typed-0123456789"
    assert serve_cli.resolve_api_key(parser.parse_args([]), env) == "from-env-0123456789"
    assert serve_cli.resolve_api_key(parser.parse_args([]), {}) is None
    with pytest.raises(SystemExit):  # one source at a time
        parser.parse_args(["--api-key-file", str(key_file), "--api-key-prompt"])


def test_serve_runs_in_the_foreground_until_sigterm(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("secret-0123456789\n", encoding="utf-8")
    key_file.chmod(0o600)
    command = [sys.executable, "-c", "import sys; from tke_playbook.cli.commands import main; sys.exit(main(sys.argv[1:]))",
               "serve", "--port", "0", "--api-key-file", str(key_file), "--served-model-name", "minilm"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = None
        deadline = time.monotonic() + 180
        while url is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line and process.poll() is not None:
                break
            match = re.search(r"Serving minilm .* at (http://127\.0\.0\.1:\d+)/v1/embeddings - API key required", line)
            url = match.group(1) if match else None
        assert url, "the server never said where it listens"
        assert httpx.post(url + "/v1/embeddings", json={"input": "x"}, timeout=30).status_code == 401
        ok = httpx.post(url + "/v1/embeddings", json={"input": "x"}, timeout=30,
                        headers={"Authorization": "Bearer secret-0123456789"})
        with open(f"/proc/{process.pid}/cmdline", "rb") as cmdline:  # what `ps` shows
            assert b"secret" not in cmdline.read()
        assert ok.status_code == 200 and ok.json()["model"] == "minilm"
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        assert "Server stopped." in process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_the_server_raises_its_open_file_limit_for_many_connections():
    resource = pytest.importorskip("resource")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1024:
        pytest.skip("the hard limit leaves no room")
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))  # a macOS laptop's default
        assert serve_cli.raise_open_file_limit(1024) == 1024
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (1024, hard)
        assert serve_cli.raise_open_file_limit(512) == 1024  # never lowered
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
