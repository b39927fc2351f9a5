"""Scale-out objects for the vLLM Deployment: PodDisruptionBudget, topology spread, and an autoscaler on vLLM's queue.

With more than one replica: a PodDisruptionBudget (``maxUnavailable: 1``, so a node drain never takes every
replica at once) and a topology spread over nodes (``ScheduleAnyway``: GPU nodes are scarce, a replica should rather
share a node than stay Pending). An optional autoscaler follows ``vllm:num_requests_waiting`` (requests queued in
vLLM, per pod):

- ``hpa`` (the default, validated against the Kubernetes 1.28/1.33 schemas): an ``autoscaling/v2``
  HorizontalPodAutoscaler on an External metric. It needs an external metrics API - APIService
  ``v1beta1.external.metrics.k8s.io`` - served by prometheus-adapter with :func:`build_adapter_rule` in its
  ``externalRules``, and Prometheus scraping the pods with the pod label ``app.kubernetes.io/instance`` copied
  onto the series (:func:`build_pod_monitor` for the Prometheus Operator / TKE managed Prometheus).
- ``keda``: a KEDA ``ScaledObject`` (keda.sh/v1alpha1) with a Prometheus trigger. It needs KEDA installed (CRD
  ``scaledobjects.keda.sh``) and a Prometheus address, e.g. TKE managed Prometheus. No KEDA schema is available
  offline: the toolkit checks its structure only.

A scale-up only helps if a GPU is free: pair the autoscaler with node-pool autoscaling on the GPU pool.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from ..errors import InvalidSpecError
from ..specs import labels as L
from ..specs.plain import PlainSpec
from ..specs.serving import ServingSpec
from .serving import selector_labels
from .yamldoc import plan_to_yaml

WAITING_METRIC = "vllm:num_requests_waiting"
EXTERNAL_METRIC = "vllm_num_requests_waiting"   # the name prometheus-adapter exposes it under (colons renamed)
INSTANCE_SERIES_LABEL = "app_kubernetes_io_instance"  # app.kubernetes.io/instance as a Prometheus label
EXTERNAL_METRICS_APISERVICE = "v1beta1.external.metrics.k8s.io"
KEDA_CRD = "scaledobjects.keda.sh"
KEDA_API_VERSION = "keda.sh/v1alpha1"
POD_MONITOR_API_VERSION = "monitoring.coreos.com/v1"
ZONE_KEY = "topology.kubernetes.io/zone"
HOST_KEY = "kubernetes.io/hostname"


class Autoscaler(str, enum.Enum):
    NONE = "none"
    HPA = "hpa"
    KEDA = "keda"


def _whole(value, what: str, least: int, example: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise InvalidSpecError(f"{what} {value!r} must be a whole number of at least {least}, such as {example}",
                               field=what, value=value)
    return value


@dataclass(frozen=True)
class ScaleOutSpec(PlainSpec):
    """How the Deployment scales: ``min_replicas``..``max_replicas`` with an ``autoscaler`` keeping about
    ``waiting_per_pod`` requests queued per pod; spread over nodes (and zones when ``spread_zones``)."""

    autoscaler: Autoscaler = Autoscaler.NONE
    min_replicas: int = 1
    max_replicas: int = 1
    waiting_per_pod: float = 5.0
    spread_zones: bool = False
    prometheus_url: str | None = None   # KEDA's Prometheus server address
    scale_down_window_s: int = 300
    polling_interval_s: int = 15

    def __post_init__(self):
        try:
            object.__setattr__(self, "autoscaler", Autoscaler(str(getattr(self.autoscaler, "value",
                                                                          self.autoscaler)).lower()))
        except ValueError:
            raise InvalidSpecError(f"autoscaler {self.autoscaler!r} is not known: use 'none', 'hpa' or 'keda'",
                                   field="autoscaler", value=self.autoscaler) from None
        _whole(self.min_replicas, "min_replicas", 1, 1)
        _whole(self.max_replicas, "max_replicas", self.min_replicas, max(2, self.min_replicas))
        _whole(self.scale_down_window_s, "scale_down_window_s", 0, 300)
        _whole(self.polling_interval_s, "polling_interval_s", 1, 15)
        value = self.waiting_per_pod
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or not math.isfinite(value):
            raise InvalidSpecError(f"waiting_per_pod {value!r} must be a positive number, such as 5",
                                   field="waiting_per_pod", value=value)
        if self.autoscaler is Autoscaler.KEDA and not (self.prometheus_url or "").startswith(("http://", "https://")):
            raise InvalidSpecError("a KEDA Prometheus trigger needs prometheus_url, e.g. "
                                   "'http://prometheus-operated.monitoring:9090' (TKE managed Prometheus: its "
                                   "in-VPC address)", field="prometheus_url", value=self.prometheus_url)
        if self.autoscaler is not Autoscaler.NONE and self.max_replicas == self.min_replicas:
            raise InvalidSpecError(f"an autoscaler needs max_replicas above min_replicas ({self.min_replicas})",
                                   field="max_replicas", value=self.max_replicas)


def _meta(spec: ServingSpec, name: str) -> dict:
    return {"name": name, "namespace": spec.namespace,
            "labels": {**dict(spec.labels), **L.common_labels(L.Component.SERVING, spec.name, spec.model)}}


def build_pdb(spec: ServingSpec) -> dict:
    """A PodDisruptionBudget letting voluntary disruptions (drains, upgrades) take one replica at a time."""
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": _meta(spec, spec.name),
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector_labels(spec)}}}


def topology_spread(spec: ServingSpec, *, zones: bool = False) -> list[dict]:
    """Spread replicas over nodes (and zones): soft (``ScheduleAnyway``) so a replica never waits for a node."""
    keys = [HOST_KEY] + ([ZONE_KEY] if zones else [])
    return [{"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": "ScheduleAnyway",
             "labelSelector": {"matchLabels": selector_labels(spec)}} for key in keys]


def with_topology_spread(deployment: dict, spec: ServingSpec, *, zones: bool = False) -> dict:
    """A copy of ``deployment`` whose pod template carries :func:`topology_spread`."""
    template = deployment["spec"]["template"]
    pod = {**template["spec"], "topologySpreadConstraints": topology_spread(spec, zones=zones)}
    return {**deployment, "spec": {**deployment["spec"], "template": {**template, "spec": pod}}}


def _target_kind(spec: ServingSpec) -> tuple[str, str]:
    if spec.is_multi_node:
        raise InvalidSpecError("autoscaling a LeaderWorkerSet is not supported by the toolkit: use lws_group_size 1",
                               field="lws_group_size", value=spec.lws_group_size)
    return "apps/v1", "Deployment"


def build_hpa(spec: ServingSpec, scale: ScaleOutSpec) -> dict:
    """An autoscaling/v2 HPA on the External metric ``vllm_num_requests_waiting`` (average per pod)."""
    api_version, kind = _target_kind(spec)
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": _meta(spec, spec.name),
            "spec": {
                "scaleTargetRef": {"apiVersion": api_version, "kind": kind, "name": spec.name},
                "minReplicas": scale.min_replicas, "maxReplicas": scale.max_replicas,
                "metrics": [{"type": "External", "external": {
                    "metric": {"name": EXTERNAL_METRIC,
                               "selector": {"matchLabels": {INSTANCE_SERIES_LABEL: spec.name}}},
                    "target": {"type": "AverageValue", "averageValue": f"{scale.waiting_per_pod:g}"}}}],
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": scale.scale_down_window_s}}}}


def waiting_query(spec: ServingSpec) -> str:
    """PromQL: requests waiting in this Deployment's vLLM pods."""
    return (f'sum({WAITING_METRIC}{{namespace="{spec.namespace}",{INSTANCE_SERIES_LABEL}="{spec.name}"}})')


