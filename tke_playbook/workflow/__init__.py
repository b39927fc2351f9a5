"""The two-target facade the notebooks call: the same steps on a TKE cluster or on this machine.

    pb = open_target()            # TKE_PLAYBOOK_TARGET=local|cluster; local when no kubeconfig is found
    pb.preflight().to_frame()
    pb.create_storage(pb.storage_defaults())
    ...
    endpoint = pb.deploy(pb.serving_defaults())

State between notebooks (storage, download, serving spec, running server) lives under
``tke_playbook.target.state_dir()``; API keys in 0600 files beside it, never printed.
"""

from __future__ import annotations

from ..notebook import install_in_ipython
from .base import Playbook, check_plan_matches, default_max_model_len, quick_mode, spec_from_dict, spec_to_dict
from .cluster import ClusterPlaybook  # each target's playbook registers itself with Playbook (from_env)
from .local import LocalPlaybook
from .endpoint import TUTORIAL_INPUT, ServiceEndpoint, describe_embedding_answer
from .report import Level, Note, headroom_note, spec_table, tidy
from .state import SecretStore, StateStore, mask_secret


def open_target(target: str | None = None, *, context: str | None = None) -> Playbook:
    """The playbook for ``target`` (``'local'``/``'cluster'``), else from ``$TKE_PLAYBOOK_TARGET`` or kubeconfig.

    ``context`` picks the kubeconfig context (cluster target; ignored locally). Inside IPython this also makes
    the toolkit's errors show as one short red block (:func:`tke_playbook.notebook.install`)."""
    install_in_ipython()
    return Playbook.from_env(target or None, context=context or None)


__all__ = ["ClusterPlaybook", "Level", "LocalPlaybook", "Note", "Playbook", "ServiceEndpoint", "SecretStore",
           "StateStore", "TUTORIAL_INPUT", "check_plan_matches", "default_max_model_len", "describe_embedding_answer",
           "headroom_note", "mask_secret", "open_target", "quick_mode", "spec_from_dict", "spec_table", "spec_to_dict",
           "tidy"]
