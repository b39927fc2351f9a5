"""The autoscaler preflight for a notebook, on either target: a table of checks (none can run locally)."""

from __future__ import annotations

import pandas as pd

from ..manifests.scaleout import Autoscaler, ScaleOutSpec, requirements
from ..specs.target import Target


def autoscaler_checks(playbook, scale: ScaleOutSpec) -> pd.DataFrame:
    """On a cluster, check what ``scale``'s autoscaler needs (``check_autoscaler``); locally, say what would be
    checked. Columns as the cluster preflight's table."""
    columns = ["check", "result", "detail", "what to do"]
    if scale.autoscaler is Autoscaler.NONE:
        return pd.DataFrame([("autoscaler", "skip", "no autoscaler chosen", "")], columns=columns)
    if getattr(playbook, "target", None) is not Target.CLUSTER:
        return pd.DataFrame([("autoscaler", "skip", "the local target has no cluster to check; on a cluster this "
                              "checks: " + "; ".join(requirements(scale)[:1]), "")], columns=columns)
    from ..kube.scaleout import check_autoscaler  # the Kubernetes client: cluster target only

    return check_autoscaler(playbook.kube, scale).to_frame()
