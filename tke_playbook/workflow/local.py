"""The local target: a folder under the state directory plays the PVC, worker processes download into it and
the local CPU server plays vLLM. Same calls as the cluster target; see :class:`~tke_playbook.workflow.base.Playbook`.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pandas as pd

from ..catalog import OFFLINE_MODEL, get_model
from ..errors import IncompleteModelError
from ..modelfolder import is_complete, require_complete
from ..target import Target, local_pvc_dir, offline_model_dir
from .base import Playbook, spec_to_dict
from .download_local import LocalDownloads
from .endpoint import ServiceEndpoint
from .local_checks import port_is_free, run_local_preflight

STOP_TIMEOUT_S = 10.0
_SERVERS: dict[str, Any] = {}  # state file -> LocalServer started by this kernel (kept alive here)


_PROGRESS_BAR = re.compile(r"^(?P<what>[^|]*?):\s*\d{1,3}%\|")  # tqdm: "Loading weights:  42%|####  | 43/103"


def without_progress_bars(lines: list[str]) -> list[str]:
    """Log lines with progress-bar updates folded: of consecutive updates of one bar only the last is kept, and
    blank lines are dropped (what a terminal would have shown in the end)."""
    kept: list[str] = []
    for raw in lines:
        line = raw.rsplit("\r", 1)[-1].rstrip()
        if not line:
            continue
        bar = _PROGRESS_BAR.match(line)
        if bar and kept:
            previous = _PROGRESS_BAR.match(kept[-1])
            if previous and previous.group("what") == bar.group("what"):
                kept[-1] = line
                continue
        kept.append(line)
    return kept


def _is_local_server(pid: int) -> bool:
    """True when process ``pid`` runs ``tke_playbook.localserver`` (so a reused pid is never signalled)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        try:
            command = subprocess.run(["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True,
                                     timeout=5).stdout
        except (OSError, subprocess.SubprocessError):
            return False
    return "tke_playbook.localserver" in command


def _healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


class LocalPlaybook(LocalDownloads, Playbook):
    """The tutorial's steps on this machine."""

    target = Target.LOCAL

    def describe(self) -> str:
        return (f"Target local: this machine plays the cluster - a folder under {self.root} plays the PVC and a CPU "
                "server plays vLLM, with the same API on port 60000.")

    # --- 00 prerequisites ---------------------------------------------------------------------------------

    def preflight(self, model: str = ""):
        """Python, torch, the model package, disk, the serving port and curl, as a report (``.to_frame()``)."""
        return run_local_preflight(self.root)

    def node_types(self) -> list:
        """The catalog's TKE node types (the local target has no nodes to list)."""
        from ..hardware import NODE_TYPES

        return list(NODE_TYPES)

    def nodes_table(self) -> pd.DataFrame:
        from ..hardware import node_type_rows

        return pd.DataFrame(node_type_rows())

    # --- 01 storage ---------------------------------------------------------------------------------------

    def pvcs(self) -> list[str]:
        """The folders that play PVCs, by name."""
        folder = self.root / "pvcs"
        return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []

    def pvc_path(self, pvc_name: str) -> Path:
        return local_pvc_dir(pvc_name)

    def create_storage(self, storage_spec) -> pd.DataFrame:
        """Create the folder that plays PVC ``storage_spec.pvc_name`` (idempotent) and record it."""
        path = local_pvc_dir(storage_spec.pvc_name)
        self.state.put("storage", spec_to_dict(storage_spec))
        free = shutil.disk_usage(path).free
        return pd.DataFrame([{"pvc": storage_spec.pvc_name, "status": "Bound", "path": str(path),
                              "free_GiB": round(free / 2**30, 1)}])

    # --- 03 deploy ----------------------------------------------------------------------------------------

    def model_folder(self, serving_spec) -> Path:
        """Where the model of ``serving_spec`` lies on the local PVC (``<pvc>/<model id>``)."""
        return local_pvc_dir(serving_spec.pvc_name) / serving_spec.pvc_path

    def deploy(self, serving_spec) -> ServiceEndpoint:
        """Check the model folder is complete, then start the local server on the spec's port (or a free one)."""
        from ..localserver import start_server

        folder = require_complete(self.model_folder(serving_spec))
        return self._start(serving_spec, folder, start_server)

    def _start(self, spec, folder: Path, start_server) -> ServiceEndpoint:
        self.stop_server()
        port = spec.service_port if port_is_free(spec.service_port) else 0
        server = start_server(folder, port=port, api_key=self.api_key(spec),
                              served_model_name=spec.served_model_name, require_marker=folder != offline_model_dir())
        _SERVERS[str(self.state.path)] = server
        self._record_serving(spec)
        self.state.put("server", {"url": server.url, "port": server.port, "pid": server.pid,
                                  "model_dir": str(folder), "log": str(server.log_path)})
        note = "" if port else f"port {spec.service_port} was busy, so the server took port {server.port}"
        return ServiceEndpoint(server.url, spec.served_model_name, "local-process", self.api_key(spec), note)

    def deployment_logs(self, lines: int = 20) -> str:
        """The last lines of the local server's log (what `kubectl logs` shows on the cluster)."""
        record = self.state.get("server") or {}
        try:
            text = Path(record["log"]).read_text(encoding="utf-8", errors="replace")
        except (KeyError, OSError):
            return ""
        return "\n".join(without_progress_bars(text.splitlines())[-lines:])

    def endpoint(self) -> ServiceEndpoint:
        """The running server; restarted from the recorded spec when it is gone (another kernel started it, or
        the kernel restarted); the packaged offline model when nothing was deployed yet."""
        spec = self.recorded_serving_spec()
        record = self.state.get("server") or {}
        if spec is not None and record.get("url") and _healthy(record["url"]):
            return ServiceEndpoint(record["url"], spec.served_model_name, "local-process", self.api_key(spec))
        from ..localserver import start_server

        if spec is None:
            spec = self.serving_defaults(OFFLINE_MODEL)
        folder = self.model_folder(spec)
        if not is_complete(folder):
            if get_model(spec.model).hf_id != OFFLINE_MODEL:
                raise IncompleteModelError(f"Nothing serves {spec.model} and its folder {folder} is not complete: "
                                           "run notebooks 02_download_model and 03_deploy_vllm first.", obj=folder)
            folder = offline_model_dir()  # the packaged copy: trusted without a marker
        endpoint = self._start(spec, folder, start_server)
        endpoint.note = "restarted the local server from the recorded serving spec"
        return endpoint

    def stop_server(self) -> bool:
        """Stop the server this kernel started; else the recorded one another kernel started (JupyterLab keeps
        the kernels of earlier notebooks running), when it still answers and its process is the local server."""
        server = _SERVERS.pop(str(self.state.path), None)
        if server is not None:
            server.stop()
            return True
        record = self.state.get("server") or {}
        pid, url = record.get("pid"), record.get("url")
        if not isinstance(pid, int) or not url or not _healthy(url) or not _is_local_server(pid):
            return False
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            return False
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while _healthy(url, timeout=0.5) and time.monotonic() < deadline:
            time.sleep(0.2)
        return True

    # --- 05 compare ----------------------------------------------------------------------------------------

    def comparison_pair(self, model_a: str = "", model_b: str = ""):
        """The offline pair: the served model (all-MiniLM-L6-v2) as A, the lexical TF-IDF baseline as B."""
        from ..errors import InvalidSpecError
        from ..lexical import LexicalEmbedder

        endpoint = self.endpoint()
        if model_a and get_model(model_a).hf_id != endpoint.model:
            raise InvalidSpecError(f"The local target serves one model ({endpoint.model}), not {model_a}: leave "
                                   "MODEL_A empty, or run this notebook on a cluster.", field="model_a", value=model_a)
        if model_b and model_b != "lexical":
            raise InvalidSpecError(f"Locally model B is the lexical baseline, not {model_b}: leave MODEL_B empty "
                                   "(or 'lexical'), or run this notebook on a cluster.", field="model_b", value=model_b)
        return endpoint.client(), LexicalEmbedder()

    # --- 99 cleanup ---------------------------------------------------------------------------------------

    def teardown(self, keep_pvc: bool = True) -> pd.DataFrame:
        """Stop the server and forget the deployment; delete the PVC folders too unless ``keep_pvc``."""
        removed = []
        if self.stop_server():
            removed.append({"object": "local server", "name": (self.state.get("server") or {}).get("url", "")})
        spec = self.recorded_serving_spec()
        if spec is not None and spec.api_key_required:
            self.secrets.delete(spec.api_key_secret)
            removed.append({"object": "API key", "name": spec.api_key_secret})
        self.stop_downloads()
        self.state.drop("server", "serving", "download", "deployments")
        if not keep_pvc:
            for name in self.pvcs():
                shutil.rmtree(self.root / "pvcs" / name, ignore_errors=True)
                removed.append({"object": "PVC folder", "name": name})
            self.state.drop("storage")
        return pd.DataFrame(removed, columns=["object", "name"])
