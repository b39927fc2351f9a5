"""The target-independent half of the facade: defaults, specs kept between notebooks, and the API key.

:class:`Playbook` is what every notebook holds (``pb = open_target()``). Its subclasses
(:class:`~tke_playbook.workflow.local.LocalPlaybook`, :class:`~tke_playbook.workflow.cluster.ClusterPlaybook`)
implement the same calls for each target, so a notebook never asks which target it runs on.
"""

from __future__ import annotations

import dataclasses
import enum
import os
from pathlib import Path
from typing import Any

from ..catalog import OFFLINE_MODEL, TUTORIAL_MODEL, get_model
from ..errors import DownloadError, InvalidSpecError
from ..target import Target, resolve_target, state_dir
from .state import SecretStore, StateStore, mask_secret

QUICK_ENV = "TKE_PLAYBOOK_QUICK"
NAMESPACE_ENV = "TKE_PLAYBOOK_NAMESPACE"


def quick_mode() -> bool:
    """True when ``TKE_PLAYBOOK_QUICK`` is set to 1/true/yes: notebooks trim request counts and sweeps."""
    return os.environ.get(QUICK_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def spec_to_dict(spec: Any) -> dict:
    """A frozen spec as plain JSON-able data (enums by value, tuples as lists)."""
    def plain(value):
        if isinstance(value, enum.Enum):
            return value.value
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, Path):
            return str(value)
        return value
    return {f.name: plain(getattr(spec, f.name)) for f in dataclasses.fields(spec)}


def spec_from_dict(kind: type, data: dict) -> Any:
    """Rebuild a spec recorded by :func:`spec_to_dict` (validation runs again)."""
    names = {f.name for f in dataclasses.fields(kind)}
    return kind(**{k: (tuple(tuple(x) if isinstance(x, list) else x for x in v) if isinstance(v, list) else v)
                   for k, v in data.items() if k in names})


def _yaml(docs: list[dict]) -> str:
    import yaml

    return yaml.safe_dump_all(docs, sort_keys=False, allow_unicode=True, default_flow_style=False)


