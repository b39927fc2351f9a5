"""How the toolkit looks in a notebook: its errors as one short red block, and progress bars.

    from tke_playbook.playbook.display import install
    install()      # open_target() does this for you inside IPython

After :func:`install`, a :class:`~tke_playbook.errors.PlaybookError` raised by a cell shows as one red block -
what happened, what to do - with the traceback one click away (an HTML ``<details>`` element), instead of frames of
library source. The cell still counts as failed (Run All, nbclient and papermill stop there). Other exceptions
keep IPython's usual traceback. Outside IPython, :func:`install` makes uncaught toolkit errors print as one line.

:func:`progress_bar` gives a progress line in a notebook (drawn in place, replaced by a summary when done: no
widget, nothing empty left behind) and plain log lines elsewhere; :func:`waiting` counts seconds.
"""

from __future__ import annotations

import contextlib
import html
import logging
import re
import sys
import threading
import time
import traceback
from typing import Any

from ..errors import PlaybookError
from ..loadgen.progress import CellBar, clock_text
from ..loadgen.sync import interruptible

MAX_SHOWN_LINES = 6  # message lines shown in the block; the rest is one click away with the traceback
_TODO = re.compile(r"^(run|use|set|pick|choose|create|connect|wait|install|leave|give|pass|type|free|delete|"
                   r"reinstall|start|deploy|add|check|try|write|rerun|remove|stop|open|make|point|fix|lower|raise|"
                   r"increase|reduce|shorten|split|select|edit|change|download|launch|call|see|ask|keep|send|"
                   r"enter|name|restart|retry|plan|clean|tick|untick|drop|look|read|put)\b", re.IGNORECASE)
log = logging.getLogger("tke_playbook.progress")


# --- errors ------------------------------------------------------------------------------------------------


def split_message(message: str) -> tuple[str, str, list[str]]:
    """``(what happened, what to do, more lines)`` of an error message: the first line is split at its last
    ``": "``, ``" - "`` or ``"; "`` when what follows reads as an instruction ("run 03_deploy_vllm first");
    later lines are ``more``."""
    lines = [line for line in str(message).strip().splitlines()] or [""]
    head, more = lines[0].strip(), [line.rstrip() for line in lines[1:]]
    cuts = sorted({m.start() for m in re.finditer(r": | - |; ", head)}, reverse=True)
    for cut in cuts:
        tail = head[cut:].lstrip(":-; ").strip()
        if cut > 0 and _TODO.match(tail):
            return head[:cut].strip(), tail, more
    return head, "", more


# What to do when a message names no step itself, by error class (the nearest in the class's MRO wins): every
# block has the same three parts - what happened, what to do, the details one click away.
DEFAULT_TODO = {
    "InvalidSpecError": "change the value the message names, then run the cell again",
    "UnknownNameError": "use one of the names the message suggests",
    "EmbeddingAPIError": "look at the server's log (pb.deployment_logs()), then run the cell again",
    "ServerError": "look at the server's log (pb.deployment_logs()), or run 03_deploy_vllm again",
    "ClusterError": "run pb.diagnose() for the reason in plain words",
    "DownloadError": "launch the download again (it resumes), or see the shard's log below",
    "PlaybookError": "read the details below, fix what they name, then run the cell again",
}


def what_to_do(exc: BaseException) -> str:
    """The instruction of ``exc``'s message, else the default for its class (:data:`DEFAULT_TODO`)."""
    _, todo, _ = split_message(str(exc))
    if todo:
        return todo
    return next((DEFAULT_TODO[k.__name__] for k in type(exc).__mro__ if k.__name__ in DEFAULT_TODO), "")


def _kind(exc: BaseException) -> str:
    return type(exc).__name__


def error_text(exc: BaseException) -> str:
    """The plain-text form: ``'<Kind>: <message>'`` (the whole message, no traceback)."""
    return f"{_kind(exc)}: {exc}"


def _traceback_text(exc: BaseException, tb: Any = None) -> str:
    return "".join(traceback.format_exception(type(exc), exc, tb if tb is not None else exc.__traceback__))


