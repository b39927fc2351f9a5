"""Named starting points: storage, download and serving specs that belong together, plus overrides.

``seed`` is the tutorial: PVC ``ai-model``, e5-mistral-7b-instruct downloaded by 3 parallel Jobs from
ModelScope, served on one L20 behind a public LoadBalancer on port 60000 (with an API key in a Secret).
``bge-m3`` serves BAAI/bge-m3 beside it, reachable inside the cluster only, on the newest checked vLLM (0.33.0);
the seed keeps the tutorial's v0.10.1 image.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import yaml

from ..specs.catalog import get_model
from ..specs.download import DownloadSpec
from ..specs.names import unknown
from ..specs.serving import LATEST_VLLM_IMAGE, ServiceType, ServingSpec, seed_profile
from ..specs.storage import StorageSpec
from .plan import API_KEY_ENV, build_helm_values, build_plan, helm_values_notes, plan_notes
from .yamldoc import REDACTED, plan_to_yaml


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    storage: StorageSpec
    download: object  # tke_playbook.specs.download.DownloadSpec
    serving: ServingSpec


def _download(**kwargs):
    return DownloadSpec(**kwargs)


def _seed() -> Profile:
    serving = seed_profile()
    return Profile("seed", "the tutorial: e5-mistral-7b-instruct on one L20 (PNV5b.8XLARGE96), PVC ai-model",
                   StorageSpec(), _download(model=serving.model, completions=3, parallelism=3), serving)


def _bge_m3() -> Profile:
    serving = ServingSpec(model="BAAI/bge-m3", max_model_len=8192, service_type=ServiceType.CLUSTER_IP, gpu="L20",
                          image=LATEST_VLLM_IMAGE)
    return Profile("bge-m3", "BAAI/bge-m3 beside the tutorial's model, ClusterIP only",
                   StorageSpec(), _download(model=serving.model, completions=1, parallelism=1), serving)


PROFILES = {"seed": _seed, "bge-m3": _bge_m3}


def get_profile(name: str) -> Profile:
    """A profile by name; did-you-mean otherwise."""
    factory = PROFILES.get(str(name).strip().lower())
    if factory is None:
        raise unknown("profile", str(name), list(PROFILES))
    return factory()


def with_overrides(profile: Profile, *, model=None, pvc=None, namespace=None, completions=None, parallelism=None,
                   source=None, storage=None, serving=None, download=None) -> Profile:
    """A copy with common options changed in every spec that has them. ``storage``/``serving``/``download`` are
    dicts of further field changes for that spec. Lowering ``completions`` alone lowers ``parallelism`` with it."""
    st, dl, sv = profile.storage, profile.download, profile.serving
    st_changes, dl_changes, sv_changes = dict(storage or {}), dict(download or {}), dict(serving or {})
    if model is not None:
        dl_changes["model"] = sv_changes["model"] = model
        if "max_model_len" not in sv_changes:  # keep the length unless the new model cannot take it
            sv_changes["max_model_len"] = min(sv.max_model_len, get_model(model).max_tokens)
    if pvc is not None:
        st_changes["pvc_name"] = dl_changes["pvc"] = sv_changes["pvc_name"] = pvc
    if namespace is not None:
        st_changes["namespace"] = dl_changes["namespace"] = sv_changes["namespace"] = namespace
    if source is not None:
        dl_changes["source"] = source
    if completions is not None:
        dl_changes["completions"] = completions
        if parallelism is None and isinstance(completions, int) and completions >= 1:
            dl_changes["parallelism"] = min(dl.parallelism, completions)
    if parallelism is not None:
        dl_changes["parallelism"] = parallelism
    if st_changes:
        st = dataclasses.replace(st, **st_changes)
    if dl_changes:
        dl = dl.replace(**dl_changes)
    if sv_changes:
        sv = sv.replace(**sv_changes)
    return dataclasses.replace(profile, storage=st, download=dl, serving=sv)


def render_profile(profile: Profile | str = "seed", *, helm_values: bool = False, api_key: str | None = None,
                   show_secrets: bool = False, download_plan=None, key_salt: bytes | None = None) -> str:
    """The profile's plan as multi-document YAML with its notes as comments, or the chart's values as YAML.
    Without ``api_key`` the plan's Secret takes ``$TKE_PLAYBOOK_API_KEY``, else a random key. Secret values are
    shown as ``<redacted>`` (safe to display or log) unless ``show_secrets=True`` gives the appliable form.
    ``download_plan`` (from ``download.plan_download``) adds the download worker ConfigMap. ``key_salt`` keeps the
    pods' key-revision annotation stable for the same key (see ``manifests.serving.build_serving_objects``)."""
    profile = get_profile(profile) if isinstance(profile, str) else profile
    serving = profile.serving
    if helm_values:
        values = build_helm_values(serving)
        head = "".join(f"# {n}\n" for n in [f"values for helm-charts/vllm-inference-tke (profile {profile.name})",
                                             *helm_values_notes(serving)])
        return head + yaml.safe_dump(values, sort_keys=False, allow_unicode=True, width=2**20)
    notes = [f"tke-playbook plan, profile {profile.name}: {profile.description}",
             *plan_notes(profile.storage, profile.download, serving, download_plan=download_plan)]
    given = api_key if api_key is not None else os.environ.get(API_KEY_ENV) or None
    manifests = build_plan(profile.storage, profile.download, serving, api_key=api_key, download_plan=download_plan,
                           key_salt=key_salt)
    if serving.api_key_required and not given:
        notes.append(f"no ${API_KEY_ENV}: a random API key was generated into Secret '{serving.api_key_secret}'; "
                     f"applying a plan with a new key restarts vLLM with it (set ${API_KEY_ENV} to keep one key)")
    if serving.api_key_required and not show_secrets:
        notes.append(f"Secret values are shown as {REDACTED}, so this YAML cannot be applied as it is: render with "
                     f"--show-secrets (show_secrets=True) for the appliable form, and keep that output private")
    return plan_to_yaml(manifests, notes, redact_secrets=not show_secrets)
