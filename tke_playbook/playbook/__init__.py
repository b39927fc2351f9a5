"""The two-target facade the notebooks call: the same steps on a TKE cluster or on this machine.

    pb = open_target()            # TKE_PLAYBOOK_TARGET=local|cluster; local when no kubeconfig is found
    pb.preflight().to_frame()
    pb.create_storage(pb.storage_defaults())
    ...
    endpoint = pb.deploy(pb.serving_defaults())

``pb`` is a :class:`Playbook` holding its target's backend (:class:`Backend`: local or cluster). What a step
reports while it runs (the vLLM log during a cluster deploy) goes to its event sink (``on_event``; default: the
cell's output). State between notebooks (storage, download, serving spec, running server) lives under
``tke_playbook.hostenv.state_dir()``; API keys in 0600 files beside it, never printed.
"""

from __future__ import annotations

from .backend import Backend
from .base import (PlanMemory, Records, check_plan_matches, default_max_model_len, quick_mode, spec_from_dict,
                   spec_to_dict)
from .display import install_in_ipython
from .endpoint import TUTORIAL_INPUT, ServiceEndpoint, api_key_source, describe_embedding_answer, measured_on
from .events import Event, EventSink, show_event
from .facade import PLAYBOOKS, ClusterPlaybook, LocalPlaybook, Playbook
from .local import LocalBackend
from .report import Level, Note, headroom_note, nothing_note, spec_table, tidy
from .scaleout import autoscaler_checks
from .state import SecretStore, StateStore, mask_secret


def open_target(target: str | None = None, *, context: str | None = None,
                on_event: EventSink = show_event) -> Playbook:
    """The playbook for ``target`` (``'local'``/``'cluster'``), else from ``$TKE_PLAYBOOK_TARGET`` or kubeconfig.

    ``context`` picks the kubeconfig context (cluster target; ignored locally); ``on_event`` receives what a step
    reports while it runs (default: shown in the cell's output). Inside IPython this also makes the toolkit's
    errors show as one short red block (:func:`tke_playbook.playbook.display.install`)."""
    install_in_ipython()
    return Playbook.from_env(target or None, context=context or None, on_event=on_event)


__all__ = ["Backend", "autoscaler_checks", "ClusterPlaybook", "Event", "EventSink", "Level", "LocalBackend", "LocalPlaybook", "Note",
           "PLAYBOOKS", "PlanMemory", "Playbook", "Records", "ServiceEndpoint", "SecretStore", "StateStore",
           "TUTORIAL_INPUT", "api_key_source", "check_plan_matches", "default_max_model_len",
           "describe_embedding_answer", "measured_on",
           "headroom_note", "mask_secret", "nothing_note", "open_target", "quick_mode", "show_event", "spec_from_dict",
           "spec_table", "spec_to_dict", "tidy"]