def error_html(exc: BaseException, tb: Any = None) -> str:
    """One short red block: the error's kind, what happened, what to do, and (folded) details and traceback."""
    what, todo, more = split_message(str(exc))
    todo = todo or what_to_do(exc)
    shown, folded = more[:MAX_SHOWN_LINES], more[MAX_SHOWN_LINES:]
    parts = ['<div class="tke-playbook-error" role="alert" style="border-left:4px solid #cf222e;'
             'background:#ffebe9;color:#1f2328;padding:6px 10px;margin:4px 0;max-width:900px">',
             f'<b style="color:#cf222e">{html.escape(_kind(exc))}</b>: {html.escape(what)}']
    if todo:
        parts.append(f'<div><b>What to do:</b> {html.escape(todo)}</div>')
    if shown:
        parts.append('<pre style="margin:4px 0;white-space:pre-wrap">' + html.escape("\n".join(shown)) + "</pre>")
    details = ("\n".join(folded) + "\n\n" if folded else "") + _traceback_text(exc, tb)
    parts.append('<details><summary style="cursor:pointer">Traceback</summary>'
                 f'<pre style="white-space:pre-wrap;font-size:85%">{html.escape(details)}</pre></details></div>')
    return "".join(parts)


def _ipython_handler(shell, etype, value, tb, tb_offset=None):
    """IPython's custom exception handler: display the block, return no structured traceback."""
    from IPython.display import display

    if getattr(value, "one_line", False):  # an interrupted run: its one line (unless already shown), no traceback
        if not getattr(value, "shown", False):
            display({"text/plain": str(value), "text/html": f"<div>{html.escape(str(value))}</div>"}, raw=True)
        return None
    display({"text/plain": error_text(value), "text/html": error_html(value, tb)}, raw=True)
    return None


def _ipython():
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def install(shell: Any = None) -> bool:
    """Show toolkit errors as one short block. Inside IPython (``shell`` or the running one) register the custom
    exception handler, make tables readable (:func:`~tke_playbook.playbook.report.readable_tables`) and return True; outside, make uncaught toolkit errors print one line, and return False."""
    shell = shell if shell is not None else _ipython()
    if shell is not None:
        from .report import readable_tables  # late: pandas only where tables are shown

        shell.set_custom_exc((PlaybookError,), _ipython_handler)
        readable_tables()
        return True
    if not getattr(sys.excepthook, "_tke_playbook", False):
        previous = sys.excepthook

        def hook(etype, value, tb):
            if isinstance(value, PlaybookError):
                print(error_text(value), file=sys.stderr)
            else:
                previous(etype, value, tb)

        hook._tke_playbook = True
        sys.excepthook = hook
    return False


def install_in_ipython() -> bool:
    """:func:`install` only when running inside IPython (what ``open_target`` calls); False elsewhere."""
    shell = _ipython()
    return install(shell) if shell is not None else False


# --- progress ----------------------------------------------------------------------------------------------


