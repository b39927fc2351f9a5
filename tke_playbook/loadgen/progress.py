"""Progress of long runs: what the work has done (:class:`Progress`, written by whichever thread does the work) and
the bar that shows it (:class:`CellBar`, drawn only by the thread that runs the cell).

Why the split: a bar drawn from a worker thread is what froze notebook 06. The interrupted load generator's thread
kept drawing a tqdm widget after its cell had ended; one draw failed inside ``tqdm.refresh()``, which holds tqdm's
process-wide write lock without a ``try``/``finally``; the thread died holding the lock, and every later bar - and
tqdm's monitor thread - waited for it forever. So here the work only counts, the cell's own thread draws (see
:func:`~tke_playbook.loadgen.sync.run_interruptibly`), and the bar is an HTML line updated in place
(``display_id``, :class:`~tke_playbook.reporting.Bar`): no widget, no tqdm, no global lock, no monitor thread.
A finished bar becomes a one-line summary, never an empty output area.

Honest remaining time: runs are split into levels, each bounded by a time budget. The bar counts seconds of the
budget: a finished level counts in full, the running one by the time it has run. "at most m:ss left" is then an
upper bound that holds whatever speed the later levels have.

``progress`` arguments accept ``False`` (no bar), ``True`` (a line in a notebook, lines on stderr elsewhere), a
:class:`~tke_playbook.reporting.Reporter` (its bar), or an object with ``update(n)`` and ``close()`` (a bar of your
own, or a recorder in tests), moved by requests.
"""

from __future__ import annotations

import os
import time
from typing import Protocol

from .. import reporting
from ..errors import InvalidSpecError
from ..reporting import Reporter, clock_text, default_reporter, gauge


class BarLike(Protocol):
    """What a progress bar of your own needs: ``update(n)`` and ``close()`` (``set_postfix_str`` when present)."""

    def update(self, n: int = 1) -> object: ...

    def close(self) -> object: ...


class Progress:
    """What a run has done so far: requests finished, the level running, and the time budget used.

    The thread doing the work calls :meth:`level_started`, :meth:`finished` and :meth:`level_ended`; the thread
    drawing reads :meth:`position` and the counters (plain attribute writes: nothing here blocks). ``budget_s`` is
    the run's total time bound, the sum of its levels' budgets (None: unknown; the bar then counts requests).
    ``home`` is the state folder an interrupted run keeps its results so far under (the caller's settings; None:
    :func:`~tke_playbook.hostenv.state_dir`)."""

    def __init__(self, desc: str, budget_s: float | None = None, *, levels: int | None = None,
                 home: str | os.PathLike | None = None):
        self.desc = desc
        self.home = home
        self.budget_s = budget_s
        self.levels = levels
        self.requests = 0          # requests answered or failed
        self.level = ""            # the level running now, e.g. "32 tok x 1 in, concurrency 4"
        self.levels_done = 0
        self.notes: list[str] = []  # one line per level cut short or with errors
        self.kept: str = ""        # where the results so far are (set by the run when interrupted)
        self.partial = None        # what was measured so far (set by the run when interrupted)
        self.started = time.monotonic()
        self._spent = 0.0
        self._level_start: float | None = None
        self._level_budget = 0.0

    def level_started(self, text: str, budget_s: float = 0.0) -> None:
        self.level, self._level_budget, self._level_start = text, float(budget_s), time.monotonic()

    def finished(self, n: int = 1) -> None:
        self.requests += n

    def level_ended(self) -> None:
        self._spent += self._level_budget
        self._level_start = None
        self.levels_done += 1

    def note(self, text: str) -> None:
        self.notes.append(text)

    def add_budget(self, seconds: float) -> None:
        """Raise the run's time bound by ``seconds`` (a wait nobody could foresee when it began)."""
        if self.budget_s:
            self.budget_s += seconds

    def waited(self, seconds: float, reserved: float) -> None:
        """A wait of ``seconds`` (``reserved`` was added to the bound for it) before the running level: it counts
        as spent, the unused reserve leaves the bound, and the level's own clock starts now."""
        if self.budget_s:
            self.budget_s += seconds - reserved
        self._spent += seconds
        if self._level_start is not None:
            self._level_start = time.monotonic()

    def position(self, now: float | None = None) -> float:
        """Seconds of the budget used: finished levels in full, the running one by its time so far."""
        if self._level_start is None:
            return self._spent
        now = time.monotonic() if now is None else now
        return self._spent + min(now - self._level_start, self._level_budget)

    def left_s(self, now: float | None = None) -> float | None:
        """An upper bound on the time left, or None without a budget."""
        return None if not self.budget_s else max(0.0, self.budget_s - self.position(now))

    def summary(self) -> str:
        """One line for a finished run: ``closed loop: 12 levels, 1,234 requests in 0:58``."""
        levels = f"{self.levels_done} level{'s' if self.levels_done != 1 else ''}, " if self.levels_done else ""
        return f"{self.desc}: {levels}{self.requests:,} requests in {clock_text(time.monotonic() - self.started)}"


