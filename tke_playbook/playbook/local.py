"""The local target: a folder under the state folder plays the PVC, worker processes download into it and the
local CPU server plays vLLM. One class per step (:mod:`~tke_playbook.playbook.steps`): :class:`LocalSite`,
:class:`LocalStorage`, :class:`LocalServing`, :class:`LocalEvaluation` (and
:class:`~tke_playbook.playbook.download_local.LocalDownloads`). Nothing here loads the Kubernetes client.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..download.folders import PvcFolders
from ..errors import InvalidSpecError, NotDeployedError, ServerError, UnknownNameError
from ..hostenv import offline_model_dir, port_is_free
from ..localserver import start_server
from ..manifests.scaleout import Autoscaler, ScaleOutSpec, requirements
from ..podworker.modelfolder import is_complete, require_complete
from ..reporting import waiting
from ..specs.catalog import OFFLINE_MODEL, get_model, list_models
from ..specs.hardware import NODE_TYPES, NodeType, get_node_type, node_type_rows
from ..specs.serving import ServingSpec
from ..specs.storage import StorageSpec
from ..specs.target import Target
from .download_local import LocalDownloads
from .endpoint import ServiceEndpoint
from .local_checks import DEFAULT_PORT, run_local_preflight
from .runs import ServerRecord, stop_process
from .shared import ServingBase, SiteBase, StorageBase
from .steps import Row, Session

if TYPE_CHECKING:  # the evaluation's and tuning's libraries load when first used (open_target stays quick)
    from ..capacity.advice import LocalServerTuning
    from ..capacity.hardware import ServedOn
    from ..corpus.chunking import Chunker
    from ..corpus.loading import Corpus
    from ..scorecard.frontier import Frontier
    from ..scorecard.parity import ReferenceEncoder

PORT_RELEASE_S = 5.0  # how long a redeploy waits for the stopped server's port
HEALTH_TIMEOUT_S = 5.0  # a recorded server that does not answer /health within this is replaced
AUTOSCALER_COLUMNS = ["check", "result", "detail", "what to do"]


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


class LocalSite(SiteBase):
    """This machine, playing the cluster: its checks, the catalog's node types (there are no nodes to list)."""

    target = Target.LOCAL
    default_model = OFFLINE_MODEL

    def describe(self) -> str:
        return (f"Target local: this machine plays the cluster - a folder under {self.session.records.root} plays "
                f"the PVC and a CPU server plays vLLM, with the same API on port {DEFAULT_PORT}.")

    def preflight(self, model: str = ""):
        """Python, torch, the model package, disk, the serving port and curl, as a report (``.to_frame()``)."""
        runs = self.session.records.runs
        ours = next((f"server {r.name} (pid {r.pid})" for r in runs.servers() if r.port == DEFAULT_PORT), "")
        self.session.records.root.mkdir(parents=True, exist_ok=True)
        return run_local_preflight(self.session.records.root, DEFAULT_PORT, ours)

    def node_types(self) -> list[NodeType]:
        """The catalog's TKE node types (the local target has no nodes to list)."""
        return list(NODE_TYPES)

    def nodes_table(self) -> pd.DataFrame:
        return pd.DataFrame(node_type_rows())

    def remove(self, keep_pvc: bool = True) -> list[Row]:
        """Nothing of the site's own: the servers, downloads and folders are the steps' (see their ``remove``)."""
        return []


class LocalStorage(StorageBase):
    """01 locally: a folder under the state folder plays each PVC (:class:`~tke_playbook.download.folders.PvcFolders`)."""

    def __init__(self, session: Session, folders: PvcFolders):
        super().__init__(session)
        self.folders = folders

    def names(self) -> list[str]:
        """The folders that play PVCs, by name."""
        return self.folders.names()

    def create(self, spec: StorageSpec, *, timeout: float | None = None) -> pd.DataFrame:
        """Create the folder that plays PVC ``spec.pvc_name`` (idempotent) and record it; at once (``timeout``
        bounds the cluster's wait for Bound)."""
        self.session.forms.check(spec)
        path = self.folders.create(spec.pvc_name)
        self.session.records.state.update(storage=spec)
        free = shutil.disk_usage(path).free
        return pd.DataFrame([{"pvc": spec.pvc_name, "status": "Bound", "path": str(path),
                              "free_GiB": round(free / 2**30, 1)}])

    def path(self, pvc_name: str) -> Path:
        """The folder that plays PVC ``pvc_name`` (not created here)."""
        return self.folders.path(pvc_name)

    def remove(self, keep_pvc: bool = True) -> list[Row]:
        """Delete the folders that play PVCs (the downloaded models on them) unless ``keep_pvc``."""
        if keep_pvc:
            return []
        removed = []
        for name in self.names():
            shutil.rmtree(self.folders.path(name), ignore_errors=True)
            removed.append({"object": "PVC folder", "name": name})
        return removed


