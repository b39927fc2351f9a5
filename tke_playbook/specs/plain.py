"""Specs as plain JSON data and back: what the state file records and a later notebook rebuilds.

:class:`PlainSpec` gives a frozen spec ``to_dict()`` (enums by value, tuples as lists, paths as text) and
``from_dict(data)`` (keys the spec does not have are ignored, lists become tuples again, and validation runs again
because the spec is built anew).
"""

from __future__ import annotations

import dataclasses
import enum
from pathlib import PurePath
from typing import Any


def plain(value: Any) -> Any:
    """``value`` as JSON-able data: enums by value, tuples and lists as lists, mappings as dicts, paths as text."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, PurePath):
        return str(value)
    return value


def tupled(value: Any) -> Any:
    """A list read back from JSON as the tuple a spec holds (a list of pairs as a tuple of tuples)."""
    if isinstance(value, list):
        return tuple(tuple(v) if isinstance(v, list) else v for v in value)
    return value


def field_values(spec: Any) -> dict:
    """The plain data of every public field of a dataclass instance (fields named ``_...`` are left out)."""
    return {f.name: plain(getattr(spec, f.name)) for f in dataclasses.fields(spec) if not f.name.startswith("_")}


def known_fields(kind: type, data: dict) -> dict:
    """The entries of ``data`` that are public fields of the dataclass ``kind``, lists as tuples."""
    names = {f.name for f in dataclasses.fields(kind) if f.init and not f.name.startswith("_")}
    return {k: tupled(v) for k, v in data.items() if k in names}


class PlainSpec:
    """``to_dict``/``from_dict`` for a frozen spec (a mixin: it adds no fields)."""

    def to_dict(self) -> dict:
        """The spec as plain JSON-able data."""
        return field_values(self)

    @classmethod
    def from_dict(cls, data: dict):
        """The spec :meth:`to_dict` recorded (validation runs again)."""
        return cls(**known_fields(cls, data))
