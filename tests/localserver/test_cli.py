"""`tke-playbook serve`: arguments, one-line errors, and a real foreground run stopped with SIGTERM."""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import sys
import time

import httpx
import pytest

from tke_playbook.cli import main
from tke_playbook.localserver import cli as serve_cli


def test_serve_is_registered_with_vllm_like_options():
    parser = argparse.ArgumentParser()
    serve_cli.register(parser.add_subparsers())
    args = parser.parse_args(["serve", "--model", "/m", "--port", "60000", "--api-key", "k",
                              "--served-model-name", "bge"])
    assert (args.model, args.port, args.api_key, args.served_model_name) == ("/m", 60000, "k", "bge")
    assert args.func is serve_cli.run
    assert parser.parse_args(["serve"]).model is None  # the offline model by default


def test_serving_an_incomplete_folder_prints_one_line_and_exits_2(tmp_path, capsys):
    assert main(["serve", "--model", str(tmp_path), "--port", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: Model folder") and "no completion marker" in err and "\n" not in err


def test_serve_runs_in_the_foreground_until_sigterm():
    command = [sys.executable, "-c", "import sys; from tke_playbook.cli import main; sys.exit(main(sys.argv[1:]))",
               "serve", "--port", "0", "--api-key", "secret", "--served-model-name", "minilm"]
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
                        headers={"Authorization": "Bearer secret"})
        assert ok.status_code == 200 and ok.json()["model"] == "minilm"
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        assert "Server stopped." in process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
