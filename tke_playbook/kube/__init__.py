"""Cluster operations over the official kubernetes client: apply, wait, inventory, diagnosis, endpoint,
preflight and teardown. Every I/O function takes a :class:`Kube` (from :func:`connect`) first."""

from ..specs.diagnosis import Diagnosis, Severity, diagnose_log, diagnose_pod, diagnose_pvc, format_diagnoses
from .apply import Cascade, apply, apply_all, delete, get, list_objects
from .client import Kube, ObjectRef, connect
from .endpoint import Endpoint, PortForward, get_endpoint, plan_endpoint, port_forward, read_api_key
from .explain import explain_pvc, wait_for_pvc_bound
from .inventory import (NodeInfo, cfs_storage_classes, list_nodes, list_pods, list_pvcs, list_storage_classes,
                        nodes_frame, pod_events, pod_logs)
from .preflight import CheckRow, PreflightReport, preflight, run_preflight
from .teardown import find_created, teardown
from .wait import JobProgress, RolloutState, job_progress, wait_for_deployment, wait_for_job, wait_for_leader_worker_set

__all__ = [
    "Cascade", "apply", "apply_all", "delete", "get", "list_objects", "Kube", "ObjectRef", "connect", "Diagnosis",
    "Severity", "diagnose_log", "diagnose_pod", "diagnose_pvc", "format_diagnoses", "Endpoint", "PortForward",
    "get_endpoint", "plan_endpoint", "port_forward", "read_api_key", "explain_pvc",
    "wait_for_pvc_bound", "NodeInfo", "cfs_storage_classes", "list_nodes", "list_pods", "list_pvcs",
    "list_storage_classes", "nodes_frame", "pod_events", "pod_logs", "CheckRow", "PreflightReport", "preflight",
    "run_preflight", "find_created", "teardown", "JobProgress", "RolloutState", "job_progress",
    "wait_for_deployment", "wait_for_job", "wait_for_leader_worker_set",
]