class Playbook:
    """The steps of the tutorial, on one target. Subclasses implement the I/O."""

    target: Target

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else state_dir()
        self.state = StateStore(self.target, self.root)
        self.secrets = SecretStore(self.root)

    # --- construction -------------------------------------------------------------------------------------

    @staticmethod
    def from_env(target: str | Target | None = None, *, context: str | None = None,
                 root: Path | None = None) -> "Playbook":
        """The playbook for ``target``, else ``$TKE_PLAYBOOK_TARGET``, else cluster when a kubeconfig exists."""
        resolved = resolve_target(target)
        if resolved is Target.LOCAL:
            from .local import LocalPlaybook

            return LocalPlaybook(root=root)
        from .cluster import ClusterPlaybook

        return ClusterPlaybook(root=root, context=context)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(target={self.target.value!r}, state={str(self.state.path)!r})"

    def describe(self) -> str:
        """One sentence on where the steps run (shown when a notebook displays the playbook)."""
        return f"Target {self.target.value}; state kept in {self.state.path}."

    def _repr_html_(self) -> str:
        from .report import Level, Note

        return Note(self.describe(), Level.INFO)._repr_html_()

    # --- defaults -----------------------------------------------------------------------------------------

    @property
    def default_model(self) -> str:
        """The model a notebook uses when its MODEL parameter is empty."""
        return OFFLINE_MODEL if self.target is Target.LOCAL else TUTORIAL_MODEL

    def model(self, name: str | None = "") -> str:
        """``name`` as a catalog id, or the target's default model when empty."""
        return get_model(name).hf_id if name else self.default_model

    @property
    def namespace(self) -> str:
        return os.environ.get(NAMESPACE_ENV, "").strip() or "default"

    def storage_defaults(self, pvc_name: str = "") -> Any:
        """The tutorial's storage: a CFS StorageClass and PVC ``ai-model`` (or ``pvc_name``)."""
        from ..storage import StorageSpec

        return StorageSpec(pvc_name=pvc_name) if pvc_name else StorageSpec()

    def serving_defaults(self, model: str = "", **changes: Any) -> Any:
        """The seed profile (the tutorial's values) for ``model``, with max_model_len capped to the model's limit
        and the PVC recorded by notebook 01."""
        from ..serving import seed_profile

        info = get_model(self.model(model))
        spec = seed_profile().replace(model=info.hf_id, max_model_len=min(2048, info.max_tokens),
                                      namespace=self.namespace)
        storage = self.state.get("storage") or {}
        if storage.get("pvc_name") and "pvc_name" not in changes:
            changes["pvc_name"] = storage["pvc_name"]
        return spec.replace(**changes) if changes else spec

    def download_defaults(self, model: str = "", source: str = "", completions: int = 3, parallelism: int = 3):
        """A DownloadSpec for ``model`` (default: the target's) onto the recorded PVC; parallelism capped at
        completions. ``source`` empty: ModelScope on a cluster (as the tutorial), Hugging Face locally."""
        from ..download.spec import DownloadSpec, Source

        storage = self.state.get("storage") or {}
        hub = source or (Source.HUGGINGFACE.value if self.target is Target.LOCAL else Source.MODELSCOPE.value)
        return DownloadSpec(model=self.model(model), source=hub, completions=completions,
                            parallelism=min(parallelism, completions), pvc=storage.get("pvc_name", "ai-model"),
                            namespace=self.namespace)

    def _recorded_download(self):
        """The DownloadSpec the launch cell of 02 recorded (both targets)."""
        from ..download.spec import DownloadSpec

        data = (self.state.get("download") or {}).get("spec")
        if not data:
            raise DownloadError("No download was started: run the launch cell of 02_download_model first.")
        return spec_from_dict(DownloadSpec, data)

    # --- node type chosen in 00 ---------------------------------------------------------------------------

    def choose_node_type(self, node_type) -> Any:
        """Remember the GPU node type to serve on (the fit checks of later notebooks use it)."""
        self.state.put("node_type", node_type.name)
        self._node_type = node_type
        return node_type

    def node_type(self) -> Any:
        """The node type chosen in 00, else the tutorial's PNV5b.8XLARGE96 (or the first GPU node type)."""
        if getattr(self, "_node_type", None) is not None:
            return self._node_type
        name = self.state.get("node_type")
        nodes = [n for n in self.node_types() if getattr(n, "gpu", None)] or list(self.node_types())
        by_name = {n.name: n for n in nodes}
        return by_name.get(name) or by_name.get("PNV5b.8XLARGE96") or (nodes[0] if nodes else None)

    # --- what is applied, rendered for reading (no secret values) -----------------------------------------

    def render_storage(self, storage_spec) -> str:
        """The StorageClass (when the spec creates one) and the PVC, as YAML."""
        from ..storage import build_pvc, build_storage_class

        docs = ([build_storage_class(storage_spec)] if storage_spec.creates_storage_class else []) + [
            build_pvc(storage_spec)]
        head = "" if storage_spec.creates_storage_class else (
            f"# StorageClass '{storage_spec.storage_class}' is expected to exist (create it in the TKE console, type "
            f"CFS, in the GPU node's zone),\n# or give vpc_id and subnet_id to have it created.\n")
        return head + _yaml(docs)

    def render_serving(self, serving_spec) -> str:
        """The Secret (value hidden), the Deployment or LeaderWorkerSet and the Service, as YAML."""
        from ..serving import API_KEY_SECRET_KEY
        from ..serving_manifests import build_secret, build_service, build_workload

        docs = []
        if serving_spec.api_key_required:
            secret = build_secret(serving_spec, "hidden")
            secret["data"] = {API_KEY_SECRET_KEY: "<generated; kept in the Secret, not shown>"}
            docs.append(secret)
        docs.append(build_workload(serving_spec))
        if serving_spec.service_enabled:
            docs.append(build_service(serving_spec))
        return _yaml(docs)

    def helm_values(self, serving_spec) -> str:
        """The equivalent values.yaml for the tutorial's vllm-inference-tke chart (apiKey left out)."""
        from ..plan import build_helm_values

        return _yaml([build_helm_values(serving_spec)])

    # --- the API key --------------------------------------------------------------------------------------

    def api_key(self, serving_spec: Any) -> str | None:
        """The API key of a deployment (generated on first use and kept; None when no key is required)."""
        if not serving_spec.api_key_required:
            return None
        return self.secrets.ensure(serving_spec.api_key_secret)

    def masked_api_key(self, serving_spec: Any) -> str:
        return mask_secret(self.api_key(serving_spec))

    # --- recorded specs -----------------------------------------------------------------------------------

    def recorded_serving_spec(self) -> Any | None:
        """The serving spec the last deploy used (notebook 03), or None."""
        from ..serving import ServingSpec

        data = self.state.get("serving")
        if not data:
            return None
        try:
            return spec_from_dict(ServingSpec, data)
        except (InvalidSpecError, TypeError):
            return None

    def deployed_spec(self, model: str = "") -> Any | None:
        """The spec ``model`` was deployed with (default: the last deployment), or None."""
        from ..serving import ServingSpec

        if not model:
            return self.recorded_serving_spec()
        data = (self.state.get("deployments") or {}).get(get_model(model).hf_id)
        return spec_from_dict(ServingSpec, data) if data else None

    def _record_serving(self, spec: Any) -> None:
        self.state.put("serving", spec_to_dict(spec))
        deployments = self.state.get("deployments") or {}
        deployments[spec.model] = spec_to_dict(spec)
        self.state.put("deployments", deployments)

    # --- what each target implements ----------------------------------------------------------------------

    def preflight(self, model: str = ""):
        raise NotImplementedError

    def node_types(self):
        raise NotImplementedError

    def pvcs(self) -> list[str]:
        raise NotImplementedError

    def create_storage(self, storage_spec):
        raise NotImplementedError

    def deploy(self, serving_spec):
        raise NotImplementedError

    def deployment_logs(self, lines: int = 20) -> str:
        raise NotImplementedError

    def diagnose(self) -> Any:
        """Plain-words findings in the deployment's log tail (model not found, CUDA out of memory, ...)."""
        import pandas as pd

        from ..cluster.diagnose import diagnose_log

        found = diagnose_log(self.deployment_logs(200), "serving")
        if not found:
            return pd.DataFrame([{"severity": "ok", "finding": "nothing wrong in the log tail", "what to do": ""}])
        return pd.DataFrame([{"severity": d.severity.value, "finding": f"{d.problem}. {d.explanation}",
                              "what to do": d.action, "seen": d.evidence.strip()[:200]} for d in found])

    def comparison_pair(self, model_a: str = "", model_b: str = ""):
        raise NotImplementedError

    def endpoint(self):
        raise NotImplementedError

    def teardown(self, keep_pvc: bool = True):
        raise NotImplementedError
