"""The local target: a folder under the state directory plays the PVC, worker processes download into it and
the local CPU server plays vLLM. :class:`LocalBackend` implements the
:class:`~tke_playbook.playbook.backend.Backend` protocol the facade calls; it never loads the Kubernetes client.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd

from ..download.local import hub_offline
from ..embed.lexical import LexicalEmbedder
from ..errors import InvalidSpecError, NotDeployedError, ServerError
from ..hostenv import offline_model_dir
from ..localserver import start_server
from ..podworker.modelfolder import is_complete, require_complete
from ..specs.catalog import OFFLINE_MODEL, get_model, list_models
from ..specs.download import DownloadSpec, Source
from ..specs.hardware import NODE_TYPES, node_type_rows
from ..specs.target import Target
from .base import Records, spec_to_dict
from .display import waiting
from .download_local import LocalDownloads
from .endpoint import ServiceEndpoint
from .folders import PvcFolders
from .local_checks import DEFAULT_PORT, port_is_free, run_local_preflight
from .runs import ServerRecord, stop_process

PORT_RELEASE_S = 5.0  # how long a redeploy waits for the stopped server's port
HEALTH_TIMEOUT_S = 5.0  # a recorded server that does not answer /health within this is replaced


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


def _healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


class LocalBackend:
    """The tutorial's steps on this machine. Given the playbook's :class:`~tke_playbook.playbook.base.Records`;
    the folders that play PVCs live under their root, and the downloads are a :class:`LocalDownloads`."""

    target = Target.LOCAL
    default_model = OFFLINE_MODEL
    default_reranker = ""  # the server 03 starts answers /rerank itself, with its bi-encoder
    default_source = Source.HUGGINGFACE.value

    def __init__(self, records: Records):
        self.records = records
        self.folders = PvcFolders(records.root)
        self.downloads = LocalDownloads(records, self.folders)

    @property
    def runs(self):
        return self.records.runs

    @property
    def state(self):
        return self.records.state

    def describe(self) -> str:
        return (f"Target local: this machine plays the cluster - a folder under {self.records.root} plays the PVC "
                f"and a CPU server plays vLLM, with the same API on port {DEFAULT_PORT}.")

    # --- 00 prerequisites ---------------------------------------------------------------------------------

    def preflight(self, model: str = ""):
        """Python, torch, the model package, disk, the serving port and curl, as a report (``.to_frame()``)."""
        ours = next((f"server {r.name} (pid {r.pid})" for r in self.runs.servers() if r.port == DEFAULT_PORT), "")
        return run_local_preflight(self.records.root, DEFAULT_PORT, ours)

    def node_types(self) -> list:
        """The catalog's TKE node types (the local target has no nodes to list)."""
        return list(NODE_TYPES)

    def nodes_table(self) -> pd.DataFrame:
        return pd.DataFrame(node_type_rows())

    def _offline(self) -> bool:
        return hub_offline(DownloadSpec(model=OFFLINE_MODEL, source=self.default_source), timeout_s=2.0)

    def source_note(self) -> str:
        """Offline, 'huggingface' is the packaged copy of the offline model behind a local mirror of its API."""
        return "offline: the packaged copy, through a local mirror of its API" if self._offline() else ""

    def unavailable_models(self, step: str = "download") -> dict[str, str]:
        """Offline, only the packaged model can be downloaded: every other model "needs a hub". To serve (03), a
        model must also be complete on a local PVC (02 downloaded it)."""
        offline = self._offline()
        hub = (f"needs a hub: this machine cannot reach one and only {OFFLINE_MODEL} ships with the toolkit; choose "
               f"it, or connect to the internet (or a mirror) first")
        missing = {m.hf_id: hub for m in list_models() if offline and m.hf_id != OFFLINE_MODEL}
        if step == "serve":
            for info in list_models():
                if info.hf_id not in missing and not any(is_complete(self.folders.path(pvc) / info.hf_id)
                                                         for pvc in self.folders.names()):
                    missing[info.hf_id] = ("is not downloaded yet: download it with 02_download_model first (the "
                                           "local server serves only a complete model folder)")
        return missing

    # --- 01 storage ---------------------------------------------------------------------------------------

    def pvcs(self) -> list[str]:
        """The folders that play PVCs, by name."""
        return self.folders.names()

    def create_storage(self, storage_spec) -> pd.DataFrame:
        """Create the folder that plays PVC ``storage_spec.pvc_name`` (idempotent) and record it."""
        path = self.folders.path(storage_spec.pvc_name)
        path.mkdir(parents=True, exist_ok=True)
        self.state.put("storage", spec_to_dict(storage_spec))
        free = shutil.disk_usage(path).free
        return pd.DataFrame([{"pvc": storage_spec.pvc_name, "status": "Bound", "path": str(path),
                              "free_GiB": round(free / 2**30, 1)}])

    # --- 02 download (see LocalDownloads) -----------------------------------------------------------------

    def plan_download(self, spec, mirror=None):
        return self.downloads.plan_download(spec, mirror)

    def start_download(self, spec, plan=None) -> pd.DataFrame:
        return self.downloads.start_download(spec, plan)

    def download_progress(self) -> pd.DataFrame:
        return self.downloads.download_progress()

    def wait_for_download(self, timeout: float = 1800.0, every: float = 1.0) -> pd.DataFrame:
        return self.downloads.wait_for_download(timeout, every)

    def verify_download(self) -> pd.DataFrame:
        return self.downloads.verify_download()

    def stop_downloads(self) -> list:
        return self.downloads.stop_downloads()

    # --- 03 deploy ----------------------------------------------------------------------------------------

    def model_folder(self, serving_spec) -> Path:
        """Where the model of ``serving_spec`` lies on the local PVC (``<pvc>/<model id>``); creates nothing."""
        return self.folders.path(serving_spec.pvc_name) / serving_spec.pvc_path

    def deploy(self, serving_spec) -> ServiceEndpoint:
        """Check the PVC and the model folder, stop the deployment's running server (whichever kernel started
        it) and start the local server on the spec's port (60000)."""
        self.folders.require(serving_spec.pvc_name)
        folder = self.model_folder(serving_spec)
        if not is_complete(folder):
            require_complete(folder)  # says what is missing
        return self._start(serving_spec, folder)

    def _start(self, spec, folder: Path) -> ServiceEndpoint:
        self.stop_servers(lambda r: r.name == spec.name or r.port == spec.service_port)
        deadline = time.monotonic() + PORT_RELEASE_S
        while not port_is_free(spec.service_port) and time.monotonic() < deadline:
            time.sleep(0.1)
        port = spec.service_port if port_is_free(spec.service_port) else 0
        key = self.records.api_key(spec)
        with waiting(f"Starting the local server for {spec.model}"):
            server = start_server(folder, port=port, api_key=key, served_model_name=spec.served_model_name,
                                  require_marker=folder != offline_model_dir(), outlive_caller=True)
        key_file = self.records.secrets.path(spec.api_key_secret) if spec.api_key_required else None
        self.runs.add_server(ServerRecord(
            name=spec.name, pid=server.pid, port=server.port, url=server.url, model=spec.model,
            served_model_name=spec.served_model_name, spec=spec_to_dict(spec), model_dir=str(folder),
            log=str(server.log_path), key_file=str(key_file) if key_file else None, kernel_pid=os.getpid(),
            started_at=time.time()))
        self.records.record_serving(spec)
        self.state.put("server_log", str(server.log_path))
        note = "" if port else (
            f"port {spec.service_port} is held by another program (not a server of this playbook), so the server "
            f"took port {server.port}: free port {spec.service_port} and deploy again to get it")
        return ServiceEndpoint(server.url, spec.served_model_name, "local-process", key, note)

    def deploy_beside(self, serving_spec) -> ServiceEndpoint:
        """The reranker beside the embedder: locally the server 03 started, which answers /rerank the way vLLM does
        for an embedding model (the cosine of the pooled vectors). Starts nothing; NotDeployedError before 03's
        deploy, InvalidSpecError for any other server (the local target serves one model at a time)."""
        deployed = self.records.require_deployed()
        if serving_spec.name != deployed.name:
            raise InvalidSpecError(f"The local target serves one model at a time ({deployed.model}), and its server "
                                   f"answers /rerank itself: leave RERANKER empty, or run on a cluster to put "
                                   f"{serving_spec.model} beside it", field="model", value=serving_spec.model)
        found = self.endpoint()
        return dataclasses.replace(found, note=f"{deployed.model}'s server answers /rerank as vLLM does for an "
                                               f"embedding model: the cosine of the pooled vectors (a bi-encoder)")

    def deployment_logs(self, lines: int = 20) -> str:
        """The last lines of the local server's log (what `kubectl logs` shows on the cluster)."""
        spec = self.records.require_deployed()
        record = self.runs.server(spec.name)
        path = record.log if record is not None else self.state.get("server_log")
        try:
            text = Path(path).read_text(encoding="utf-8", errors="replace")
        except (TypeError, OSError):
            return ""
        return "\n".join(without_progress_bars(text.splitlines())[-lines:])

    def _deployed(self, model: str):
        spec = self.records.require_deployed()
        if model and get_model(model).hf_id != spec.model:
            raise InvalidSpecError(f"The local target serves one model at a time ({spec.model}), not {model}: leave "
                                   f"the model empty, or deploy {model} with 03_deploy_vllm (it replaces "
                                   f"{spec.model}), or run on a cluster", field="model", value=model)
        return spec

    def endpoint(self, model: str = "") -> ServiceEndpoint:
        """The server of the deployment 03 made. Nothing is started here: the server outlives the kernel that
        started it (99 stops it), so when it is gone - stopped, crashed, or the machine restarted - the one line
        says to run 03 again. NotDeployedError when nothing is deployed (never, or cleaned up by 99);
        InvalidSpecError when ``model`` is not the one served."""
        spec = self._deployed(model)
        record = self.runs.server(spec.name)
        if record is None:
            raise NotDeployedError(f"03 deployed {spec.model}, but its local server is no longer running (stopped, "
                                   "crashed, or this machine restarted), and nothing is started behind your back: "
                                   "run 03_deploy_vllm again", obj=spec.name)
        if not _healthy(record.url, timeout=HEALTH_TIMEOUT_S):
            raise ServerError(f"03's local server for {spec.model} (pid {record.pid}, {record.url}) runs but does "
                              f"not answer /health within {HEALTH_TIMEOUT_S:g} s (still loading, or stuck): wait "
                              "and run this cell again, or run 03_deploy_vllm again to replace it", obj=record.url)
        return ServiceEndpoint(record.url, record.served_model_name, "local-process", self.records.api_key(spec))

    def running(self) -> pd.DataFrame:
        """What runs now, from the record every kernel shares: servers and downloads."""
        rows = [{"kind": "local server", "name": r.name, "model": r.model, "where": r.url, "pid": r.pid,
                 "status": "running" if _healthy(r.url) else "starting or busy"} for r in self.runs.servers()]
        rows += self.records.download_rows()
        return pd.DataFrame(rows, columns=["kind", "name", "model", "where", "pid", "status"])

    def stop_servers(self, which=None) -> list[ServerRecord]:
        """Stop every recorded running server (``which(record)`` picks some), whichever kernel started it."""
        stopped = []
        for record in self.runs.servers():
            if which is None or which(record):
                stop_process(record.pid)
                self.runs.remove_server(record.name)
                stopped.append(record)
        return stopped

    # --- 05 compare ----------------------------------------------------------------------------------------

    def comparison_pair(self, model_a: str = "", model_b: str = ""):
        """The offline pair: the served model (all-MiniLM-L6-v2) as A, the lexical TF-IDF baseline as B."""
        endpoint = self.endpoint()
        if model_a and get_model(model_a).hf_id != endpoint.model:
            raise InvalidSpecError(f"The local target serves one model ({endpoint.model}), not {model_a}: leave "
                                   "MODEL_A empty, or run this notebook on a cluster.", field="model_a", value=model_a)
        if model_b and model_b != "lexical":
            raise InvalidSpecError(f"Locally model B is the lexical baseline, not {model_b}: leave MODEL_B empty "
                                   "(or 'lexical'), or run this notebook on a cluster.", field="model_b", value=model_b)
        return endpoint.client(), LexicalEmbedder()

    # --- 99 cleanup ---------------------------------------------------------------------------------------

    def _delete_keys(self) -> list[dict]:
        records = self.records
        specs = [records.recorded_serving_spec()] + [records.deployed_spec(m)
                                                     for m in (self.state.get("deployments") or {})]
        removed = []
        for secret in dict.fromkeys(s.api_key_secret for s in specs if s is not None and s.api_key_required):
            if records.secrets.read(secret) is not None:
                records.secrets.delete(secret)
                removed.append({"object": "API key", "name": secret})
        return removed

    def teardown(self, keep_pvc: bool = True) -> pd.DataFrame:
        """Stop every recorded server and download, delete the records and API keys; the PVC folders too unless
        ``keep_pvc``. Afterwards the other notebooks say that nothing is deployed."""
        removed = [{"object": "local server", "name": f"{r.name} ({r.url}, pid {r.pid})"} for r in self.stop_servers()]
        removed += [{"object": "download", "name": f"{r.model} ({r.current_status()})"} for r in self.stop_downloads()]
        removed += self._delete_keys()
        self.runs.clear()
        self.state.drop("server", "server_log", "serving", "download", "deployments")
        if not keep_pvc:
            for name in self.pvcs():
                shutil.rmtree(self.folders.path(name), ignore_errors=True)
                removed.append({"object": "PVC folder", "name": name})
            self.state.drop("storage")
        return pd.DataFrame(removed, columns=["object", "name"])
