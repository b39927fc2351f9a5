"""Start and stop the local embedding server as a subprocess - the local target's "deploy" and "teardown".

    with start_server() as server:            # the packaged all-MiniLM-L6-v2
        print(server.url)                     # http://127.0.0.1:PORT, vLLM's API under /v1

The server runs ``python -m tke_playbook.localserver`` with its output in a log file; :func:`start_server`
returns once ``/health`` answers, and raises :class:`~tke_playbook.errors.ServerError` with the log's tail if
the process dies or never becomes healthy. By default the server exits by itself when the process that started it
exits; ``outlive_caller=True`` (the playbook's deployments) leaves it running until it is stopped, like a
Deployment outlives the ``kubectl`` that applied it. Either way its exit status is collected at once, so a stopped
server never lingers as a ``<defunct>`` child of the caller.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ServerError
from ..hostenv import state_dir
from .cli import check_settings
from .encoder import default_model_name, resolve_model_dir
from .settings import check_host, url_host

API_KEY_ENV = "VLLM_API_KEY"
LOG_FOLDER = "logs"  # under the state folder: one log file per server started
_LIVE: "set[LocalServer]" = set()  # stopped at interpreter exit, even if the caller dropped its reference


def _exit_words(code: int) -> str:
    """``'exited with code 2'`` or ``'was killed by SIGKILL'`` (a negative code is the signal's number)."""
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


@dataclass(eq=False)
class LocalServer:
    """A running local embedding server: ``url``, ``port``, ``pid``; ``stop()``; usable as a context manager."""

    url: str
    port: int
    pid: int
    model_dir: Path
    served_model_name: str
    log_path: Path
    api_key: str | None = field(default=None, repr=False)
    returncode: int | None = None  # set once the process has ended (0 after a clean stop)
    _process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL (``<url>/v1``)."""
        return self.url + "/v1"

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def healthy(self, timeout: float = 2.0) -> bool:
        return self.alive() and _health(self.url, timeout)

    def logs(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the server's log."""
        return _tail(self.log_path, lines)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``timeout`` s). Stopping twice is harmless."""
        process, self._process = self._process, None
        _LIVE.discard(self)
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        self.returncode = process.returncode

    def check(self) -> "LocalServer":
        """Return the server if its process runs; else raise ServerError saying how it ended, with the log's tail."""
        process = self._process
        if process is None:
            raise ServerError(f"The local server at {self.url} was stopped: start a new one.", obj=self)
        code = process.poll()
        if code is not None:
            self.returncode = code
            raise ServerError(f"The local server at {self.url} {_exit_words(code)}. Last log lines "
                              f"({self.log_path}):\n{self.logs(30)}", obj=self)
        return self

    def __enter__(self) -> "LocalServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _health(url: str, timeout: float) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _options(values: dict) -> list[str]:
    """Command-line options for the values given: ``True`` a bare flag, a dict as JSON, None and False left out."""
    out: list[str] = []
    for flag, value in values.items():
        if value is None or value is False or value == {}:
            continue
        if value is True:
            out.append(flag)
        else:
            out += [flag, json.dumps(value) if isinstance(value, dict) else str(value)]
    return out


def log_dir(home: str | os.PathLike | None = None) -> Path:
    """Where the local servers' logs go: ``<home>/logs`` (``home``: the state folder, the caller's settings;
    None: :func:`~tke_playbook.hostenv.state_dir`)."""
    return state_dir(home=home) / LOG_FOLDER


def _log_path(home: str | os.PathLike | None) -> Path:
    folder = log_dir(home)
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"localserver-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}.log"


