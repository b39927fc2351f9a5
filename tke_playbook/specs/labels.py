"""Labels every object the toolkit creates carries, so teardown and diagnosis can find them again."""

from __future__ import annotations

from collections.abc import Mapping

from .names import slug

MANAGED_BY = "app.kubernetes.io/managed-by"
PART_OF = "app.kubernetes.io/part-of"
COMPONENT = "app.kubernetes.io/component"
INSTANCE = "app.kubernetes.io/instance"
MODEL = "tke-playbook.io/model"
TOOL = "tke-playbook"


class Component:
    STORAGE = "storage"
    DOWNLOAD = "download"
    SERVING = "serving"


def common_labels(component: str, instance: str, model: str | None = None) -> dict[str, str]:
    """Labels for one object: who manages it, which part it is, which instance (e.g. a Job or Deployment name)."""
    labels = {MANAGED_BY: TOOL, PART_OF: TOOL, COMPONENT: component, INSTANCE: instance}
    if model:
        labels[MODEL] = slug(model, max_length=63)
    return labels


def selector(component: str | None = None, instance: str | None = None, model: str | None = None) -> str:
    """A label selector string for everything the toolkit made, optionally narrowed to one component, instance
    or model."""
    wanted = {MANAGED_BY: TOOL, COMPONENT: component, INSTANCE: instance,
              MODEL: slug(model, max_length=63) if model else None}
    return _join({key: value for key, value in wanted.items() if value})


def selector_matching(labels: Mapping[str, str] | None) -> str:
    """The selector string matching all of ``labels`` (a workload's ``matchLabels``, a Service's selector), in
    key order; '' for none."""
    return _join(dict(sorted((labels or {}).items())))


def _join(labels: Mapping[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in labels.items())