def build_scaled_object(spec: ServingSpec, scale: ScaleOutSpec) -> dict:
    """A KEDA ScaledObject with a Prometheus trigger on the waiting requests (per-pod threshold)."""
    _target_kind(spec)
    return {"apiVersion": KEDA_API_VERSION, "kind": "ScaledObject", "metadata": _meta(spec, spec.name),
            "spec": {"scaleTargetRef": {"name": spec.name}, "minReplicaCount": scale.min_replicas,
                     "maxReplicaCount": scale.max_replicas, "pollingInterval": scale.polling_interval_s,
                     "cooldownPeriod": scale.scale_down_window_s,
                     "triggers": [{"type": "prometheus", "metadata": {
                         "serverAddress": scale.prometheus_url, "query": waiting_query(spec),
                         "threshold": f"{scale.waiting_per_pod:g}"}}]}}


def build_pod_monitor(spec: ServingSpec) -> dict:
    """A Prometheus Operator PodMonitor scraping vLLM's /metrics and copying the instance label onto the series."""
    return {"apiVersion": POD_MONITOR_API_VERSION, "kind": "PodMonitor", "metadata": _meta(spec, spec.name),
            "spec": {"selector": {"matchLabels": selector_labels(spec)}, "podTargetLabels": [L.INSTANCE],
                     "podMetricsEndpoints": [{"port": "http", "path": "/metrics", "interval": "15s"}]}}


