"""A serving deployment in one call: build its objects, apply them, wait until it is ready, find its endpoint.

:func:`roll_out` is what ``pb.serving.deploy(spec)`` hands the cluster: the playbook's step goes down the layers
once (here, then :mod:`tke_playbook.manifests` for the objects, then the API server) and comes back up once with
the :class:`~tke_playbook.kube.endpoint.Endpoint`. What the wait sees - each log line, each diagnosis - goes to the
reporter (a lower layer: nothing here calls back up into the playbook).
"""

from __future__ import annotations

from ..manifests.serving import build_serving_objects
from ..reporting import Event, Level, Reporter, waiting
from ..specs.serving import ServingSpec
from .apply import apply_all
from .client import Kube
from .endpoint import Endpoint, get_endpoint
from .wait import wait_for_deployment, wait_for_leader_worker_set


def roll_out(kube: Kube, spec: ServingSpec, api_key: str | None, key_salt: bytes | None = None, *,
             timeout: float | None = None, reporter: Reporter) -> Endpoint:
    """Apply every serving object of ``spec`` (the API-key Secret with ``api_key``, the auth-proxy ConfigMap for a
    public load balancer, the Deployment or LeaderWorkerSet - its key revision an HMAC under ``key_salt`` -, the
    Service), follow the pods' log until ready (``timeout`` s, default the spec's ``startup_timeout_s``; log lines
    and diagnoses to ``reporter``), and return where the Service answers. A failure raises DeploymentFailedError
    with the log tail and the diagnosis."""
    apply_all(kube, build_serving_objects(spec, api_key, key_salt))
    wait = wait_for_leader_worker_set if spec.is_multi_node else wait_for_deployment
    with waiting(reporter, f"Waiting for {spec.name} to become ready (log lines follow)"):
        wait(kube, spec.name, spec.namespace, timeout or spec.startup_timeout_s,
             on_log=lambda line: reporter.event(Event(line, Level.INFO, "deploy")),
             on_diagnosis=lambda found: reporter.event(Event(str(found), Level.WARNING, "deploy")))
    return get_endpoint(kube, spec.name, spec.namespace, spec.service_port)
