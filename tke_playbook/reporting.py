"""What a step tells the reader while it runs - events and progress - through one :class:`Reporter`.

Every layer that reports takes a reporter as a parameter (the playbook's steps get the one ``open_target`` was
given; loadgen, capacity and scorecard runs take ``progress=True``, a reporter or a bar of the caller's). There are
two implementations, and one bar class drawn on either surface:

- :class:`NotebookReporter` (inside a Jupyter kernel): an event is a line of the cell's output; a bar is one HTML
  line updated in place (``display_id``), replaced by a summary line when it closes - no widget, no tqdm, no lock
  shared between threads, nothing empty left behind. Draw it from the thread that runs the cell (a worker thread's
  bar is what froze notebook 06, see :mod:`tke_playbook.loadgen.progress`).
- :class:`PlainReporter` (the command line, scripts, tests): events on stdout, bars as plain lines on stderr now and
  then (each tenth of the way, each new level, every ten seconds).

:func:`default_reporter` picks between them; :class:`QuietReporter` shows nothing. Standard library only: this
module sits at the bottom of the layers, beside :mod:`tke_playbook.errors`.
"""

from __future__ import annotations

import contextlib
import enum
import html
import math
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol, TextIO, runtime_checkable

from .errors import RunInterrupted

DRAW_EVERY_S = 0.25   # a notebook line is redrawn at most this often
LOG_EVERY_S = 10.0    # a plain line at most this often (besides each tenth of the way and each new level)
WARNING_MARK = "!! "  # what a warning (a diagnosis while waiting) starts with in a line of text
BAR_WIDTH = 24


class Level(str, enum.Enum):
    """How a message is shown: ``ok`` green, ``info`` blue, ``warning`` amber."""

    OK = "ok"
    INFO = "info"
    WARNING = "warning"


@dataclass(frozen=True)
class Event:
    """One message for the reader: ``level`` (``info`` for progress such as a log line, ``warning`` for a
    diagnosis), the text, and which step sent it (``source``, e.g. ``"deploy"``)."""

    message: str
    level: Level = Level.INFO
    source: str = ""

    def __post_init__(self):
        object.__setattr__(self, "level", Level(self.level))

    def __str__(self) -> str:
        """The text a reader sees: the message, warnings marked ``!!``."""
        return f"{WARNING_MARK}{self.message}" if self.level is Level.WARNING else self.message


# --- text ----------------------------------------------------------------------------------------------------


