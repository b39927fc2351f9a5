"""Long runs from a notebook cell (or any sync code) that stop cleanly on an interrupt.

:func:`run_interruptibly` runs a coroutine on a fresh event loop in a worker thread (a notebook's own loop is
already running) while the calling thread waits and draws the progress bar - the only thread that ever draws
(see :mod:`~tke_playbook.loadgen.progress` for why). An interrupt - the notebook's stop button or Ctrl-C, i.e.
SIGINT in the main thread - cancels the coroutine: its requests are abandoned, its connections closed (the server
sees the clients leave and drops their work), the worker thread is joined within :data:`STOP_GRACE_S`, the bar is
replaced by one line, and :class:`~tke_playbook.errors.RunInterrupted` is raised with that line and the results so
far (a notebook shows the line alone, no traceback; the cell still counts as stopped, so Run All stops there).

:func:`interruptible` does the same for sync work in the calling thread (the scorecard, waiting for a download):
a KeyboardInterrupt becomes one :class:`~tke_playbook.errors.RunInterrupted` line. While either is active, SIGINT
never lands inside a progress-bar library's drawing code or inside an import (it is delivered again a moment
later, at the latest when the work ends): tqdm draws under a process-wide lock without ``try``/``finally``, and an
interrupt there would leave it locked for good; a module interrupted halfway through its import (torch, imported
lazily by the scorecard's first model) stays half-initialised in the kernel, and every later use of it fails.

Results cut short are kept: :func:`last_interrupted` returns the last one, and loadgen runs also write their
records to a CSV file under the state directory; the message names both.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ..errors import RunInterrupted
from .progress import Progress, make_bar

T = TypeVar("T")
STOP_GRACE_S = 2.0     # an interrupted run's thread is joined within this
POLL_S = 0.1           # how often the waiting thread looks at the work (and redraws)
REDELIVER_S = 0.05     # an interrupt deferred out of drawing code is delivered again after this
_LAST: dict[str, Any] = {}


def last_interrupted():
    """What the last interrupted run had measured (a LoadResult, a RateSearch, ...), or None."""
    return _LAST.get("partial")


def remember_interrupted(partial):
    """Keep ``partial`` as what :func:`last_interrupted` returns (for runs made of several interruptible parts)."""
    _LAST["partial"] = partial
    return partial


def _unsafe_to_interrupt(frame) -> bool:
    """True when ``frame`` (where SIGINT landed) is inside tqdm, where raising can leave its lock held, or inside an
    import, where raising leaves the module half-initialised for the rest of the process."""
    while frame is not None:
        name = frame.f_code.co_filename
        if f"{os.sep}tqdm{os.sep}" in name or name.startswith("<frozen importlib._bootstrap"):
            return True
        frame = frame.f_back
    return False


class _SigintGuard:
    """While active (main thread only): ``mode='flag'`` records SIGINT for the caller to act on; ``mode='raise'``
    raises KeyboardInterrupt, except inside drawing code or an import, where it is delivered again a moment later
    (or raised when the guarded work ends first, never left to land after it)."""

    def __init__(self, mode: str):
        self.mode, self.hit, self._previous, self._active = mode, False, None, False
        self._deferred: list[threading.Timer] = []

    def _handler(self, signum, frame) -> None:
        self.hit = True
        if self.mode == "flag":
            return
        if _unsafe_to_interrupt(frame):
            timer = threading.Timer(REDELIVER_S, signal.pthread_kill, (threading.main_thread().ident, signal.SIGINT))
            timer.daemon = True
            self._deferred.append(timer)
            timer.start()
            return
        self._cancel_deferred()
        raise KeyboardInterrupt

    def _cancel_deferred(self) -> bool:
        """Stop the pending redeliveries; True when one was pending (an interrupt not delivered yet)."""
        pending = [timer for timer in self._deferred if not timer.finished.is_set()]
        for timer in self._deferred:
            timer.cancel()
            timer.join()
        self._deferred.clear()
        return bool(pending)

    def __enter__(self) -> "_SigintGuard":
        if threading.current_thread() is threading.main_thread():
            try:
                self._previous = signal.signal(signal.SIGINT, self._handler)
                self._active = True
            except ValueError:  # not the main interpreter
                self._active = False
        return self

    def __exit__(self, exc_type, *exc) -> None:
        pending = self._cancel_deferred()  # before the handler goes: no SIGINT of ours lands after the work
        if self._active:
            signal.signal(signal.SIGINT, self._previous if self._previous is not None else signal.default_int_handler)
        if pending and exc_type is None:
            raise KeyboardInterrupt  # the interrupt waited for an import or a draw that the work ended on


def _stopped_line(progress: Progress, thread_ended: bool) -> str:
    """``closed loop: stopped after 437 requests (3 of 12 levels done); results so far kept in ...``"""
    done = f" ({progress.levels_done} of {progress.levels} levels done)" if progress.levels else ""
    line = f"{progress.desc}: stopped after {progress.requests:,} requests{done}"
    if progress.partial is not None:
        line += f"; results so far kept in {progress.kept or 'last_interrupted()'}"
    else:
        line += "; nothing was measured yet"
    if not thread_ended:
        line += f" (its worker thread did not end within {STOP_GRACE_S:g} s)"
    return line


class _Worker:
    """The coroutine's thread: its loop, its task and its outcome."""

    def __init__(self, work: Callable[[Progress], Coroutine[Any, Any, T]], progress: Progress):
        self.work, self.progress = work, progress
        self.loop: asyncio.AbstractEventLoop | None = None
        self.task: asyncio.Task | None = None
        self.cancel_asked = False
        self.outcome: dict[str, Any] = {}
        self.thread = threading.Thread(target=self._run, name="tke-playbook-run", daemon=True)

    async def _main(self):
        self.loop, self.task = asyncio.get_running_loop(), asyncio.current_task()
        if self.cancel_asked:
            raise asyncio.CancelledError
        return await self.work(self.progress)

    def _run(self) -> None:
        try:
            self.outcome["value"] = asyncio.run(self._main())
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            self.outcome["error"] = exc

    def cancel(self) -> None:
        self.cancel_asked = True
        loop, task = self.loop, self.task
        if loop is not None and task is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nothing left to cancel
                loop.call_soon_threadsafe(task.cancel)

    def stop(self) -> bool:
        """Cancel and join within STOP_GRACE_S; True when the thread ended."""
        deadline = time.monotonic() + STOP_GRACE_S
        self.cancel()
        while self.thread.is_alive() and time.monotonic() < deadline:
            with contextlib.suppress(KeyboardInterrupt):  # a second interrupt while stopping changes nothing
                self.thread.join(min(POLL_S, max(0.0, deadline - time.monotonic())))
        return not self.thread.is_alive()


