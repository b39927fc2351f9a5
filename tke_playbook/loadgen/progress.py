"""Progress bars for load runs: one bar per run, advanced as each request finishes (tqdm; a widget in Jupyter).

``progress`` arguments accept ``False`` (no bar), ``True`` (a bar on stderr, or a widget in a notebook), or any
object with ``update(n)`` and ``close()`` (a bar of your own, or a recorder in tests).
"""

from __future__ import annotations

from typing import Protocol

from ..errors import InvalidSpecError


class Bar(Protocol):
    """What a progress bar needs: ``update(n)`` and ``close()`` (``set_postfix_str`` is used when present)."""

    def update(self, n: int = 1) -> object: ...

    def close(self) -> object: ...


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


def make_bar(progress: bool | Bar | None, total: int, desc: str) -> Bar:
    """A bar for ``total`` requests: tqdm when ``progress`` is True, the object itself when it is a bar."""
    if progress is None or progress is False:
        return _NoBar()
    if progress is True:
        from tqdm.auto import tqdm  # late: tqdm.auto probes for Jupyter widgets; only a bar needs it

        return tqdm(total=total, desc=desc, unit="req", leave=False, mininterval=0.5)
    if not (hasattr(progress, "update") and hasattr(progress, "close")):
        raise InvalidSpecError("progress must be True, False or an object with update(n) and close(), such as a "
                               "tqdm bar", field="progress", value=type(progress).__name__)
    return progress


def describe(progress: Bar, text: str) -> None:
    """Show ``text`` beside the bar (the level being run), when the bar can."""
    setter = getattr(progress, "set_postfix_str", None)
    if setter is not None:
        setter(text)
