"""Scale-out for the vLLM Deployment: PodDisruptionBudget, topology spread, HPA or KEDA autoscaler on vLLM's queue.

The builders return plain dicts; the preflight checks (``tke_playbook.scaleout.preflight``) talk to the cluster and
are imported on their own, so the local path never loads the Kubernetes client.
"""

from __future__ import annotations

from .checks import autoscaler_checks
from .manifests import (EXTERNAL_METRIC, EXTERNAL_METRICS_APISERVICE, KEDA_CRD, Autoscaler, ScaleOutSpec,
                        add_scale_out, build_adapter_rule, build_hpa, build_pdb, build_pod_monitor, build_scale_out,
                        build_scaled_object, render_scale_out, requirements, topology_spread, waiting_query,
                        with_topology_spread)

__all__ = ["Autoscaler", "EXTERNAL_METRIC", "EXTERNAL_METRICS_APISERVICE", "KEDA_CRD", "ScaleOutSpec",
           "add_scale_out", "autoscaler_checks", "build_adapter_rule", "build_hpa", "build_pdb", "build_pod_monitor",
           "build_scale_out", "build_scaled_object", "render_scale_out", "requirements", "topology_spread",
           "waiting_query", "with_topology_spread"]
