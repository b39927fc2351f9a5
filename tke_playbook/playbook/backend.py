"""What a target does for the facade: the :class:`Backend` protocol.

:class:`~tke_playbook.playbook.facade.Playbook` holds one backend - :class:`~tke_playbook.playbook.local.LocalBackend`
(this machine plays the cluster) or :class:`~tke_playbook.playbook.cluster.ClusterBackend` (a TKE cluster through
:mod:`tke_playbook.kube`) - and sends it every step that touches the target. A backend gets what it needs (the
:class:`~tke_playbook.playbook.base.Records`, an event sink, a cluster connection) through its constructor and
nothing else; the facade keeps the target-independent steps (defaults, rendering, the API key).

Calls marked *options* take keyword options only one target knows (``mirror=`` for a local plan, ``token=`` for a
cluster download, ``timeout=`` for a cluster wait); the facade passes them through.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import pandas as pd

from ..podworker.planner import DownloadPlan
from ..specs.checks import PreflightReport
from ..specs.download import DownloadSpec
from ..specs.target import Target
from .endpoint import ServiceEndpoint


@runtime_checkable
class Backend(Protocol):
    """The target-specific half of a playbook."""

    target: Target
    default_model: str  # the model a notebook uses when its MODEL parameter is empty
    default_source: str  # the hub a download reads from when the form leaves it empty

    def describe(self) -> str: ...

    # 00 prerequisites
    def preflight(self, model: str = "") -> PreflightReport: ...
    def node_types(self) -> list: ...
    def nodes_table(self) -> pd.DataFrame: ...

    # 01 storage
    def pvcs(self) -> list[str]: ...
    def create_storage(self, storage_spec, **options: Any) -> pd.DataFrame: ...

    # 02 download
    def plan_download(self, spec: DownloadSpec, **options: Any) -> DownloadPlan: ...
    def start_download(self, spec, plan=None, **options: Any) -> pd.DataFrame: ...
    def download_progress(self) -> pd.DataFrame: ...
    def wait_for_download(self, **options: Any) -> Any: ...
    def verify_download(self) -> pd.DataFrame: ...
    def stop_downloads(self) -> list: ...

    # 03 deploy
    def deploy(self, serving_spec, **options: Any) -> ServiceEndpoint: ...
    def endpoint(self, model: str = "") -> ServiceEndpoint: ...
    def deployment_logs(self, lines: int = 20) -> str: ...
    def running(self) -> pd.DataFrame: ...

    # 05 compare, 99 cleanup
    def comparison_pair(self, model_a: str = "", model_b: str = "") -> tuple: ...
    def teardown(self, keep_pvc: bool = True) -> pd.DataFrame: ...