class LevelBar:
    """A :class:`~tke_playbook.reporting.Bar` (from the reporter: in a notebook an HTML line updated in place,
    elsewhere plain lines on stderr now and then) that shows a :class:`Progress`: the time budget used, the
    requests, the level running. :meth:`close` replaces it with a summary line."""

    def __init__(self, bar: reporting.Bar, unit: str = "req"):
        self.bar, self.unit = bar, unit

    @property
    def shows_lines(self) -> bool:
        """True in a notebook: the line :meth:`close` writes stays in the cell's output."""
        return self.bar.shows_lines

    def _text(self, progress: Progress) -> tuple[str, float | None]:
        now = time.monotonic()
        elapsed = now - progress.started
        parts = [f"{progress.requests:,} {self.unit}"]
        if progress.levels:
            parts.append(f"level {min(progress.levels_done + 1, progress.levels)} of {progress.levels}")
        if progress.level:
            parts.append(progress.level)
        left = progress.left_s(now)
        if left is not None and progress.budget_s:
            parts.insert(0, f"at most {clock_text(left)} left")
            fraction = min(1.0, progress.position(now) / progress.budget_s)
            return f"{progress.desc}: {gauge(fraction)} {clock_text(elapsed)} · {' · '.join(parts)}", fraction
        return f"{progress.desc}: {clock_text(elapsed)} · {' · '.join(parts)}", None

    def draw(self, progress: Progress, *, force: bool = False) -> None:
        """Redraw from ``progress`` (throttled; at once for a new level); only from the thread that made the bar."""
        text, fraction = self._text(progress)
        self.bar.show(text, fraction, force=force, key=progress.level)

    def show(self, text: str, fraction: float | None = None, *, force: bool = False, key: str = "") -> None:
        self.bar.show(text, fraction, force=force, key=key)

    def close(self, line: str | None = None) -> None:
        """Replace the bar with ``line`` (a summary, or why the run stopped); idempotent. Without a line the bar
        simply ends (the caller showed what it needed)."""
        if line:
            self.bar.close(line)
        else:
            self.bar.closed = True


class _OwnBar:
    """A caller's bar (``update``/``close``), moved by the requests finished, labelled with the level."""

    shows_lines = False

    def __init__(self, bar):
        self.bar, self.shown, self._level = bar, 0, None

    def draw(self, progress: Progress, *, force: bool = False) -> None:
        if progress.requests > self.shown:
            self.bar.update(progress.requests - self.shown)
            self.shown = progress.requests
        if progress.level != self._level and hasattr(self.bar, "set_postfix_str"):
            self._level = progress.level
            self.bar.set_postfix_str(progress.level)

    def close(self, line: str | None = None) -> None:
        self.bar.close()


def make_bar(progress, desc: str):
    """The drawer for a ``progress`` argument: None for False/None, a :class:`LevelBar` on the default reporter
    for True (:func:`~tke_playbook.reporting.default_reporter`: a notebook line, or lines on stderr) or on the
    given :class:`~tke_playbook.reporting.Reporter`, the caller's bar otherwise. Call only from the thread that will
    draw it."""
    if progress is None or progress is False:
        return None
    if progress is True:
        return LevelBar(default_reporter().bar(None, desc))
    if isinstance(progress, Reporter):
        return LevelBar(progress.bar(None, desc))
    if not (hasattr(progress, "update") and hasattr(progress, "close")):
        raise InvalidSpecError("progress must be True, False, a reporter or an object with update(n) and close(), "
                               "such as a tqdm bar", field="progress", value=type(progress).__name__)
    return _OwnBar(progress)