def start_server(model_dir: str | os.PathLike | None = None, port: int = 0, api_key: str | None = None,
                 served_model_name: str | None = None, require_marker: bool = True, host: str = "127.0.0.1", *,
                 timeout: float = 180.0, max_batch: int = 64, max_wait_ms: float = 2.0, max_queue: int = 4096,
                 workers: int | None = None, threads: int | None = None,
                 log_path: str | os.PathLike | None = None, max_inputs_per_request: int | None = None,
                 max_tokens_per_request: int | None = None, max_body_mb: float | None = None,
                 trust_request_chat_template: bool = False, max_batch_tokens: int | None = None,
                 vllm_version: str | None = None, hf_overrides: dict | None = None,
                 pooler_config: dict | None = None, outlive_caller: bool = False,
                 home: str | os.PathLike | None = None) -> LocalServer:
    """Serve ``model_dir`` (default: the offline all-MiniLM-L6-v2) in a subprocess; return once it is healthy.

    ``port=0`` picks a free port. A folder other than the packaged offline model must carry the download's
    completion marker (IncompleteModelError before anything starts) unless ``require_marker`` is False.
    The API key reaches the server through its environment, never its command line. ``max_inputs_per_request``,
    ``max_tokens_per_request`` and ``max_body_mb`` bound one request (default: the server's).
    ``trust_request_chat_template`` renders templates sent in requests (vLLM's flag; off by default);
    ``vllm_version``, ``hf_overrides`` and ``pooler_config`` are vLLM's ``--vllm-version``-like choice of release
    and its ``--hf-overrides`` / ``--pooler-config`` JSON (the keys the local server uses).
    ``outlive_caller``: keep serving after this process exits (stop it by its pid); otherwise it exits with it.
    The log goes to ``log_path``, else a new file in :func:`log_dir` of ``home`` (the state folder: the playbook
    passes its settings'; None: ``$TKE_PLAYBOOK_HOME``).
    """
    folder = resolve_model_dir(model_dir, require_marker=require_marker)
    check_settings(port=port, max_batch=max_batch, max_queue=max_queue, max_wait_ms=max_wait_ms, workers=workers,
                   threads=threads, host=host, max_inputs=max_inputs_per_request, max_tokens=max_tokens_per_request,
                   max_body_bytes=None if max_body_mb is None else max_body_mb * 2 ** 20,
                   max_batch_tokens=max_batch_tokens)
    host = check_host(host)
    name = served_model_name or default_model_name(folder)
    log = Path(log_path) if log_path else _log_path(home)
    port_file = Path(tempfile.mkdtemp(prefix="tke-localserver-")) / "port"
    command = [sys.executable, "-m", "tke_playbook.localserver", "--model", str(folder), "--host", host,
               "--port", str(port), "--served-model-name", name, "--allow-incomplete",
               "--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms), "--max-queue", str(max_queue),
               "--port-file", str(port_file)]
    if not outlive_caller:
        command += ["--parent-pid", str(os.getpid())]
    command += _options({"--workers": workers or None, "--threads": threads or None,
                         "--trust-request-chat-template": trust_request_chat_template,
                         "--vllm-version": vllm_version, "--hf-overrides": hf_overrides,
                         "--pooler-config": pooler_config, "--max-batch-tokens": max_batch_tokens,
                         "--max-inputs-per-request": max_inputs_per_request,
                         "--max-tokens-per-request": max_tokens_per_request, "--max-body-mb": max_body_mb})
    with open(log, "ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=_server_env(api_key), start_new_session=True)
    # collect its exit status the moment it ends (stopped by another process, or crashed): no <defunct> child
    threading.Thread(target=process.wait, name=f"reap-localserver-{process.pid}", daemon=True).start()

    def bound_to(port: int) -> LocalServer:
        return LocalServer(url=f"http://{url_host(host)}:{port}", port=port, pid=process.pid, model_dir=folder,
                           served_model_name=name, log_path=log, api_key=api_key, _process=process)

    server = _wait_healthy(process, port_file, log, timeout, bound_to)
    if not outlive_caller:
        _LIVE.add(server)
    return server


def _server_env(api_key: str | None) -> dict[str, str]:
    """The server's environment: offline hub, unbuffered log, the API key (in the environment, not on the command
    line where `ps` shows it)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false")
    env.pop(API_KEY_ENV, None)
    if api_key:
        env[API_KEY_ENV] = api_key
    return env


def _wait_healthy(process: subprocess.Popen, port_file: Path, log: Path, timeout: float,
                  bound_to: Callable[[int], LocalServer]) -> LocalServer:
    """Wait until the server has written its port to ``port_file`` and answers /health; a server that exits, or
    is not healthy within ``timeout`` s, raises ServerError with its log's tail. On any failure (an interrupt
    too) the process is killed."""
    server = None
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ServerError(f"The local server {_exit_words(process.returncode)} before it became "
                                  f"healthy. Last log lines ({log}):\n{_tail(log, 30)}", obj=log)
            if server is None and port_file.is_file():
                server = bound_to(int(port_file.read_text(encoding="utf-8")))
            if server is not None and _health(server.url, 2.0):
                return server
            time.sleep(0.1)
        raise ServerError(f"The local server did not become healthy within {timeout:g} s and was stopped. "
                          f"Last log lines ({log}):\n{_tail(log, 30)}", obj=log)
    except BaseException:
        if process.poll() is None:
            process.kill()
            process.wait(5)
        raise
    finally:
        shutil.rmtree(port_file.parent, ignore_errors=True)


@atexit.register
def _stop_all() -> None:
    for server in list(_LIVE):
        server.stop(timeout=5.0)