def build_adapter_rule() -> dict:
    """The prometheus-adapter ``externalRules`` entry exposing ``vllm:num_requests_waiting`` as
    ``vllm_num_requests_waiting`` (namespaced, summed over the selected pods)."""
    return {"seriesQuery": f'{WAITING_METRIC}{{namespace!="",{INSTANCE_SERIES_LABEL}!=""}}',
            "resources": {"overrides": {"namespace": {"resource": "namespace"}}},
            "name": {"matches": f"^{WAITING_METRIC}$", "as": EXTERNAL_METRIC},
            "metricsQuery": "sum(<<.Series>>{<<.LabelMatchers>>})"}


def build_scale_out(spec: ServingSpec, scale: ScaleOutSpec | None = None) -> list[dict]:
    """The scale-out objects for ``spec``: PDB when it may run more than one replica, then the autoscaler."""
    scale = scale or ScaleOutSpec(min_replicas=spec.replicas, max_replicas=spec.replicas)
    out = []
    if max(spec.replicas, scale.max_replicas) > 1:
        out.append(build_pdb(spec))
    if scale.autoscaler is Autoscaler.HPA:
        out.append(build_hpa(spec, scale))
    elif scale.autoscaler is Autoscaler.KEDA:
        out.append(build_scaled_object(spec, scale))
    return out


def requirements(scale: ScaleOutSpec) -> list[str]:
    """What the cluster needs installed for ``scale``, in words."""
    if scale.autoscaler is Autoscaler.HPA:
        return [f"an external metrics API (APIService {EXTERNAL_METRICS_APISERVICE}): prometheus-adapter with the "
                f"externalRules entry from build_adapter_rule()",
                "Prometheus scraping the vLLM pods with the app.kubernetes.io/instance label (build_pod_monitor())",
                "free GPUs for new replicas: enable autoscaling on the GPU node pool"]
    if scale.autoscaler is Autoscaler.KEDA:
        return [f"KEDA (CRD {KEDA_CRD}): helm install keda kedacore/keda -n keda --create-namespace",
                f"Prometheus at {scale.prometheus_url} scraping the vLLM pods with the app.kubernetes.io/instance "
                f"label (build_pod_monitor(); TKE managed Prometheus works)",
                "free GPUs for new replicas: enable autoscaling on the GPU node pool"]
    return []


def render_scale_out(spec: ServingSpec, scale: ScaleOutSpec) -> str:
    """The scale-out objects as YAML, led by comments saying what the cluster needs installed."""
    objects = build_scale_out(spec, scale)
    if not objects:
        return "# one replica and no autoscaler: nothing to add"
    return plan_to_yaml(objects, ["needs: " + r for r in requirements(scale)])


def add_scale_out(manifests: list[dict], spec: ServingSpec, scale: ScaleOutSpec | None = None) -> list[dict]:
    """``manifests`` (a plan) with the scale-out objects for ``spec`` appended and, when it may run more than one
    replica, its Deployment spread over nodes. Under an autoscaler the Deployment leaves ``replicas`` out, so a
    re-apply does not reset what the autoscaler chose. The inputs are not changed."""
    scale = scale or ScaleOutSpec(min_replicas=spec.replicas, max_replicas=spec.replicas)
    several = max(spec.replicas, scale.max_replicas) > 1
    out = []
    for manifest in manifests:
        is_ours = manifest.get("kind") == "Deployment" and manifest.get("metadata", {}).get("name") == spec.name
        if is_ours and several:
            manifest = with_topology_spread(manifest, spec, zones=scale.spread_zones)
        if is_ours and scale.autoscaler is not Autoscaler.NONE:
            manifest = {**manifest, "spec": {k: v for k, v in manifest["spec"].items() if k != "replicas"}}
        out.append(manifest)
    return out + build_scale_out(spec, scale)