def clock_text(seconds: float) -> str:
    """``m:ss`` (``h:mm:ss`` from an hour)."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def amount_text(n: float, unit: str) -> str:
    """``n`` ``unit`` for a reader: bytes scaled by 1000 (``91.6MB``), anything else with separators."""
    if unit != "B":
        return f"{n:,.0f} {unit}"
    for prefix in ("", "k", "M", "G", "T"):
        if abs(n) < 999.5 or prefix == "T":
            return f"{n:.0f}{prefix}B" if not prefix else f"{n:.1f}{prefix}B"
        n /= 1000
    return f"{n:.1f}PB"  # pragma: no cover - the loop returns at T


def gauge(share: float) -> str:
    """``" 42%|██████████▏             |"``: a share of the way as text."""
    share = min(1.0, max(0.0, share))
    full, part = divmod(int(share * BAR_WIDTH * 8), 8)
    bar = ("█" * full + (" ▏▎▍▌▋▊▉"[part] if part else "")).ljust(BAR_WIDTH)[:BAR_WIDTH]
    return f"{share:4.0%}|{bar}|"


def meter_text(n: float, total: float | None, elapsed: float, desc: str, unit: str = "it") -> str:
    """One progress line: ``desc:  42%|██████▏        | 12.3MB/29.3MB [0:05<0:07]`` (with a total), else
    ``desc: 123 it [0:05]``."""
    if not total or n > total:
        return f"{desc}: {amount_text(n, unit)} [{clock_text(elapsed)}]"
    share = n / total
    left = clock_text(elapsed / share - elapsed) if share > 0 else "?"
    amounts = f"{amount_text(n, unit)}/{amount_text(total, unit)}" if unit == "B" else f"{n:,.0f}/{total:,.0f} {unit}"
    return f"{desc}: {gauge(share)} {amounts} [{clock_text(elapsed)}<{left}]"


# --- where a bar is drawn ------------------------------------------------------------------------------------


class Surface(Protocol):
    """Where a :class:`Bar` draws: ``draw(text, fraction, final)``; ``shows_lines`` when the final line stays in
    the cell's output (so an interrupt's one line need not be shown again)."""

    shows_lines: bool
    throttle_s: float

    def draw(self, text: str, fraction: float | None, final: bool = False) -> None: ...


def ipython_kernel() -> Any:
    """The running IPython kernel's shell (a notebook), or None (a terminal, a script, a test). Never imports
    IPython: a kernel has loaded it already."""
    module = sys.modules.get("IPython")
    shell = module.get_ipython() if module is not None and hasattr(module, "get_ipython") else None
    return shell if shell is not None and getattr(shell, "kernel", None) is not None else None


class CellSurface:
    """An HTML line in the cell's output, updated in place (``display_id``); a ``<progress>`` element while it
    runs, plain text once final."""

    shows_lines = True
    throttle_s = DRAW_EVERY_S

    def __init__(self) -> None:
        self._handle: Any = None

    def draw(self, text: str, fraction: float | None, final: bool = False) -> None:
        from IPython.display import display  # a kernel is running: IPython is loaded

        bar = "" if fraction is None or final else \
            f'<progress value="{fraction:.3f}" max="1" style="width:16em;vertical-align:middle"></progress> '
        data = {"text/plain": text, "text/html": f'<div class="tke-playbook-progress" style="font-family:monospace;'
                                                 f'font-size:90%">{bar}{html.escape(text)}</div>'}
        if self._handle is None:
            self._handle = display(data, raw=True, display_id=True)
        else:
            self._handle.update(data, raw=True)


class StreamSurface:
    """Plain lines on a stream (stderr by default), never a carriage return."""

    shows_lines = False
    throttle_s = LOG_EVERY_S

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream

    def draw(self, text: str, fraction: float | None, final: bool = False) -> None:
        print(text, file=self.stream or sys.stderr, flush=True)


class NoSurface:
    shows_lines = False
    throttle_s = 0.0

    def draw(self, text: str, fraction: float | None, final: bool = False) -> None:
        return None


# --- the bar -------------------------------------------------------------------------------------------------


class Bar:
    """``n`` of ``total`` ``unit`` (tqdm's ``update``/``set_postfix_str``/``close`` calls), or any line a run
    formats itself (:meth:`show`), drawn on a :class:`Surface` and replaced by a summary when it closes. Draw from
    one thread. Use as a context manager."""

    def __init__(self, surface: Surface, total: float | None = None, desc: str = "", unit: str = "it"):
        self.surface, self.total, self.desc, self.unit = surface, total, desc, unit
        self.n: float = 0
        self.postfix = ""
        self.started = time.monotonic()
        self.closed = False
        self._drawn_at = 0.0
        self._key: str | None = None
        self._tenth = -1

    @property
    def shows_lines(self) -> bool:
        return self.surface.shows_lines

    def _text(self) -> str:
        text = meter_text(self.n, self.total, time.monotonic() - self.started, self.desc, self.unit)
        return f"{text} · {self.postfix}" if self.postfix else text

    def _due(self, key: str, force: bool) -> bool:
        """Whether to draw now: forced, a new key (level, file), a new tenth of the way, or the surface's time."""
        if self.closed:
            return False
        now = time.monotonic()
        tenth = int(10 * self.n / self.total) if self.total else -1
        if force or key != self._key or tenth > self._tenth or now - self._drawn_at >= self.surface.throttle_s:
            self._drawn_at, self._key, self._tenth = now, key, max(tenth, self._tenth)
            return True
        return False

    def _fraction(self) -> float | None:
        return min(1.0, self.n / self.total) if self.total else None

    def show(self, text: str, fraction: float | None = None, *, force: bool = False, key: str = "") -> None:
        """Draw ``text`` (and a bar at ``fraction`` of the way), throttled; a new ``key`` (a new level, a new
        file) draws at once."""
        if self._due(key, force):
            self.surface.draw(text, fraction)

    def update(self, n: float = 1) -> None:
        self.n += n
        self.show(self._text(), self._fraction(), key=self.postfix)

    def set_description(self, desc: str) -> None:
        self.desc = desc

    def set_postfix_str(self, text: str) -> None:
        self.postfix = text
        self.show(self._text(), self._fraction(), key=self.postfix)

    def refresh(self) -> None:
        self.show(self._text(), self._fraction(), force=True, key=self.postfix)

    def summary(self) -> str:
        """``Downloading x: 91.6MB in 0:12``."""
        return f"{self.desc}: {amount_text(self.n, self.unit)} in {clock_text(time.monotonic() - self.started)}"

    def close(self, line: str | None = None) -> None:
        """Replace the bar with ``line``, else its summary; idempotent."""
        if self.closed:
            return
        self.closed = True
        self.surface.draw(line or self.summary(), None, final=True)

    def __enter__(self) -> Bar:
        self.refresh()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- reporters -----------------------------------------------------------------------------------------------


@runtime_checkable
class Reporter(Protocol):
    """Where a step's events and progress go."""

    def event(self, event: Event) -> None:
        """Show one message (a log line while waiting, a diagnosis)."""

    def bar(self, total: float | None = None, desc: str = "", unit: str = "it") -> Bar:
        """A progress bar for ``total`` ``unit`` (None: no total, it counts)."""


class NotebookReporter:
    """Inside a Jupyter kernel: events as lines of the cell's output, bars as HTML lines updated in place."""

    def event(self, event: Event) -> None:
        print(event, flush=True)

    def bar(self, total: float | None = None, desc: str = "", unit: str = "it") -> Bar:
        return Bar(CellSurface(), total, desc, unit)


class PlainReporter:
    """The command line and scripts: events on ``out`` (stdout), bars as plain lines on ``err`` (stderr)."""

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.out, self.err = out, err

    def event(self, event: Event) -> None:
        print(event, file=self.out or sys.stdout, flush=True)

    def bar(self, total: float | None = None, desc: str = "", unit: str = "it") -> Bar:
        return Bar(StreamSurface(self.err), total, desc, unit)


class QuietReporter:
    """Shows nothing (a caller that collects results only)."""

    def event(self, event: Event) -> None:
        return None

    def bar(self, total: float | None = None, desc: str = "", unit: str = "it") -> Bar:
        return Bar(NoSurface(), total, desc, unit)


def default_reporter() -> Reporter:
    """:class:`NotebookReporter` inside a Jupyter kernel, :class:`PlainReporter` elsewhere."""
    return NotebookReporter() if ipython_kernel() is not None else PlainReporter()


def progress_bar(progress: "bool | Reporter | None", total: float | None = None, desc: str = "",
                 unit: str = "it") -> Bar:
    """The bar for a step's ``progress`` argument: on the default reporter for True, on the given reporter, or one
    that shows nothing for False/None. Every counting loop of the library draws through it (no tqdm: a tqdm widget
    left in a saved notebook shows its last state, e.g. "documents: 89% 32/36", where a Bar leaves its summary)."""
    if isinstance(progress, Reporter):
        return progress.bar(total, desc, unit)
    return (default_reporter() if progress else QuietReporter()).bar(total, desc, unit)


@contextlib.contextmanager
def waiting(reporter: Reporter, desc: str, every: float = 0.5, *,
            interrupted: str = "run the cell again to wait again") -> Iterator[Bar]:
    """A line counting the seconds while the block runs (for waits that report no progress of their own: a
    server loading its model, a PVC binding, a rollout). An interrupt ends the block with one line,
    ``<desc>: interrupted after m:ss; <interrupted>`` (:class:`~tke_playbook.errors.RunInterrupted`)."""
    bar = reporter.bar(None, desc, unit="s")
    done = threading.Event()
    started = time.monotonic()

    def tick() -> None:
        while not done.wait(every):
            bar.update(time.monotonic() - started - bar.n)

    ticker = threading.Thread(target=tick, name="tke-playbook-waiting", daemon=True)
    bar.refresh()
    ticker.start()
    try:
        yield bar
    except KeyboardInterrupt:
        done.set()
        ticker.join(timeout=2.0)
        line = f"{desc}: interrupted after {clock_text(time.monotonic() - started)}; {interrupted}"
        bar.close(line)
        raise RunInterrupted(line, shown=bar.shows_lines) from None
    finally:
        done.set()
        ticker.join(timeout=2.0)
        bar.close()


# --- how an estimate reads ------------------------------------------------------------------------------------

ESTIMATE_DIGITS = 3  # significant figures an estimate (a projection, a cost per million tokens) is shown to


def estimate_text(value: float, digits: int = ESTIMATE_DIGITS) -> str:
    """An estimate as a reader should see it: ``digits`` significant figures, thousands separators, no scientific
    notation and no trailing zeros - 1,610,093 reads ``1,610,000``, 0.044466 ``0.0445``, 14.40 ``14.4``. Showing
    more digits than the estimate has would claim a precision it does not have."""
    if not math.isfinite(value) or value == 0:
        return f"{value:g}"
    places = digits - 1 - math.floor(math.log10(abs(value)))
    rounded = round(value, places)
    text = f"{rounded:,.{max(places, 0)}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text
