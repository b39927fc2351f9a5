"""One small protocol per step of the tutorial, and the values the steps share.

A :class:`~tke_playbook.playbook.facade.Playbook` is composed of five step objects, each implemented once per
target by a class that satisfies the protocol here (mypy checks it: ``tests/test_architecture.py``):

============  ====================================  =====================================================
step          protocol                              local / cluster
============  ====================================  =====================================================
``site``      :class:`Site` (00, 99)                ``LocalSite`` / ``ClusterSite``
``storage``   :class:`Storage` (01)                 ``LocalStorage`` / ``ClusterStorage``
``download``  :class:`Download` (02)                ``LocalDownloads`` / ``ClusterDownloads``
``serving``   :class:`Serving` (03, and what 04-06  ``LocalServing`` / ``ClusterServing``
              ask of the deployment)
``evaluation`` :class:`Evaluation` (05, 07)         ``LocalEvaluation`` / ``ClusterEvaluation``
============  ====================================  =====================================================

Parameters are explicit and typed; an option only one target uses is a parameter both accept (``timeout`` of a
wait: the local server's start has its own bound) or a constructor argument of the one class that needs it (the
local downloads' ``mirror``). Results are shared types (:class:`DownloadStatus`, a DataFrame, a
:class:`~tke_playbook.playbook.endpoint.ServiceEndpoint`). Above the step objects nothing asks which target it
runs on: each question whose answer depends on the target (what served the measurements, how to tune, what to
price, where the parity reference comes from) is a method here.

Every step of one playbook shares a :class:`Session`: the settings, the records, the reporter, and this kernel's
memory of its forms.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import pandas as pd

from ..specs.target import Target
from .memory import FormMemory

if TYPE_CHECKING:  # annotations only: importing a step's protocol loads no corpus, capacity or Kubernetes code
    from ..capacity.advice import Tuning
    from ..capacity.hardware import ServedOn
    from ..corpus.chunking import Chunker
    from ..corpus.loading import Corpus
    from ..scorecard.frontier import Frontier
    from ..manifests.scaleout import ScaleOutSpec
    from ..podworker.planner import DownloadPlan
    from ..reporting import Reporter
    from ..specs.checks import PreflightReport
    from ..specs.download import DownloadSpec
    from ..specs.hardware import NodeType
    from ..specs.serving import ServingSpec
    from ..specs.storage import StorageSpec
    from .endpoint import ServiceEndpoint
    from .records import Records
    from .runs import DownloadRecord
    from .settings import Settings

Row = dict[str, Any]  # one row of what a step created or runs ("object"/"name", or "kind"/"name"/...)


@dataclass
class Session:
    """What every step of one playbook shares: the settings (read once), the records kept between notebooks, the
    reporter that shows events and progress, and this kernel's memory of its forms."""

    settings: Settings
    records: Records
    reporter: Reporter
    forms: FormMemory = field(default_factory=FormMemory)

    @property
    def target(self) -> Target:
        return self.settings.target


@dataclass(frozen=True)
class DownloadStatus:
    """How a download ended, on either target: ``done`` once every shard finished (the local workers verified
    their files; the Job's pods verified theirs), a one-line ``summary``, and the per-shard table (``shards``:
    bytes per shard locally, pod per index on a cluster)."""

    model: str
    done: bool
    summary: str
    shards: pd.DataFrame = field(compare=False, repr=False)

    def to_frame(self) -> pd.DataFrame:
        return self.shards

    def __str__(self) -> str:
        return self.summary

    def _repr_html_(self) -> str:
        return f"<p>{html.escape(self.summary)}</p>" + self.shards.to_html(index=False)


@runtime_checkable
class Site(Protocol):
    """Where the steps run (00 and 99): a cluster from kubeconfig, or this machine playing one."""

    target: Target
    default_model: str  # the model a notebook uses when its MODEL parameter is empty

    def describe(self) -> str: ...
    def preflight(self, model: str = "") -> PreflightReport: ...
    def node_types(self) -> list[NodeType]: ...
    def nodes_table(self) -> pd.DataFrame: ...
    def node_type(self) -> NodeType | None: ...
    def choose_node_type(self, node_type: NodeType) -> NodeType: ...
    def remove(self, keep_pvc: bool = True) -> list[Row]: ...


@runtime_checkable
class Storage(Protocol):
    """01: the PVC (and the CFS StorageClass) - locally a folder."""

    def defaults(self, pvc_name: str = "", vpc_id: str | None = None, subnet_id: str | None = None,
                 zone: str | None = None) -> StorageSpec: ...
    def render(self, spec: StorageSpec) -> str: ...
    def create(self, spec: StorageSpec, *, timeout: float | None = None) -> pd.DataFrame: ...
    def names(self) -> list[str]: ...
    def remove(self, keep_pvc: bool = True) -> list[Row]: ...


