"""The autoscaler preflight for a notebook, on either target: a table of checks (none can run locally)."""

from __future__ import annotations

import pandas as pd

from ..target import Target
from .manifests import Autoscaler, ScaleOutSpec, requirements


def autoscaler_checks(playbook, scale: ScaleOutSpec) -> pd.DataFrame:
    """On a cluster, check what ``scale``'s autoscaler needs (``check_autoscaler``); locally, say what would be
    checked. Columns as the cluster preflight's table."""
    columns = ["check", "result", "detail", "what to do"]
    if scale.autoscaler is Autoscaler.NONE:
        return pd.DataFrame([("autoscaler", "skip", "no autoscaler chosen", "")], columns=columns)
    if getattr(playbook, "target", None) is not Target.CLUSTER:
        return pd.DataFrame([("autoscaler", "skip", "the local target has no cluster to check; on a cluster this "
                              "checks: " + "; ".join(requirements(scale)[:1]), "")], columns=columns)
    from .preflight import check_autoscaler  # the Kubernetes client: cluster target only

    return check_autoscaler(playbook.kube, scale).to_frame()
