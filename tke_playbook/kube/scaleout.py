"""Preflight for the autoscaler: is what it needs installed? Rows in the cluster preflight's format.

HPA on an External metric: the APIService ``v1beta1.external.metrics.k8s.io`` must exist and be Available (served
by prometheus-adapter, KEDA's metrics server or a cloud adapter). KEDA: the ``scaledobjects.keda.sh`` CRD.
A failing check never raises: it becomes a failed row saying what to install.
"""

from __future__ import annotations

from ..manifests.scaleout import EXTERNAL_METRICS_APISERVICE, KEDA_CRD, Autoscaler, ScaleOutSpec
from ..specs.objects import APIService
from .client import Kube
from .preflight import CheckRow, PreflightReport

ADAPTER_INSTALL = ("helm install prometheus-adapter prometheus-community/prometheus-adapter -n monitoring with the "
                   "externalRules entry from tke_playbook.scaleout.build_adapter_rule() (or install KEDA and use "
                   "autoscaler='keda')")
KEDA_INSTALL = "helm repo add kedacore https://kedacore.github.io/charts && helm install keda kedacore/keda -n keda " \
               "--create-namespace"


def _status(exc: Exception) -> int | None:
    return getattr(exc, "status", None)


def _available(apiservice: APIService) -> tuple[bool, str]:
    available = apiservice.condition("Available")
    if available is None:
        return False, "reports no Available condition"
    if not available.true:
        return False, f"is not Available ({available.reason or 'no reason'}: {available.message})"
    return True, "is Available"


def external_metrics_row(kube: Kube) -> CheckRow:
    """The external metrics API an HPA on an External metric reads."""
    name = "external metrics API"
    try:
        apiservice = kube.custom.get_cluster_custom_object("apiregistration.k8s.io", "v1", "apiservices",
                                                           EXTERNAL_METRICS_APISERVICE)
    except Exception as exc:  # noqa: BLE001 - every failure is a row
        if _status(exc) == 404:
            return CheckRow(name, False, f"APIService {EXTERNAL_METRICS_APISERVICE} is not registered: nothing "
                                         f"serves external metrics", ADAPTER_INSTALL)
        return CheckRow(name, False, f"could not read APIService {EXTERNAL_METRICS_APISERVICE}: {exc}",
                        "Check the kubeconfig's permissions (get apiservices).")
    apiservice = APIService.of(apiservice)
    ok, words = _available(apiservice)
    by = f" (served by {apiservice.service_namespace}/{apiservice.service_name})" if apiservice.service_name else ""
    return CheckRow(name, ok, f"APIService {EXTERNAL_METRICS_APISERVICE} {words}{by}",
                    "" if ok else "Fix the adapter behind it (its pods and logs), or reinstall: " + ADAPTER_INSTALL)


def keda_row(kube: Kube) -> CheckRow:
    """The KEDA CRD a ScaledObject needs."""
    try:
        kube.apiext.read_custom_resource_definition(KEDA_CRD)
    except Exception as exc:  # noqa: BLE001
        if _status(exc) == 404:
            return CheckRow("KEDA", False, f"CRD {KEDA_CRD} is not installed", f"Install KEDA: {KEDA_INSTALL}")
        return CheckRow("KEDA", False, f"could not read CRD {KEDA_CRD}: {exc}",
                        "Check the kubeconfig's permissions (get customresourcedefinitions).")
    return CheckRow("KEDA", True, f"CRD {KEDA_CRD} installed")


def autoscaler_rows(kube: Kube, scale: ScaleOutSpec | str) -> list[CheckRow]:
    """The rows for the chosen autoscaler (none for 'none')."""
    kind = scale.autoscaler if isinstance(scale, ScaleOutSpec) else Autoscaler(str(scale).lower())
    if kind is Autoscaler.HPA:
        return [external_metrics_row(kube)]
    if kind is Autoscaler.KEDA:
        return [keda_row(kube)]
    return []


def check_autoscaler(kube: Kube, scale: ScaleOutSpec | str) -> PreflightReport:
    """A preflight report for the autoscaler's prerequisites."""
    return PreflightReport(tuple(autoscaler_rows(kube, scale)))
