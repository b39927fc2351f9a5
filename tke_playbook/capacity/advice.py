"""Tuning on either target with one call: on a cluster, vLLM flags from the sweep applied to the ServingSpec (the
plan is re-rendered from the tuned spec); locally, the tuning loop over the local server's batching settings."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..manifests.serving import build_workload
from ..manifests.yamldoc import plan_to_yaml, redact_secrets
from ..specs.serving import ServingSpec
from ..specs.target import Target
from .efficiency import model_flops_utilisation
from .local import LocalTuning, tune_local
from .tuning import TuningAdvice, recommend_vllm

QUICK_SEARCH = {"concurrency": (1, 4), "ceiling_level_s": 1.0, "fractions": (0.3, 0.6), "level_s": 1.0,
                "min_requests": 15, "max_level_s": 2.0}


@dataclass
class TuningOutcome:
    """``advice`` and the tuned ``spec`` on a cluster; ``local`` (every setting tried) on the local target."""

    target: Target
    advice: TuningAdvice | None = None
    spec: ServingSpec | None = None
    local: LocalTuning | None = None

    def table(self) -> pd.DataFrame:
        if self.local is not None:
            return self.local.table()
        return self.advice.table()

    @property
    def flags(self) -> str:
        """The recommended command-line flags (vLLM's, or ``tke-playbook serve``'s locally)."""
        if self.local is not None:
            return self.local.best[0].flags
        return self.advice.flags

    def rendered(self) -> str:
        """What applying it looks like: the re-rendered workload YAML (cluster) or the serve command (local)."""
        if self.local is not None:
            return self.local.verdict()
        if not self.advice.recommendations:
            return "# no change recommended: " + " ".join(self.advice.notes)
        return plan_to_yaml(redact_secrets([build_workload(self.spec)]), [f"tuned: {self.advice.flags}"])


def tune_for_target(target: Target | str, summary: pd.DataFrame, spec: ServingSpec | None, p99_target_ms: float,
                    *, gpu: str | None = None, quick: bool = False, baseline=None,
                    **search_options) -> TuningOutcome:
    """Cluster: recommend vLLM flags from a closed-loop ``summary`` (``LoadResult.table()``) and apply them to
    ``spec``. Local: run the tuning loop at ``p99_target_ms``, starting from ``baseline`` (a search against the
    running server, which uses the default settings) when given (``quick``: no other settings, short levels)."""
    kind = Target(getattr(target, "value", target))
    if kind is Target.LOCAL:
        options = {**(QUICK_SEARCH if quick else {}), **search_options}
        options.setdefault("candidates", [] if quick else None)
        return TuningOutcome(kind, local=tune_local(p99_target_ms, baseline=baseline, **options))
    best = summary.loc[summary["tokens_per_s"].astype(float).idxmax()] if len(summary) else None
    gpu = gpu or getattr(spec, "gpu", None)
    mfu = model_flops_utilisation(float(best["tokens_per_s"]), spec.model, gpu) if best is not None and gpu else None
    advice = recommend_vllm(summary, spec, mfu=mfu)
    return TuningOutcome(kind, advice=advice, spec=advice.apply(spec))
