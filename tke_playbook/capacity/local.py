"""The tuning loop on the local target: restart the local server with other batching settings, measure each one's
sustainable rate at the p99 target, keep the best. Settings come from what the default run showed.

The local server batches sentences from concurrent requests (``max_batch`` per batch, waiting up to ``max_wait_ms``
for more while they keep arriving) on ``workers`` encoding threads. Rules for the candidates:
- requests queued longer than they ran at the sustainable level: batching is the limit - larger batches and a
  longer wait amortise more per batch;
- otherwise latency is mostly compute: smaller batches and a shorter wait cut the tail;
- one worker with all cores versus several workers with fewer threads each (the CPU analogue of several API
  servers or replicas per GPU).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, replace

import pandas as pd

from ..errors import InvalidSpecError, RunInterrupted
from ..loadgen import LevelBar, Progress, interruptible, make_bar, remember_interrupted
from ..loadgen.inputs import check_range
from ..localserver.process import start_server
from ..localserver.settings import default_workers
from ..reporting import Reporter
from .search import RateSearch, find_sustainable_rate

MAX_BATCH = 4096   # sentences per batch
MAX_WORKERS = 64   # encoding threads


@dataclass(frozen=True)
class LocalSettings:
    """The local server's batching settings (``tke-playbook serve`` flags); None = the server's default."""

    max_batch: int = 64
    max_wait_ms: float = 2.0
    workers: int | None = None

    def __post_init__(self):
        check_range(self.max_batch, "max_batch", 1, MAX_BATCH, 64, whole=True, low_inclusive=True)
        if isinstance(self.max_wait_ms, bool) or not isinstance(self.max_wait_ms, (int, float)) or \
                not 0 <= self.max_wait_ms < 1000:
            raise InvalidSpecError(f"max_wait_ms {self.max_wait_ms!r} must be a number in [0, 1000), such as 2",
                                   field="max_wait_ms", value=self.max_wait_ms)
        if self.workers is not None:
            check_range(self.workers, "workers", 1, MAX_WORKERS, 2, whole=True, low_inclusive=True)

    @property
    def flags(self) -> str:
        out = f"--max-batch {self.max_batch} --max-wait-ms {self.max_wait_ms:g}"
        return out + (f" --workers {self.workers}" if self.workers else "")


def local_candidates(default: RateSearch, settings: LocalSettings = LocalSettings(), cores: int = 2) -> list:
    """Settings worth trying after ``default`` (a search run with ``settings``)."""
    row = _sustainable_row(default)
    queue = float(row.get("server_queue_mean_ms", math.nan)) if row is not None else math.nan
    inference = float(row.get("server_inference_mean_ms", math.nan)) if row is not None else math.nan
    if not math.isnan(queue) and not math.isnan(inference) and queue > inference:
        first = replace(settings, max_batch=min(512, settings.max_batch * 2), max_wait_ms=settings.max_wait_ms * 2)
    else:
        first = replace(settings, max_batch=max(4, settings.max_batch // 4), max_wait_ms=settings.max_wait_ms / 4)
    workers = settings.workers or default_workers(cores)
    second = replace(settings, workers=1 if workers > 1 else min(2, cores))
    return [c for c in dict.fromkeys([first, second]) if c != settings]


def _sustainable_row(search: RateSearch):
    table = search.opened.table()
    if search.sustainable is None or table.empty:
        return None
    rows = table[table["rate"] == search.sustainable.level]
    return rows.iloc[0] if len(rows) else None


def requests_sent(search: RateSearch) -> int:
    """The requests ``search`` sent: its closed-loop ceiling run (when it measured one) and its open-loop levels."""
    runs = (search.closed, search.opened)
    return sum(len(run.records) for run in runs if run is not None and getattr(run, "records", None) is not None)


@dataclass
class LocalTuning:
    """Every setting tried, its sustainable rate, and the best one; ``tuned_vs_default`` = best / default.
    ``baseline``: the defaults were measured by a search run before the tuning (its ``baseline=``), not by it;
    ``quick``: no other settings were tried on purpose; ``cores``: what the servers' default worker count follows
    (None: this machine's)."""

    trials: list[tuple[LocalSettings, RateSearch]]
    baseline: bool = False
    quick: bool = False
    cores: int | None = field(default=None, repr=False)

    @property
    def default(self) -> tuple[LocalSettings, RateSearch]:
        return self.trials[0]

    @property
    def best(self) -> tuple[LocalSettings, RateSearch]:
        return max(self.trials, key=lambda t: t[1].sustainable.rate if t[1].sustainable else 0.0)

    @property
    def tuned_vs_default(self) -> float:
        default = self.default[1].sustainable
        best = self.best[1].sustainable
        return best.rate / default.rate if default and best and default.rate else math.nan

    def verdict(self) -> str:
        """One line: which settings to serve with, and by how much they beat the defaults."""
        best, ratio = self.best[0], self.tuned_vs_default
        if len(self.trials) == 1:
            why = " (quick mode)" if self.quick else ""
            return f"tke-playbook serve {best.flags}   # the defaults: no other settings were tried{why}"
        if best == self.default[0] or not ratio > 1.0:
            return (f"the defaults are best: none of the {len(self.trials) - 1} other setting(s) sustained a higher "
                    f"rate at the target - keep `tke-playbook serve {best.flags}`")
        return f"tke-playbook serve {best.flags}   # sustainable rate x{ratio:.2f} of the defaults"

    def measured(self) -> str:
        """One line: which settings were measured, and by whom - the defaults by the search passed as the baseline
        (its requests) or by the tuning itself, the others by the tuning (their requests)."""
        sent = [requests_sent(search) for _, search in self.trials]
        by = "the rate search above" if self.baseline else "the tuning"
        if len(self.trials) == 1:
            return (f"{'quick mode ' if self.quick else ''}measured only the defaults ({by}: {sent[0]:,} requests); "
                    "no other settings were tried")
        return (f"{len(self.trials)} settings measured: the defaults ({by}: {sent[0]:,} requests) and "
                f"{len(self.trials) - 1} other(s) (the tuning: {sum(sent[1:]):,} requests)")

    def table(self) -> pd.DataFrame:
        """One row per setting measured; ``best`` marks the winner only when there were several to compare, and
        ``workers`` says what the server's default is where the setting left it to the server."""
        rows = []
        for settings, search in self.trials:
            found = search.sustainable
            workers = settings.workers if settings.workers is not None else \
                f"default ({default_workers(self.cores)})"
            rows.append({**asdict(settings), "workers": workers, "flags": settings.flags,
                         "ceiling_rps": round(search.ceiling_rps, 1),
                         "sustainable_rps": round(found.rate, 1) if found else 0.0,
                         "p99_ms": round(found.p99_ms, 1) if found else math.nan})
            if len(self.trials) > 1:
                rows[-1]["best"] = settings == self.best[0]
        return pd.DataFrame(rows)

    def summary(self) -> str:
        """The line a finished tuning run ends with: what was measured and by whom, then the verdict when there
        was anything to compare."""
        if len(self.trials) == 1:
            return f"tuning: {self.measured()}"
        return f"tuning: {self.measured()}; {self.verdict()}"


class _TuningBar:
    """The bar of a tuning run: each setting's rate search moves it (a caller's bar for the searches)."""

    def __init__(self, progress: Progress, bar: LevelBar | None):
        self.progress, self.bar = progress, bar

    def update(self, n: int = 1) -> None:
        self.progress.finished(n)
        if self.bar is not None:
            self.bar.draw(self.progress)

    def set_postfix_str(self, text: str) -> None:
        self.progress.level = f"{self.progress.level.split(': ')[0]}: {text}"
        if self.bar is not None:
            self.bar.draw(self.progress)

    def close(self) -> None:
        pass


def _level_bar(progress) -> LevelBar | None:
    """The tuning run's own bar: for ``progress=True`` or a reporter (a caller's bar follows each search)."""
    return make_bar(progress, "tuning") if progress is True or isinstance(progress, Reporter) else None


def measure_local(settings: LocalSettings, p99_target_ms: float, *, model_dir=None, home=None,
                  **search_options) -> RateSearch:
    """Start the local server with ``settings``, find its sustainable rate, stop it. ``home``: the state folder
    its log (and an interrupted search's requests) go under (the caller's settings; None: ``$TKE_PLAYBOOK_HOME``)."""
    with start_server(model_dir, max_batch=settings.max_batch, max_wait_ms=settings.max_wait_ms,
                      workers=settings.workers, home=home) as server:
        return find_sustainable_rate(server.url, server.served_model_name, p99_target_ms, home=home,
                                     **search_options)


def _chosen(first: RateSearch, settings: LocalSettings, candidates, cores: int | None,
            max_candidates: int | None) -> list:
    """The settings to try after ``first``: ``candidates`` or those derived from it, at most ``max_candidates``."""
    chosen = candidates if candidates is not None else local_candidates(first, settings, cores or os.cpu_count() or 1)
    if max_candidates is None:
        return list(chosen)
    return list(chosen)[:int(check_range(max_candidates, "max_candidates", 0, 16, 1, whole=True, low_inclusive=True))]


def tune_local(p99_target_ms: float, *, settings: LocalSettings = LocalSettings(), candidates=None,
               model_dir=None, cores: int | None = None, baseline: RateSearch | None = None, progress=False,
               max_candidates: int | None = None, home=None, quick: bool = False, **search_options) -> LocalTuning:
    """Measure ``settings`` (the defaults; or take ``baseline``, a search already run against a server with those
    settings), then each candidate (derived from that run unless given; at most ``max_candidates``; none when
    ``quick``), each on a fresh local server (its log under the state folder ``home``: see :func:`measure_local`).
    Interruptible: the server being measured is stopped and the settings measured so far are kept."""
    tracker = Progress("tuning")
    bar = _level_bar(progress)
    if bar is not None:
        bar.draw(tracker, force=True)
    search_options["progress"] = _TuningBar(tracker, bar)
    trials: list[tuple[LocalSettings, RateSearch]] = []

    def made() -> LocalTuning:
        return LocalTuning(trials, baseline=baseline is not None, quick=quick, cores=cores)

    def stopped() -> str:
        return (f"tuning: stopped after {len(trials)} measured setting(s) ({tracker.requests:,} requests sent by "
                "the tuning); the settings measured so far are kept in last_interrupted()")

    try:
        with interruptible(stopped, lambda: made() if trials else None):
            first = baseline if baseline is not None else measure_local(settings, p99_target_ms, model_dir=model_dir,
                                                                         home=home, **search_options)
            trials.append((settings, first))
            chosen = _chosen(first, settings, [] if quick else candidates, cores, max_candidates)
            for n, candidate in enumerate(chosen, start=1):
                tracker.level = f"setting {n} of {len(chosen)} ({candidate.flags})"
                trials.append((candidate, measure_local(candidate, p99_target_ms, model_dir=model_dir, home=home,
                                                        **search_options)))
    except RunInterrupted as exc:  # a search inside stopped, or the interrupt came between: one line in all
        if bar is not None:
            bar.close(stopped())
        kept = remember_interrupted(made() if trials else exc.obj)
        raise RunInterrupted(stopped(), obj=kept, shown=bar is not None and bar.shows_lines) from None
    outcome = made()
    if bar is not None:
        bar.close(outcome.summary())
    return outcome
