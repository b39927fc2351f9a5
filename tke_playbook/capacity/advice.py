"""Tuning, as one shape for both targets: a :class:`Tuning` has a table, the recommended flags and what applying
them looks like. Two strategies make one, and the serving step of each target picks its own (nothing here asks
which target it runs on):

- :func:`tune_vllm` (a cluster): vLLM flags from a closed-loop sweep, applied to the ServingSpec - the workload is
  re-rendered from the tuned spec (:class:`VllmTuning`);
- :func:`tune_local_server` (the local target): the tuning loop over the local server's batching settings, each
  measured on a fresh server (:class:`LocalServerTuning`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import pandas as pd

from ..manifests.serving import build_workload
from ..manifests.yamldoc import plan_to_yaml
from ..specs.serving import ServingSpec
from .efficiency import model_flops_utilisation
from .local import LocalTuning, tune_local
from .search import RateSearch
from .tuning import TuningAdvice, recommend_vllm

QUICK_SEARCH = {"concurrency": (1, 4), "ceiling_level_s": 1.0, "fractions": (0.3, 0.6), "level_s": 1.0,
                "min_requests": 15, "max_level_s": 2.0}


@runtime_checkable
class Tuning(Protocol):
    """What a tuning recommends: every setting considered (:meth:`table`), the ``flags`` to use, and what applying
    them looks like (:meth:`rendered`)."""

    @property
    def flags(self) -> str: ...

    def table(self) -> pd.DataFrame: ...

    def rendered(self) -> str: ...


@dataclass
class VllmTuning:
    """vLLM flags from a sweep (``advice``) and the serving ``spec`` they make."""

    advice: TuningAdvice
    spec: ServingSpec

    @property
    def flags(self) -> str:
        return self.advice.flags

    def table(self) -> pd.DataFrame:
        return self.advice.table()

    def rendered(self) -> str:
        """The re-rendered workload YAML (deploy the tuned spec from 03 to apply it)."""
        if not self.advice.recommendations:
            return "# no change recommended: " + " ".join(self.advice.notes)
        return plan_to_yaml([build_workload(self.spec)], [f"tuned: {self.advice.flags}"], redact_secrets=True)


@dataclass
class LocalServerTuning:
    """Every local server setting measured (``local``) and the best one."""

    local: LocalTuning

    @property
    def flags(self) -> str:
        """``tke-playbook serve``'s flags of the best setting."""
        return self.local.best[0].flags

    def table(self) -> pd.DataFrame:
        return self.local.table()

    def rendered(self) -> str:
        """The serve command of the best setting, and by how much it beats the defaults."""
        return self.local.verdict()


def tune_vllm(summary: pd.DataFrame, spec: ServingSpec, *, gpu: str | None = None) -> VllmTuning:
    """Recommend vLLM flags from a closed-loop ``summary`` (``LoadResult.table()``) of the deployment of ``spec``,
    with its MFU on ``gpu`` (default: the spec's), and apply them to ``spec``."""
    best = summary.loc[summary["tokens_per_s"].astype(float).idxmax()] if len(summary) else None
    gpu = gpu or spec.gpu
    mfu = model_flops_utilisation(float(best["tokens_per_s"]), spec.model, gpu) if best is not None and gpu else None
    advice = recommend_vllm(summary, spec, mfu=mfu)
    return VllmTuning(advice, advice.apply(spec))


def tune_local_server(p99_target_ms: float, *, baseline: RateSearch | None = None, quick: bool = False,
                      max_candidates: int | None = None, input_tokens: int | None = None,
                      concurrency=None, level_s: float | None = None, progress=False,
                      home=None) -> LocalServerTuning:
    """The local server's tuning loop at ``p99_target_ms``, starting from ``baseline`` (a search against the
    running server, which uses the default settings) when given; ``quick``: no other settings, short levels.
    ``home``: the state folder the servers' logs go under (``pb.settings.home``; None: ``$TKE_PLAYBOOK_HOME``)."""
    options: dict = dict(QUICK_SEARCH) if quick else {}
    given = {"input_tokens": input_tokens, "concurrency": tuple(concurrency) if concurrency else None,
             "level_s": level_s, "ceiling_level_s": level_s}
    options.update({k: v for k, v in given.items() if v is not None})
    return LocalServerTuning(tune_local(p99_target_ms, baseline=baseline, progress=progress, home=home,
                                        max_candidates=max_candidates, quick=quick, **options))
