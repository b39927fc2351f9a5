"""Named starting points: storage, download and serving specs that belong together, plus overrides.

``seed`` is the tutorial: PVC ``ai-model``, e5-mistral-7b-instruct downloaded by 3 parallel Jobs from
ModelScope, served on one L20 behind a public LoadBalancer on port 60000 (with an API key in a Secret).
``bge-m3`` serves BAAI/bge-m3 beside it, reachable inside the cluster only, on the newest checked vLLM (0.34.0);
the seed keeps the tutorial's v0.10.1 image.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import yaml

from ..specs.catalog import get_model
from ..specs.download import DownloadSpec
from ..specs.names import unknown
from ..specs.serving import LATEST_VLLM_IMAGE, ServiceType, ServingChoices, ServingSpec, resolve, seed_profile
from ..specs.storage import StorageSpec
from .plan import build_helm_values, build_plan, helm_values_notes, plan_notes
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
    serving = resolve(ServingChoices(model="BAAI/bge-m3", max_model_len=8192, service_type=ServiceType.CLUSTER_IP,
                                     gpu="L20", image=LATEST_VLLM_IMAGE))
    return Profile("bge-m3", "BAAI/bge-m3 beside the tutorial's model, ClusterIP only",
                   StorageSpec(), _download(model=serving.model, completions=1, parallelism=1), serving)


PROFILES = {"seed": _seed, "bge-m3": _bge_m3}


def get_profile(name: str) -> Profile:
    """A profile by name; did-you-mean otherwise."""
    factory = PROFILES.get(str(name).strip().lower())
    if factory is None:
        raise unknown("profile", str(name), list(PROFILES))
    return factory()


# the common options, and the field each spec names them by (a spec left out has no such field)
_COMMON = {"model": {"download": "model", "serving": "model"},
           "pvc": {"storage": "pvc_name", "download": "pvc", "serving": "pvc_name"},
           "namespace": {"storage": "namespace", "download": "namespace", "serving": "namespace"},
           "source": {"download": "source"}, "completions": {"download": "completions"},
           "parallelism": {"download": "parallelism"}}


def _common_changes(profile: Profile, options: dict, given: dict[str, dict]) -> dict[str, dict]:
    """Per spec, the field changes: ``given`` (each spec's own), then the common options over them (a new model
    keeps the length unless it cannot take it or ``given`` sets one; lowering completions alone lowers parallelism
    with it)."""
    changes = {spec: dict(given.get(spec) or {}) for spec in ("storage", "download", "serving")}
    if options["model"] is not None and "max_model_len" not in changes["serving"]:
        changes["serving"]["max_model_len"] = min(profile.serving.max_model_len,
                                                  get_model(options["model"]).max_tokens)
    completions = options["completions"]
    if options["parallelism"] is None and isinstance(completions, int) and completions >= 1:
        changes["download"]["parallelism"] = min(profile.download.parallelism, completions)
    for option, value in options.items():
        for spec, field in _COMMON[option].items():
            if value is not None:
                changes[spec][field] = value
    return changes


def with_overrides(profile: Profile, *, model=None, pvc=None, namespace=None, completions=None, parallelism=None,
                   source=None, storage=None, serving=None, download=None) -> Profile:
    """A copy with common options changed in every spec that has them. ``storage``/``serving``/``download`` are
    dicts of further field changes for that spec (for the serving spec: changes to the choices it was resolved from,
    resolved again). Lowering ``completions`` alone lowers ``parallelism`` with it."""
    changes = _common_changes(profile, {"model": model, "pvc": pvc, "namespace": namespace, "source": source,
                                        "completions": completions, "parallelism": parallelism},
                              {"storage": storage, "download": download, "serving": serving})
    st, dl, sv = profile.storage, profile.download, profile.serving
    st = dataclasses.replace(st, **changes["storage"]) if changes["storage"] else st
    dl = dl.replace(**changes["download"]) if changes["download"] else dl
    sv = resolve(sv.choices.replace(**changes["serving"])) if changes["serving"] else sv  # the choices, resolved
    return dataclasses.replace(profile, storage=st, download=dl, serving=sv)


def render_profile(profile: Profile | str = "seed", *, helm_values: bool = False, api_key: str | None = None,
                   show_secrets: bool = False, download_plan=None, notes: Sequence[str] = (),
                   key_salt: bytes | None = None) -> str:
    """The profile's plan as multi-document YAML with its notes as comments, or the chart's values as YAML.
    ``api_key`` is what the plan's API-key Secret holds (needed when the profile's serving requires a key;
    ``tke-playbook render`` takes ``$TKE_PLAYBOOK_API_KEY``, else draws one and says so in ``notes``, which are added
    to the plan's). Secret values are shown as ``<redacted>`` (safe to display or log) unless ``show_secrets=True``
    gives the appliable form. ``download_plan`` (from ``download.plan_download``) adds the download worker
    ConfigMap. ``key_salt`` keeps the pods' key-revision annotation stable for the same key (see
    ``manifests.serving.build_serving_objects``)."""
    profile = get_profile(profile) if isinstance(profile, str) else profile
    serving = profile.serving
    if helm_values:
        values = build_helm_values(serving)
        head = "".join(f"# {n}\n" for n in [f"values for helm-charts/vllm-inference-tke (profile {profile.name})",
                                             *helm_values_notes(serving)])
        return head + yaml.safe_dump(values, sort_keys=False, allow_unicode=True, width=2**20)
    manifests = build_plan(profile.storage, profile.download, serving, api_key=api_key, download_plan=download_plan,
                           key_salt=key_salt)
    notes = [f"tke-playbook plan, profile {profile.name}: {profile.description}",
             *plan_notes(profile.storage, profile.download, serving, download_plan=download_plan), *notes]
    if serving.api_key_required and not show_secrets:
        notes.append(f"Secret values are shown as {REDACTED}, so this YAML cannot be applied as it is: render with "
                     f"--show-secrets (show_secrets=True) for the appliable form, and keep that output private")
    return plan_to_yaml(manifests, notes, redact_secrets=not show_secrets)