def _wait(worker: _Worker, guard: _SigintGuard, bar) -> bool:
    """Wait for the worker, drawing; True when it finished, False when interrupted."""
    try:
        while worker.thread.is_alive():
            worker.thread.join(POLL_S)
            if bar is not None:
                bar.draw(worker.progress)
            if guard.hit:
                return False
    except KeyboardInterrupt:  # not the main thread (no guard), or the guard could not be installed
        return False
    return True


def run_interruptibly(work: Callable[[Progress], Coroutine[Any, Any, T]], progress: Progress,
                      bar_option=False) -> T:
    """Run ``work(progress)`` in a worker thread's event loop; the calling thread draws ``bar_option`` (see
    :func:`~tke_playbook.loadgen.progress.make_bar`) and waits. On an interrupt: cancel, join within
    STOP_GRACE_S, raise RunInterrupted with one line. The coroutine stores what it has measured in
    ``progress.partial`` (and where it is in ``progress.kept``) when it is cancelled."""
    bar = make_bar(bar_option, progress.desc)
    worker = _Worker(work, progress)
    finished, ended = False, True
    try:
        with _SigintGuard("flag") as guard:
            worker.thread.start()
            finished = _wait(worker, guard, bar)
            if not finished:
                ended = worker.stop()
    finally:
        if not finished and not worker.cancel_asked:
            worker.stop()  # any other way out of the wait (an error while drawing) still stops the work
    error = worker.outcome.get("error")
    if finished and not isinstance(error, asyncio.CancelledError):
        if bar is not None:
            bar.draw(progress, force=True)
            bar.close(None if error is not None else "\n".join([progress.summary(), *progress.notes]))
        if error is not None:
            raise error
        return worker.outcome["value"]
    line = _stopped_line(progress, ended)
    remember_interrupted(progress.partial)
    if bar is not None:
        bar.close(line)
    raise RunInterrupted(line, obj=progress.partial, shown=bool(bar is not None and bar.shows_lines))


def run_sync(coroutine: Coroutine[Any, Any, T], desc: str = "run") -> T:
    """Run a coroutine to completion from sync code (also inside Jupyter), interruptibly, without a bar."""
    async def work(_progress: Progress):
        return await coroutine

    try:
        return run_interruptibly(work, Progress(desc))
    finally:
        coroutine.close()  # never awaited when interrupted before it started: no "never awaited" warning


@contextlib.contextmanager
def interruptible(stopped: Callable[[], str], partial: Callable[[], Any] | None = None, bar=None):
    """Sync work in this thread: a KeyboardInterrupt becomes one RunInterrupted line, ``stopped()``, with
    ``partial()`` as what was kept (``bar``, a CellBar or anything with ``close(line)``, is replaced by the line).
    SIGINT is kept out of progress-bar drawing code meanwhile."""
    try:
        with _SigintGuard("raise"):
            yield
    except KeyboardInterrupt:
        kept = remember_interrupted(partial() if partial is not None else None)
        line = stopped()
        if bar is not None:
            bar.close(line)
        raise RunInterrupted(line, obj=kept, shown=bool(getattr(bar, "shows_lines", False))) from None


def _loaded(name: str) -> bool:
    """Whether module ``name`` is imported in full (not missing, not halfway through its import in a thread)."""
    spec = getattr(sys.modules.get(name), "__spec__", None)
    return name in sys.modules and not getattr(spec, "_initializing", False)


def preload(*modules: str) -> None:
    """Import ``modules`` - heavy libraries a run would import lazily, such as sentence-transformers and torch - in a
    helper thread while this thread waits. Inside :func:`interruptible` an interrupt stops the wait at once, and the
    import goes on behind it to the end (signals reach only the main thread), so the module is whole for the next
    run; an import in the main thread could only be stopped when it ends."""
    missing = [name for name in modules if not _loaded(name)]
    if not missing:
        return

    def load() -> None:
        for name in missing:
            with contextlib.suppress(Exception):  # the run's own import raises it again, where it is reported
                importlib.import_module(name)

    thread = threading.Thread(target=load, name="tke-playbook-preload", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(POLL_S)
