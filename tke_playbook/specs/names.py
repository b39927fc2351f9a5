"""Validation of names and values that end up in Kubernetes objects, and "did you mean" lookups.

Every check raises :class:`~tke_playbook.errors.InvalidSpecError` with a message that says what to do.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable

from ..errors import InvalidSpecError, UnknownNameError

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# Kubernetes resource.Quantity: a signed decimal number with an optional binary/decimal SI suffix or exponent.
_QUANTITY = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?\d+)?$")
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": 1e-9, "u": 1e-6, "m": 1e-3, "": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15,
            "E": 1e18}


def validate_name(value: str, what: str, *, max_length: int = 63) -> str:
    """A DNS-1123 label (Service, Deployment, PVC and Job names must be these): return it or raise."""
    if not isinstance(value, str) or not value:
        raise InvalidSpecError(f"{what} must be a non-empty string: use lowercase letters, digits and '-'",
                               field=what, value=value)
    if len(value) > max_length:
        raise InvalidSpecError(f"{what} '{value}' is {len(value)} characters long: Kubernetes allows at most "
                               f"{max_length}; choose a shorter name", field=what, value=value)
    if not _DNS1123_LABEL.fullmatch(value):
        raise InvalidSpecError(f"{what} '{value}' is not a valid Kubernetes name: use lowercase letters, digits "
                               f"and '-', starting and ending with a letter or digit", field=what, value=value)
    return value


def validate_subdomain(value: str, what: str) -> str:
    """A DNS-1123 subdomain (StorageClass, Secret and ConfigMap names may contain dots)."""
    if not isinstance(value, str) or not value or len(value) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(value):
        raise InvalidSpecError(f"{what} '{value}' is not a valid Kubernetes name: use lowercase letters, digits, "
                               f"'-' and '.', at most 253 characters", field=what, value=value)
    return value


LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")  # a label key's name part, or a value


def validate_label(key: str, value: str = "", what: str = "label") -> None:
    """A Kubernetes label (or annotation, ``what``) key - an optional DNS-subdomain prefix and a name of at most 63
    characters - and a label value of at most 63 characters (empty allowed)."""
    prefix, _, name = key.rpartition("/")
    if prefix:
        validate_subdomain(prefix, f"label prefix in '{key}'")
    if not name or len(name) > 63 or not LABEL_NAME.fullmatch(name):
        raise InvalidSpecError(f"{what} key '{key}' is not valid: use letters, digits, '-', '_' and '.' (at most 63), "
                               f"optionally after a prefix like 'example.com/'", field=f"{what}s", value=key)
    if len(value) > 63 or (value and not LABEL_NAME.fullmatch(value)):
        raise InvalidSpecError(f"{what} value '{value}' for '{key}' is not valid: use letters, digits, '-', '_' and "
                               f"'.', at most 63 characters", field=f"{what}s", value=value)


def validate_quantity(value: str, what: str) -> str:
    """A Kubernetes quantity such as ``100Gi``, ``500m`` or ``1``."""
    text = str(value).strip() if isinstance(value, (str, int)) else None
    if not text or not _QUANTITY.fullmatch(text):
        raise InvalidSpecError(f"{what} '{value}' is not a Kubernetes quantity: write a number with an optional "
                               f"unit, such as '100Gi', '15Gi', '500m' or '2'", field=what, value=value)
    return text


def quantity_to_float(value: str) -> float:
    """The numeric value of a quantity (``'15Gi'`` → 16106127360.0, ``'500m'`` → 0.5)."""
    text = validate_quantity(value, "quantity")
    match = re.fullmatch(r"([+-]?(?:\d+(?:\.\d*)?|\.\d+))(.*)", text)
    number, suffix = float(match.group(1)), match.group(2)
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    if suffix in _DECIMAL:
        return number * _DECIMAL[suffix]
    return number * 10 ** int(suffix[1:])


def validate_number(value, what: str, example, *, minimum: float = 0.0, whole: bool = False,
                    strict: bool = True) -> float | int:
    """A finite number (not a bool) above ``minimum`` (at least it when ``strict`` is false), whole if asked;
    returned as int or float."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(float(value)) and (
        value > minimum if strict else value >= minimum) and (not whole or int(value) == value)
    if not ok:
        kind = f"{'whole ' if whole else ''}number"
        bound = ("a positive " + kind) if strict and minimum == 0 else (
            f"a {kind} above {minimum:g}" if strict else f"a {kind} of at least {minimum:g}")
        raise InvalidSpecError(f"{what} {value!r} must be {bound}, such as {example}", field=what, value=value)
    return int(value) if whole else float(value)


def validate_port(value: int, what: str = "port") -> int:
    """A TCP port, 1–65535."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise InvalidSpecError(f"{what} {value!r} is outside 1–65535: choose a TCP port such as 60000",
                               field=what, value=value)
    return value


def slug(text: str, *, max_length: int = 40) -> str:
    """A DNS-1123 label derived from free text, e.g. a model id: ``'BAAI/bge-m3'`` → ``'bge-m3'``."""
    base = text.rsplit("/", 1)[-1].lower()
    cleaned = re.sub(r"[^a-z0-9]+", "-", base).strip("-")[:max_length].strip("-")
    return cleaned or "model"


def suggest(name: str, choices: Iterable[str], *, n: int = 3) -> tuple[str, ...]:
    """Close matches for ``name`` among ``choices``, case-insensitively, best first."""
    by_lower: dict[str, str] = {}
    for choice in choices:
        by_lower.setdefault(choice.lower(), choice)
    hits = difflib.get_close_matches(name.lower(), list(by_lower), n=n, cutoff=0.6)
    if not hits:  # a short name may be a substring of a full id: "bge-m" -> "BAAI/bge-m3"
        hits = [low for low in by_lower if name.lower() in low][:n]
    return tuple(dict.fromkeys(by_lower[h] for h in hits))


def unknown(kind: str, name: str, choices: Iterable[str], *, canonical=lambda s: s) -> UnknownNameError:
    """An :class:`UnknownNameError` whose message suggests the closest known names."""
    choices = list(choices)
    hints = tuple(dict.fromkeys(canonical(c) for c in suggest(name, choices)))
    if hints:
        tail = " or ".join(f"'{h}'" for h in hints)
        message = f"Unknown {kind} '{name}'. Did you mean {tail}?"
    else:
        known = ", ".join(sorted({canonical(c) for c in choices}))
        message = f"Unknown {kind} '{name}'. Known: {known}."
    return UnknownNameError(message, kind=kind, name=name, suggestions=hints)
