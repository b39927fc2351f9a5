"""The two-target facade the notebooks call: the same steps on a TKE cluster or on this machine.

    pb = open_target()            # TKE_PLAYBOOK_TARGET=local|cluster; local when no kubeconfig is found
    pb.site.preflight().to_frame()
    pb.storage.create(pb.storage.defaults())
    ...
    endpoint = pb.serving.deploy(pb.serving.defaults())

``pb`` is a :class:`Playbook` composed of its target's step objects (``site``, ``storage``, ``download``,
``serving``, ``evaluation``: :mod:`~tke_playbook.playbook.steps`), opened with the :class:`Settings` read once from
the environment and one reporter. State between notebooks (storage, download, serving spec, running server) lives
under ``settings.home``; API keys in 0600 files beside it, never printed.

Names are imported on first use, so ``from tke_playbook.playbook.settings import
quick_mode`` in a notebook's parameters cell loads neither pandas nor the widgets.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the reporter's module by its path: this face re-exports nothing of another package
    import tke_playbook.reporting as reporting

    from .facade import Playbook
    from .settings import Settings

_EXPORTS = {
    "defaults": "default_max_model_len",
    "endpoint": "TUTORIAL_INPUT ServiceEndpoint describe_embedding_answer",
    "facade": "PLAYBOOKS ClusterPlaybook LocalPlaybook Playbook",
    "memory": "FormMemory PlanMemory",
    "records": "Records",
    "report": "Note headroom_note nothing_note spec_table tidy",
    "settings": "Settings quick_mode",
    "state": "SecretStore StateStore WorkflowState mask_secret",
    "steps": "Download DownloadStatus Evaluation Serving Session Site Storage",
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names.split()}


def open_target(target: str | None = None, *, context: str | None = None, reporter: reporting.Reporter | None = None,
                settings: Settings | None = None) -> Playbook:
    """The playbook for ``target`` (``'local'``/``'cluster'``), else from ``$TKE_PLAYBOOK_TARGET`` or kubeconfig.

    The environment is read here, once (:meth:`Settings.from_env <tke_playbook.playbook.settings.Settings.from_env>`;
    pass ``settings`` to give them instead). ``context`` picks the kubeconfig context (cluster target; ignored
    locally); ``reporter`` shows what a step reports while it runs - events and progress (default:
    :func:`~tke_playbook.reporting.default_reporter`, the cell's output in a notebook, stdout/stderr elsewhere).
    Inside IPython this also makes the toolkit's errors show as one short red block, installed once per kernel
    (:func:`tke_playbook.playbook.display.install`)."""
    from .display import install_in_ipython
    from .facade import Playbook
    from .settings import Settings

    install_in_ipython()
    settings = settings or Settings.from_env(target=target or None, context=context or None)
    return Playbook.from_env(settings=settings, reporter=reporter)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'tke_playbook.playbook' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))


__all__ = sorted([*_WHERE, "open_target"])