class LogBar:
    """A tqdm-like bar that logs one plain line per tenth of the way (without a total: every ``steps`` units),
    for logs and runs outside a notebook."""

    def __init__(self, total: float | None = None, desc: str = "", unit: str = "it", steps: int = 10):
        self.total, self.desc, self.unit, self.n = total, desc, unit, 0
        self._steps, self._logged = steps, -1

    def _line(self) -> str:
        if self.total:
            return f"{self.desc}: {self.n:,.0f}/{self.total:,.0f} {self.unit} ({100 * self.n / self.total:.0f}%)"
        return f"{self.desc}: {self.n:,.0f} {self.unit}"

    def update(self, n: float = 1) -> None:
        self.n += n
        step = int(self._steps * self.n / self.total) if self.total else int(self.n // self._steps)
        if step > self._logged:
            self._logged = step
            log.info(self._line())

    def set_description(self, desc: str) -> None:
        self.desc = desc

    def set_postfix_str(self, text: str) -> None:
        self.desc = f"{self.desc.split(' [')[0]} [{text}]"

    def refresh(self) -> None:
        return None

    def close(self, line: str | None = None) -> None:
        log.info(line or self._line() + " - done")

    def __enter__(self) -> "LogBar":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class LineBar:
    """The notebook form of :func:`progress_bar`: ``n`` of ``total`` ``unit`` drawn as one line updated in place
    (:class:`~tke_playbook.loadgen.progress.CellBar`, formatted by ``tqdm.format_meter``: no widget, no tqdm lock),
    replaced by a summary line when it closes - nothing empty is left behind. Draw from one thread."""

    def __init__(self, total: float | None = None, desc: str = "", unit: str = "it", **_options: Any):
        self.total, self.desc, self.unit, self.n = total, desc, unit, 0
        self.postfix = ""
        self.started = time.monotonic()
        self._line = CellBar(desc, unit)
        self._scale = {"unit_scale": True, "unit_divisor": 1000} if unit == "B" else {}

    @property
    def shows_lines(self) -> bool:
        return self._line.shows_lines

    def _text(self) -> str:
        from tqdm import tqdm  # format_meter only: a static formatter

        total = self.total if self.total and self.n <= self.total else None
        text = tqdm.format_meter(self.n, total, time.monotonic() - self.started, prefix=self.desc, unit=self.unit,
                                 bar_format="{l_bar}{bar:24}| {n_fmt}/{total_fmt} {unit} [{elapsed}<{remaining}]"
                                 if total else "{desc}: {n_fmt} {unit} [{elapsed}]", **self._scale)
        return f"{text} · {self.postfix}" if self.postfix else text

    def _draw(self, force: bool = False) -> None:
        fraction = min(1.0, self.n / self.total) if self.total else None
        self._line.show(self._text(), fraction, force=force, key=self.postfix)

    def update(self, n: float = 1) -> None:
        self.n += n
        self._draw()

    def set_description(self, desc: str) -> None:
        self.desc = desc

    def set_postfix_str(self, text: str) -> None:
        self.postfix = text
        self._draw()

    def refresh(self) -> None:
        self._draw(force=True)

    def close(self, line: str | None = None) -> None:
        """Replace the bar with ``line``, else a summary (``Downloading x: 91.6 MB in 0:12``); idempotent."""
        if self._line.closed:
            return
        from tqdm import tqdm

        amount = tqdm.format_sizeof(self.n, divisor=1000) + self.unit if self._scale else f"{self.n:,.0f} {self.unit}"
        self._line.close(line or f"{self.desc}: {amount} in {clock_text(time.monotonic() - self.started)}")

    def __enter__(self) -> "LineBar":
        self._draw(force=True)
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress_bar(total: float | None = None, desc: str = "", unit: str = "B", **options: Any):
    """A progress bar: a :class:`LineBar` inside IPython, a :class:`LogBar` elsewhere. ``unit='B'`` scales bytes
    (kB, MB). Use as a context manager from one thread; ``update(n)`` moves it."""
    if _ipython() is None:
        return LogBar(total, desc, unit)
    return LineBar(total, desc, unit, **options)


@contextlib.contextmanager
def waiting(desc: str, every: float = 0.5, *, interrupted: str = "run the cell again to wait again"):
    """A line counting the seconds while the block runs (for waits that report no progress of their own, such as
    a server loading its model). Its ticker thread ends with the block; an interrupt ends the block with one line:
    ``<desc>: interrupted after m:ss; <interrupted>``."""
    bar = LineBar(None, desc, unit="s") if _ipython() is not None else LogBar(None, desc, unit="s", steps=10)
    done = threading.Event()
    started = time.monotonic()

    def tick():
        while not done.wait(every):
            bar.update(time.monotonic() - started - bar.n)

    ticker = threading.Thread(target=tick, name="tke-playbook-waiting", daemon=True)

    def stopped() -> str:
        done.set()
        ticker.join(timeout=2.0)
        return f"{desc}: interrupted after {clock_text(time.monotonic() - started)}; {interrupted}"

    ticker.start()
    try:
        with interruptible(stopped, bar=bar if isinstance(bar, LineBar) else None):
            yield bar
    finally:
        done.set()
        ticker.join(timeout=2.0)
        bar.close()
