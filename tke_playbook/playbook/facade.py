"""The facade every notebook holds (``pb = open_target()``): one :class:`Playbook` composed of its target's steps.

    pb.site.preflight(MODEL).to_frame()                   # 00
    pb.storage.create(pb.storage.defaults())              # 01
    plan = pb.download.plan(spec); pb.download.start(spec, plan); pb.download.wait()   # 02
    endpoint = pb.serving.deploy(pb.serving.defaults())   # 03
    pb.teardown()                                         # 99

Each attribute is the step object itself (:mod:`~tke_playbook.playbook.steps` has the protocols): the playbook
adds nothing between a notebook and the code that does the step. It keeps what spans the steps - the settings, the
records, the reporter, reading a form, what runs, the teardown. :class:`LocalPlaybook` and
:class:`ClusterPlaybook` only choose the step classes (and narrow their types).
"""

from __future__ import annotations

import secrets
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..download.folders import PvcFolders
from ..download.mirror import HubMirror
from ..reporting import Level, Reporter, default_reporter
from ..specs.target import Target
from .download_local import LocalDownloads
from .local import LocalEvaluation, LocalServing, LocalSite, LocalStorage
from .records import Records
from .report import Note
from .settings import Settings
from .steps import Download, Evaluation, Serving, Session, Site, Storage

if TYPE_CHECKING:
    from ..kube import Kube
    from .cluster import ClusterEvaluation, ClusterServing, ClusterSite, ClusterStorage
    from .download_cluster import ClusterDownloads

RUNNING_COLUMNS = ["kind", "name", "model", "where", "pid", "status"]


class Playbook:
    """The steps of the tutorial on one target: ``site`` (00, 99), ``storage`` (01), ``download`` (02),
    ``serving`` (03, and what 04-06 ask of the deployment) and ``evaluation`` (05, 07), sharing one
    :class:`~tke_playbook.playbook.steps.Session` (settings, records, reporter, this kernel's form memory)."""

    def __init__(self, session: Session, site: Site, storage: Storage, download: Download, serving: Serving,
                 evaluation: Evaluation):
        self.session = session
        self.site = site
        self.storage = storage
        self.download = download
        self.serving = serving
        self.evaluation = evaluation

    @staticmethod
    def from_env(target: str | Target | None = None, *, context: str | None = None, root: Path | None = None,
                 reporter: Reporter | None = None, settings: Settings | None = None) -> Playbook:
        """The playbook for ``target``, else ``$TKE_PLAYBOOK_TARGET``, else cluster when a kubeconfig exists
        (:meth:`Settings.from_env <tke_playbook.playbook.settings.Settings.from_env>`, read once here)."""
        settings = settings or Settings.from_env(target=target, context=context)
        if root is not None:
            settings = settings.replace(home=Path(root))
        return PLAYBOOKS[settings.target].open(settings, reporter=reporter or default_reporter())

    @property
    def target(self) -> Target:
        return self.session.target

    @property
    def settings(self) -> Settings:
        return self.session.settings

    @property
    def records(self) -> Records:
        """What the playbook keeps between notebooks: ``state``, ``secrets``, ``runs``."""
        return self.session.records

    @property
    def reporter(self) -> Reporter:
        return self.session.reporter

    def __repr__(self) -> str:
        return f"{type(self).__name__}(target={self.target.value!r}, state={str(self.records.state.path)!r})"

    def _repr_html_(self) -> str:
        return Note(self.site.describe(), Level.INFO)._repr_html_()

    def read_form(self, form: Any) -> Any:
        """``form.spec()``, remembered for this kernel: when it fails (a red message), the cells after it refuse
        the spec an earlier run left in the notebook instead of quietly using it."""
        return self.session.forms.read(form)

    def running(self) -> pd.DataFrame:
        """What this playbook has running, from the record every kernel shares: servers or deployments, and
        downloads."""
        return pd.DataFrame(self.serving.running() + self.records.download_rows(), columns=RUNNING_COLUMNS)

    def teardown(self, keep_pvc: bool = True) -> pd.DataFrame:
        """Remove what the playbook made - deployments (or servers) and their keys, downloads, and on a cluster
        every object it labelled; the PVC (locally its folder) only with ``keep_pvc=False`` - and forget the
        records, so the other notebooks say that nothing is deployed."""
        removed = self.serving.remove() + self.download.remove() + self.site.remove(keep_pvc) + \
            self.storage.remove(keep_pvc)
        self.records.forget(keep_storage=keep_pvc)
        return pd.DataFrame(removed, columns=["object", "name"])