@runtime_checkable
class Download(Protocol):
    """02: plan the shards, launch them (an Indexed Job, or worker processes), follow, verify."""

    def defaults(self, model: str = "", source: str = "", completions: int = 3,
                 parallelism: int = 3) -> DownloadSpec: ...
    def unavailable_models(self) -> dict[str, str]: ...
    def source_note(self) -> str: ...
    def plan(self, spec: DownloadSpec) -> DownloadPlan: ...
    def render(self, spec: DownloadSpec, plan: DownloadPlan) -> str: ...
    def job_table(self, spec: DownloadSpec, plan: DownloadPlan) -> pd.DataFrame: ...
    def tutorial_plan(self, spec: DownloadSpec, plan: DownloadPlan) -> DownloadPlan: ...
    def start(self, spec: DownloadSpec, plan: DownloadPlan | None = None, *,
              token: str | None = None) -> pd.DataFrame: ...
    def progress(self) -> pd.DataFrame: ...
    def wait(self, *, timeout: float | None = None) -> DownloadStatus: ...
    def verify(self) -> pd.DataFrame: ...
    def downloaded(self) -> DownloadRecord | None: ...
    def remove(self) -> list[Row]: ...


@runtime_checkable
class Serving(Protocol):
    """03: the serving spec, its manifests and key, the deployment and its endpoint; and what 04-06 ask of what
    served (its hardware, how to tune it, the autoscaler's prerequisites)."""

    default_reranker: str  # the reranker 03 puts beside the embedder ("": the embedder's own server answers /rerank)

    def defaults(self, model: str = "") -> ServingSpec: ...
    def unavailable_models(self) -> dict[str, str]: ...
    def render(self, spec: ServingSpec) -> str: ...
    def helm_values(self, spec: ServingSpec) -> str: ...
    def api_key(self, spec: ServingSpec) -> str | None: ...
    def masked_api_key(self, spec: ServingSpec) -> str: ...
    def key_source(self, model: str = "") -> str: ...
    def reranker_defaults(self, model: str = "") -> ServingSpec: ...
    def fit_table(self, spec: ServingSpec) -> pd.DataFrame: ...
    def deploy(self, spec: ServingSpec, *, timeout: float | None = None) -> ServiceEndpoint: ...
    def deploy_beside(self, spec: ServingSpec, *, timeout: float | None = None) -> ServiceEndpoint: ...
    def endpoint(self, model: str = "") -> ServiceEndpoint: ...
    def deployed_spec(self, model: str = "") -> ServingSpec | None: ...
    def require_deployed(self) -> ServingSpec: ...
    def logs(self, lines: int = 20) -> str: ...
    def diagnose(self) -> pd.DataFrame: ...
    def hardware(self) -> ServedOn: ...
    def measured_on(self) -> str: ...
    def tune(self, summary: pd.DataFrame, p99_target_ms: float, *, baseline: Any = None, quick: bool = False,
             max_candidates: int | None = None, input_tokens: int = 32, concurrency: Sequence[int] = (1, 4),
             level_s: float | None = None, progress: bool = False) -> Tuning: ...
    def autoscaler_checks(self, scale: ScaleOutSpec) -> pd.DataFrame: ...
    def running(self) -> list[Row]: ...
    def remove(self) -> list[Row]: ...


@runtime_checkable
class Evaluation(Protocol):
    """05 and 07: the systems to compare, the parity reference, what to price on, the dimension x precision
    frontier, bulk embedding."""

    def comparison_pair(self, model_a: str = "", model_b: str = "") -> tuple[Any, Any]: ...
    def parity_reference(self, model: str = "") -> Any: ...
    def price_node(self, requested: str = "") -> str: ...
    def document_systems(self, extra: str = "bm25,hybrid") -> tuple[list, Chunker, str]: ...
    def embed_corpus(self, corpus: Corpus, *, shards: int = 4, stage_root: str | Path | None = None,
                     workers: int = 2, batch: int = 64, concurrency: int = 4) -> dict: ...
    def frontier(self, task: Any = None, *, quick: bool = False, models: Sequence[str] = (),
                 storage: str | None = None, storage_prices: pd.DataFrame | None = None,
                 node_type: str = "", throughputs: Any = None, progress: bool = True) -> Frontier: ...


__all__ = ["Download", "DownloadStatus", "Evaluation", "Row", "Serving", "Session", "Site", "Storage"]