def _model_id(name: str) -> str:
    """A catalog model's hub id, else the name as given (a model the catalog does not list, e.g. a reranker, is
    simply not the one served)."""
    try:
        return get_model(name).hf_id
    except UnknownNameError:
        return name.strip()


class LocalServing(ServingBase):
    """03 locally: the vLLM-compatible CPU server on the spec's port (60000), started from the model folder on the
    local PVC; it outlives the kernel that started it (99 or a redeploy stops it)."""

    downloads: LocalDownloads

    def __init__(self, session: Session, site: LocalSite, downloads: LocalDownloads, folders: PvcFolders):
        super().__init__(session, site, downloads)
        self.folders = folders

    def unavailable_models(self) -> dict[str, str]:
        """What the downloads cannot fetch, and every model not complete on a local PVC yet (the local server
        serves only a complete model folder)."""
        missing = self.downloads.unavailable_models()
        for info in list_models():
            if info.hf_id not in missing and not any(is_complete(self.folders.path(pvc) / info.hf_id)
                                                     for pvc in self.folders.names()):
                missing[info.hf_id] = ("is not downloaded yet: download it with 02_download_model first (the "
                                       "local server serves only a complete model folder)")
        return missing

    def model_folder(self, spec: ServingSpec) -> Path:
        """Where the model of ``spec`` lies on the local PVC (``<pvc>/<model id>``); creates nothing."""
        return self.folders.path(spec.pvc_name) / spec.pvc_path

    default_reranker = ""  # the server 03 starts answers /rerank itself, with its bi-encoder

    def deploy_beside(self, spec: ServingSpec, *, timeout: float | None = None) -> ServiceEndpoint:
        """The reranker beside the embedder: locally the server 03 started, which answers /rerank the way vLLM does
        for an embedding model (the cosine of the pooled vectors). Starts nothing (``timeout`` is not used);
        NotDeployedError before 03's deploy, InvalidSpecError for any other model (one model at a time here)."""
        deployed = self.require_deployed()
        if spec.name != deployed.name:
            raise InvalidSpecError(f"The local target serves one model at a time ({deployed.model}), and its server "
                                   f"answers /rerank itself: leave RERANKER empty, or run on a cluster to put "
                                   f"{spec.model} beside it", field="model", value=spec.model)
        found = self.endpoint()
        return dataclasses.replace(found, note=f"{deployed.model}'s server answers /rerank as vLLM does for an "
                                               f"embedding model: the cosine of the pooled vectors (a bi-encoder)")

    def deploy(self, spec: ServingSpec, *, timeout: float | None = None) -> ServiceEndpoint:
        """Check the PVC and the model folder, stop the deployment's running server (whichever kernel started
        it) and start the local server on the spec's port (60000); ``timeout`` bounds its start."""
        self.session.forms.check(spec)
        self.folders.require(spec.pvc_name)
        folder = self.model_folder(spec)
        if not is_complete(folder):
            require_complete(folder)  # says what is missing
        return self._start(spec, folder, timeout)

    def _start(self, spec: ServingSpec, folder: Path, timeout: float | None) -> ServiceEndpoint:
        records = self.session.records
        self.stop_servers(lambda r: r.name == spec.name or r.port == spec.service_port)
        deadline = time.monotonic() + PORT_RELEASE_S
        while not port_is_free(spec.service_port) and time.monotonic() < deadline:
            time.sleep(0.1)
        port = spec.service_port if port_is_free(spec.service_port) else 0
        key = records.api_key(spec)
        with waiting(self.session.reporter, f"Starting the local server for {spec.model}"):
            server = start_server(folder, port=port, api_key=key, served_model_name=spec.served_model_name,
                                  require_marker=folder != offline_model_dir(), outlive_caller=True,
                                  home=self.session.settings.home, **({"timeout": timeout} if timeout else {}))
        key_file = records.key_file(spec)
        records.runs.add_server(ServerRecord(
            name=spec.name, pid=server.pid, port=server.port, url=server.url, model=spec.model,
            served_model_name=spec.served_model_name, spec=spec.to_dict(), model_dir=str(folder),
            log=str(server.log_path), key_file=str(key_file) if key_file else None, kernel_pid=os.getpid(),
            started_at=time.time()))
        records.record_serving(spec)
        records.state.update(server_log=str(server.log_path))
        note = "" if port else (
            f"port {spec.service_port} is held by another program (not a server of this playbook), so the server "
            f"took port {server.port}: free port {spec.service_port} and deploy again to get it")
        return ServiceEndpoint(server.url, spec.served_model_name, "local-process", key, note)

    def logs(self, lines: int = 20) -> str:
        """The last lines of the local server's log (what `kubectl logs` shows on the cluster)."""
        spec = self.require_deployed()
        record = self.session.records.runs.server(spec.name)
        path = record.log if record is not None else self.session.records.read().server_log
        try:
            text = Path(path).read_text(encoding="utf-8", errors="replace")
        except (TypeError, OSError):
            return ""
        return "\n".join(without_progress_bars(text.splitlines())[-lines:])

    def _deployed(self, model: str) -> ServingSpec:
        spec = self.require_deployed()
        if model and _model_id(model) != spec.model:
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
        record = self.session.records.runs.server(spec.name)
        if record is None:
            raise NotDeployedError(f"03 deployed {spec.model}, but its local server is no longer running (stopped, "
                                   "crashed, or this machine restarted), and nothing is started behind your back: "
                                   "run 03_deploy_vllm again", obj=spec.name)
        if not _healthy(record.url, timeout=HEALTH_TIMEOUT_S):
            raise ServerError(f"03's local server for {spec.model} (pid {record.pid}, {record.url}) runs but does "
                              f"not answer /health within {HEALTH_TIMEOUT_S:g} s (still loading, or stuck): wait "
                              "and run this cell again, or run 03_deploy_vllm again to replace it", obj=record.url)
        return ServiceEndpoint(record.url, record.served_model_name, "local-process", self.api_key(spec))

    def key_source(self, model: str = "") -> str:
        """A shell line that puts the deployment's API key into ``$VLLM_API_KEY`` from its key file, without
        showing it; empty when the deployment needs no key (or none is deployed)."""
        spec = self.deployed_spec(model)
        key_file = self.session.records.key_file(spec) if spec is not None else None
        return f'export VLLM_API_KEY="$(cat {shlex.quote(str(key_file))})"' if key_file is not None else ""

    def hardware(self) -> ServedOn:
        """This machine's CPU, running the local server (whatever node type 00 chose)."""
        from ..capacity.hardware import local_server

        return local_server(self.require_deployed().model)

    def measured_on(self) -> str:
        """For a figure's title: this machine's CPU, where the local server runs."""
        from ..capacity.hardware import cpu_cores, cpu_model

        return f"this machine's CPU ({' '.join(cpu_model().split())}, {cpu_cores()} cores), local server"

    def tune(self, summary: pd.DataFrame, p99_target_ms: float, *, baseline: Any = None, quick: bool = False,
             max_candidates: int | None = None, input_tokens: int = 32, concurrency: Sequence[int] = (1, 4),
             level_s: float | None = None, progress: bool = False) -> LocalServerTuning:
        """The local server's tuning loop: each batching setting on a fresh server, the best sustainable rate at
        ``p99_target_ms`` kept; ``baseline`` is the search already run against the running (default) server."""
        from ..capacity.advice import tune_local_server

        return tune_local_server(p99_target_ms, baseline=baseline, quick=quick, max_candidates=max_candidates,
                                 input_tokens=input_tokens, concurrency=concurrency, level_s=level_s,
                                 progress=progress, home=self.session.settings.home)

    def autoscaler_checks(self, scale: ScaleOutSpec) -> pd.DataFrame:
        """What a cluster would check for ``scale``'s autoscaler (there is no cluster here to check)."""
        if scale.autoscaler is Autoscaler.NONE:
            return pd.DataFrame([("autoscaler", "skip", "no autoscaler chosen", "")], columns=AUTOSCALER_COLUMNS)
        return pd.DataFrame([("autoscaler", "skip", "the local target has no cluster to check; on a cluster this "
                              "checks: " + "; ".join(requirements(scale)[:1]), "")], columns=AUTOSCALER_COLUMNS)

    def running(self) -> list[Row]:
        """The recorded servers, whichever kernel started them."""
        return [{"kind": "local server", "name": r.name, "model": r.model, "where": r.url, "pid": r.pid,
                 "status": "running" if _healthy(r.url) else "starting or busy"}
                for r in self.session.records.runs.servers()]

    def stop_servers(self, which: Callable[[ServerRecord], bool] | None = None) -> list[ServerRecord]:
        """Stop every recorded running server (``which(record)`` picks some), whichever kernel started it."""
        runs = self.session.records.runs
        stopped = []
        for record in runs.servers():
            if which is None or which(record):
                stop_process(record.pid)
                runs.remove_server(record.name)
                stopped.append(record)
        return stopped

    def _delete_keys(self) -> list[Row]:
        records = self.session.records
        state = records.read()
        specs = [state.serving, *state.deployments.values()]
        removed = []
        for secret in dict.fromkeys(s.api_key_secret for s in specs if s is not None and s.api_key_required):
            if records.secrets.read(secret) is not None:
                records.secrets.delete(secret)
                removed.append({"object": "API key", "name": secret})
        return removed

    def remove(self) -> list[Row]:
        """Stop every recorded server and delete the deployments' API keys."""
        stopped = [{"object": "local server", "name": f"{r.name} ({r.url}, pid {r.pid})"} for r in self.stop_servers()]
        return stopped + self._delete_keys()


