"""Cluster operations over the official kubernetes client: apply, wait, inventory, diagnosis, endpoint,
preflight and teardown. Every I/O function takes a :class:`Kube` (from :func:`connect`) first.

The functions named like their modules are imported from those modules, so the module names stay modules:
``from tke_playbook.kube.apply import apply``, ``from tke_playbook.kube.preflight import preflight``,
``from tke_playbook.kube.teardown import teardown``. The diagnosis rules are :mod:`tke_playbook.specs.diagnosis`'s,
the report types :mod:`tke_playbook.specs.checks`'s."""

from .apply import Cascade, apply_all, delete, get, list_objects
from .client import Kube, ObjectRef, connect
from .endpoint import Endpoint, PortForward, get_endpoint, plan_endpoint, port_forward, read_api_key
from .explain import explain_pvc, wait_for_pvc_bound
from .inventory import (NodeInfo, cfs_storage_classes, list_nodes, list_pods, list_pvcs, list_storage_classes,
                        nodes_frame, pod_events, pod_logs)
from .preflight import run_preflight
from .teardown import find_created
from .wait import JobProgress, RolloutState, job_progress, wait_for_deployment, wait_for_job, wait_for_leader_worker_set

__all__ = [
    "Cascade", "apply_all", "delete", "get", "list_objects", "Kube", "ObjectRef", "connect", "Endpoint", "PortForward",
    "get_endpoint", "plan_endpoint", "port_forward", "read_api_key", "explain_pvc",
    "wait_for_pvc_bound", "NodeInfo", "cfs_storage_classes", "list_nodes", "list_pods", "list_pvcs",
    "list_storage_classes", "nodes_frame", "pod_events", "pod_logs", "run_preflight", "find_created", "JobProgress",
    "RolloutState", "job_progress", "wait_for_deployment", "wait_for_job", "wait_for_leader_worker_set",
]
