"""Checked by mypy (tests/test_architecture.py), never run: each target's step class satisfies its step's
protocol, and the playbooks hold step objects of the protocols' types. A method renamed, a parameter dropped or
typed differently on one target fails here."""

from __future__ import annotations

from tke_playbook.capacity.advice import LocalServerTuning, Tuning, VllmTuning
from tke_playbook.playbook.cluster import ClusterEvaluation, ClusterServing, ClusterSite, ClusterStorage
from tke_playbook.playbook.download_cluster import ClusterDownloads
from tke_playbook.playbook.download_local import LocalDownloads
from tke_playbook.playbook.facade import ClusterPlaybook, LocalPlaybook, Playbook
from tke_playbook.playbook.local import LocalEvaluation, LocalServing, LocalSite, LocalStorage
from tke_playbook.playbook.steps import Download, Evaluation, Serving, Site, Storage
from tke_playbook.reporting import NotebookReporter, PlainReporter, QuietReporter, Reporter


def local_steps(site: LocalSite, storage: LocalStorage, download: LocalDownloads, serving: LocalServing,
                evaluation: LocalEvaluation) -> tuple[Site, Storage, Download, Serving, Evaluation]:
    return site, storage, download, serving, evaluation


def cluster_steps(site: ClusterSite, storage: ClusterStorage, download: ClusterDownloads, serving: ClusterServing,
                  evaluation: ClusterEvaluation) -> tuple[Site, Storage, Download, Serving, Evaluation]:
    return site, storage, download, serving, evaluation


def tunings(local: LocalServerTuning, cluster: VllmTuning) -> tuple[Tuning, Tuning]:
    return local, cluster


def reporters(notebook: NotebookReporter, plain: PlainReporter, quiet: QuietReporter) -> tuple[Reporter, ...]:
    return notebook, plain, quiet


def playbooks(local: LocalPlaybook, cluster: ClusterPlaybook) -> tuple[Playbook, Playbook]:
    return local, cluster
