"""Which target the notebooks drive - a real cluster from kubeconfig, or this machine - as a value, and the rule
that chooses it. Reading the environment and the kubeconfig is :mod:`tke_playbook.hostenv`'s."""

from __future__ import annotations

import enum

from ..errors import InvalidSpecError
from .names import unknown


class Target(str, enum.Enum):
    LOCAL = "local"
    CLUSTER = "cluster"


def choose_target(requested: str | Target | None, *, kubeconfig_found: bool, in_cluster: bool = False) -> Target:
    """``requested`` (``local``, ``cluster`` or ``auto``/empty); ``auto`` is ``cluster`` when a kubeconfig was found
    and ``local`` otherwise. ``cluster`` needs a kubeconfig, or a pod's service account (``in_cluster``)."""
    if isinstance(requested, Target):
        return requested
    raw = (requested or "auto").strip().lower() or "auto"
    if raw == "auto":
        return Target.CLUSTER if kubeconfig_found else Target.LOCAL
    try:
        target = Target(raw)
    except ValueError:
        raise unknown("target", raw, [t.value for t in Target] + ["auto"]) from None
    if target is Target.CLUSTER and not (kubeconfig_found or in_cluster):
        raise InvalidSpecError("Target 'cluster' needs a kubeconfig, but none was found: set KUBECONFIG to your TKE "
                               "cluster's kubeconfig file, or use TKE_PLAYBOOK_TARGET=local", field="target",
                               value=raw)
    return target