class LocalPlaybook(Playbook):
    """The playbook on this machine (a folder plays the PVC, a CPU server plays vLLM). ``mirror``: a running hub
    (e.g. a test's) the downloads list and fetch from instead of the real one."""

    site: LocalSite
    storage: LocalStorage
    download: LocalDownloads
    serving: LocalServing
    evaluation: LocalEvaluation

    def __init__(self, settings: Settings | None = None, *, root: Path | None = None,
                 reporter: Reporter | None = None, mirror: HubMirror | None = None):
        settings = _settings(Target.LOCAL, settings, root)
        session = Session(settings, Records(Target.LOCAL, settings.home), reporter or default_reporter())
        folders = PvcFolders(settings.home)
        site = LocalSite(session)
        download = LocalDownloads(session, site.default_model, folders, mirror=mirror)
        serving = LocalServing(session, site, download, folders)
        super().__init__(session, site, LocalStorage(session, folders), download, serving,
                         LocalEvaluation(session, serving, folders))

    @classmethod
    def open(cls, settings: Settings, *, reporter: Reporter) -> LocalPlaybook:
        return cls(settings, reporter=reporter)


class ClusterPlaybook(Playbook):
    """The playbook on a Kubernetes cluster. ``context`` picks the kubeconfig context (kept for later notebooks);
    ``kube`` is an already connected client (else one connects on first use)."""

    site: ClusterSite
    storage: ClusterStorage
    download: ClusterDownloads
    serving: ClusterServing
    evaluation: ClusterEvaluation

    def __init__(self, settings: Settings | None = None, *, root: Path | None = None, context: str | None = None,
                 kube: Kube | None = None, reporter: Reporter | None = None):
        # here, not at the top: the Kubernetes client loads only when a cluster playbook is built
        from .cluster import ClusterEvaluation, ClusterServing, ClusterSite, ClusterStorage
        from .connection import KubeConnection
        from .download_cluster import ClusterDownloads

        settings = _settings(Target.CLUSTER, settings, root)
        records = Records(Target.CLUSTER, settings.home)
        context = context or settings.context
        if context:
            records.state.update(context=context)
        settings = settings.replace(context=context or records.read().context)
        session = Session(settings, records, reporter or default_reporter())
        site = ClusterSite(session, KubeConnection(settings.context, kube))
        download = ClusterDownloads(session, site.default_model, site.connection)
        serving = ClusterServing(session, site, download)
        super().__init__(session, site, ClusterStorage(session, site), download, serving,
                         ClusterEvaluation(session, site, serving))

    @classmethod
    def open(cls, settings: Settings, *, reporter: Reporter) -> ClusterPlaybook:
        return cls(settings, reporter=reporter)


def _settings(target: Target, settings: Settings | None, root: Path | None) -> Settings:
    """``settings`` for ``target`` (read from the environment when not given), its home replaced by ``root``."""
    settings = (settings or Settings.from_env(target=target)).replace(target=target)
    return settings.replace(home=Path(root)) if root is not None else settings


# which playbook each target opens (read-only)
PLAYBOOKS = MappingProxyType({Target.LOCAL: LocalPlaybook, Target.CLUSTER: ClusterPlaybook})