class LocalEvaluation:
    """05 and 07 locally: the served model against the lexical baseline, parity in-process, prices of a CPU node
    (the throughput was measured on this machine's CPU), bulk embedding by worker processes into the PVC folder."""

    def __init__(self, session: Session, serving: LocalServing, folders: PvcFolders):
        self.session = session
        self.serving = serving
        self.folders = folders

    def comparison_pair(self, model_a: str = "", model_b: str = "") -> tuple[Any, Any]:
        """The offline pair: the served model (all-MiniLM-L6-v2) as A, the lexical TF-IDF baseline as B."""
        from ..embed.lexical import LexicalEmbedder

        endpoint = self.serving.endpoint()
        if model_a and get_model(model_a).hf_id != endpoint.model:
            raise InvalidSpecError(f"The local target serves one model ({endpoint.model}), not {model_a}: leave "
                                   "MODEL_A empty, or run this notebook on a cluster.", field="model_a", value=model_a)
        if model_b and model_b != "lexical":
            raise InvalidSpecError(f"Locally model B is the lexical baseline, not {model_b}: leave MODEL_B empty "
                                   "(or 'lexical'), or run this notebook on a cluster.", field="model_b", value=model_b)
        return endpoint.client(), LexicalEmbedder()

    def parity_reference(self, model: str = "") -> ReferenceEncoder:
        """sentence-transformers in-process on the folder the local server serves (the packaged model when nothing
        complete was deployed)."""
        from ..scorecard.parity import ReferenceEncoder

        spec = self.serving.deployed_spec(model)
        return ReferenceEncoder(self.served_folder(model), spec.model if spec is not None else OFFLINE_MODEL)

    def served_folder(self, model: str = "") -> Path:
        """The model folder the local server serves: the deployed model's complete download, else the packaged
        offline model (what the local server serves when nothing complete was deployed)."""
        spec = self.serving.deployed_spec(model)
        folder = self.serving.model_folder(spec) if spec is not None else None
        return folder if folder is not None and is_complete(folder) else offline_model_dir()

    def frontier(self, task: Any = None, *, quick: bool = False, models: Sequence[str] = (),
                 storage: str | None = None, storage_prices: pd.DataFrame | None = None,
                 node_type: str = "", throughputs: Any = None, progress: bool = True) -> Frontier:
        """The dimension x precision frontier of the served model: a second local server with the Matryoshka
        override (:func:`~tke_playbook.scorecard.frontier.local_frontier`), priced as a CPU node; ``quick``: three
        precisions at one smaller dimension. The local target serves one model: another in ``models`` is refused.
        ``throughputs``: what the page measured (``scorecard_throughputs(result, ...)``), so the frontier prices
        embedding with the throughput its cost table shows; None: the frontier measures its own, and says so."""
        from ..scorecard import frontier as fr

        for name in (m.strip() for m in models if m.strip()):
            self.serving.endpoint(name)  # says the target serves one model when it is another
        dims = fr.QUICK_DIMENSIONS if quick else fr.LOCAL_DIMENSIONS
        return fr.local_frontier(self.served_folder(), dimensions=dims, task=task,
                                 precisions=fr.QUICK_PRECISIONS if quick else fr.PRECISIONS,
                                 node_type=self.price_node(node_type), measured_on=self.serving.measured_on(),
                                 throughputs=throughputs,
                                 progress=progress, **self.session.settings.frontier_inputs(storage_prices),
                                 **({"storage": storage} if storage else {}))

    def price_node(self, requested: str = "") -> str:
        """The node type to price on: the endpoint's throughput was measured on this machine's CPU, so a CPU node
        (``requested``, else ``LOCAL_PRICE_NODE``); a GPU node type is refused - a GPU cost needs a GPU
        measurement, or 06's labelled projection."""
        from ..specs.prices import LOCAL_PRICE_NODE

        if not (requested and requested.strip()):
            return LOCAL_PRICE_NODE
        node = get_node_type(requested.strip())
        if node.gpu_count:
            raise InvalidSpecError(f"NODE_TYPE {node.name} has GPUs, but locally the throughput was measured on this "
                                   f"machine's CPU: leave NODE_TYPE empty (priced as {LOCAL_PRICE_NODE}) or use a CPU "
                                   "node type; GPU costs come from a cluster run (or 06's projection)",
                                   field="node_type", value=node.name)
        return node.name

    def document_systems(self, extra: str = "bm25,hybrid") -> tuple[list, Chunker, str]:
        """``(systems, chunker, note)``: the served model first (the packaged model in-process when nothing is
        deployed), then ``extra`` (``bm25``, ``tfidf``, ``hybrid``, URLs), and the chunker for the served model."""
        from ..corpus.chunking import served_chunker
        from ..embed.local import LocalEmbedder

        names = [name.strip() for name in extra.split(",") if name.strip()]
        try:
            endpoint = self.serving.endpoint()
        except NotDeployedError:
            first, note = LocalEmbedder(), "nothing deployed (03 not run): the packaged model in-process stands in"
            return [first, *names], served_chunker(None), note
        chunker = served_chunker(endpoint.url, endpoint.api_key)
        return [endpoint.client(), *names], chunker, f"{endpoint.model} served at {endpoint.url}"

    def embed_corpus(self, corpus: Corpus, *, shards: int = 4, stage_root: str | Path | None = None,
                     workers: int = 2, batch: int = 64, concurrency: int = 4) -> dict:
        """Embed ``corpus`` in bulk with the deployed model: the cluster Job's worker, as processes writing into
        the folder that plays the PVC (``stage_root``: the cluster's mount point, unused here). The manifest."""
        from ..corpus.bulk import embed_local

        serving = self.serving.require_deployed()
        endpoint = self.serving.endpoint()
        _, manifest, _, _ = embed_local(corpus, self.folders.create(serving.pvc_name), endpoint=endpoint.url,
                                        model=endpoint.model, document_prompt=serving.model_info.document_prompt,
                                        shards=shards, workers=workers, api_key=endpoint.api_key, batch=batch,
                                        concurrency=concurrency, progress=True)
        return manifest
