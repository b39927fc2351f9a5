"""What a playbook tells the reader while a step runs, as events rather than ``print`` calls.

A step (the cluster deploy following the vLLM log, for one) sends :class:`Event` values to the playbook's sink, a
callable taking one event. The default sink, :func:`show_event`, writes the event's text to the cell's output,
exactly what the notebooks printed before; pass another (``open_target(on_event=events.append)``, a logger) to
collect or route them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .report import Level

WARNING_MARK = "!! "  # what a warning (a diagnosis while waiting) starts with in the cell's output


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
        """The text a notebook shows: the message, warnings marked ``!!``."""
        return f"{WARNING_MARK}{self.message}" if self.level is Level.WARNING else self.message


EventSink = Callable[[Event], None]


def show_event(event: Event) -> None:
    """The default sink: the event's text as one line of the cell's output."""
    print(event, flush=True)
