"""Labels every object the toolkit creates carries, so teardown and diagnosis can find them again."""

from __future__ import annotations

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


def selector(component: str | None = None, instance: str | None = None) -> str:
    """A label selector string for everything the toolkit made, optionally narrowed to one component/instance."""
    parts = [f"{MANAGED_BY}={TOOL}"]
    if component:
        parts.append(f"{COMPONENT}={component}")
    if instance:
        parts.append(f"{INSTANCE}={instance}")
    return ",".join(parts)
