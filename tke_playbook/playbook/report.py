"""What the notebooks show besides charts: specs as settings tables, tidy result tables and highlighted notes.

Everything here takes data and returns something that displays well in Jupyter and in the HTML export (a
DataFrame, or a :class:`Note` with a coloured HTML form and a plain-text form). Nothing prints secrets: specs
hold Secret *names*, never values.
"""

from __future__ import annotations

import dataclasses
import enum
import html
import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from ..errors import InvalidSpecError
from ..reporting import Level
from ..specs.names import unknown


_COLOURS = {Level.OK: ("#1a7f37", "#dafbe1"), Level.INFO: ("#0969da", "#ddf4ff"),
            Level.WARNING: ("#9a6700", "#fff8c5")}
_MARKS = {Level.OK: "OK", Level.INFO: "Note", Level.WARNING: "Warning"}


@dataclasses.dataclass(frozen=True)
class Note:
    """A short message for the reader, shown as a coloured box (HTML) or ``Warning: ...`` (text)."""

    text: str
    level: Level = Level.INFO

    def __post_init__(self):
        if not self.text or not self.text.strip():
            raise InvalidSpecError("A note needs text: say what the reader should know", field="text",
                                   value=self.text)
        object.__setattr__(self, "level", Level(self.level))

    def __str__(self) -> str:
        return f"{_MARKS[self.level]}: {self.text}"

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        ink, paper = _COLOURS[self.level]
        return (f'<div style="border-left:4px solid {ink};background:{paper};padding:6px 10px;margin:4px 0;'
                f'max-width:820px"><b style="color:{ink}">{_MARKS[self.level]}</b>: {html.escape(self.text)}</div>')


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return ", ".join(f"{k}={_plain(v)}" for k, v in value.items()) or "-"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(_plain(v)) for v in value) or "-"
    if value is None:
        return "-"
    return value if isinstance(value, (bool, int, float)) else str(value)


def spec_table(spec: Any, fields: Sequence[str] | None = None) -> pd.DataFrame:
    """A frozen spec as a table of settings (one row per setting, column ``value``): enums by value, empty values
    as ``-``. ``fields`` picks and orders the settings shown (default: all of them)."""
    if not dataclasses.is_dataclass(spec) or isinstance(spec, type):
        raise InvalidSpecError(f"spec_table needs a spec (a dataclass instance), not {type(spec).__name__}",
                               field="spec", value=type(spec).__name__)
    names = [f.name for f in dataclasses.fields(spec) if not f.name.startswith("_")]
    if fields is not None:
        for name in fields:
            if name not in names:
                raise unknown(f"{type(spec).__name__} setting", name, names)
        names = list(fields)
    return pd.DataFrame({"value": [str(_plain(getattr(spec, name))) for name in names]}, index=names)


MISSING = "—"  # what a table shows for a value that does not exist (never NaN, <NA> or None)


def readable_number(value: float) -> str:
    """A float as a reader wants it in a table: thousands separators, no scientific notation, whole numbers without
    decimals, at most two decimals from 1 to 100 with a trailing zero dropped (16.6, not 16.60: the value was rounded
    to one decimal, and 16.60 would claim a second beside 108.9 in the same column), two significant decimals for
    small values (0.0042, not 4.2e-03)."""
    if value != value:  # NaN
        return MISSING
    if value in (float("inf"), float("-inf")):
        return "∞" if value > 0 else "-∞"
    magnitude = abs(value)
    if value == int(value) and magnitude < 1e15:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:,.1f}"
    if magnitude >= 1:
        shown = f"{value:,.2f}"
        return shown[:-1] if shown.endswith("0") else shown
    places = 2 if magnitude == 0 else max(2, 1 - math.floor(math.log10(magnitude)))
    return f"{value:.{min(places, 12)}f}"


def readable_tables() -> None:
    """pandas display settings for notebooks: text is never cut ("third-party table of Tencent instance t…"), and
    floats read as :func:`readable_number` (no scientific notation). :func:`~tke_playbook.playbook.display.install`
    applies them inside IPython."""
    pd.set_option("display.max_colwidth", None)
    pd.set_option("display.float_format", readable_number)


def tidy(frame: pd.DataFrame, digits: int = 1) -> pd.DataFrame:
    """A result table for reading: columns without any value dropped, floats rounded to ``digits`` (two more
    for columns below 10, such as error rates), whole numbers (levels such as concurrency 4.0, request counts)
    shown as integers, and a missing value shown as "—" (never NaN or <NA>). The input is not changed."""
    if not isinstance(frame, pd.DataFrame):
        raise InvalidSpecError(f"tidy needs a DataFrame, not {type(frame).__name__}", field="frame",
                               value=type(frame).__name__)
    out = frame.dropna(axis=1, how="all").copy()
    for column in out.columns:
        series = out[column]
        if pd.api.types.is_float_dtype(series):
            values = series.dropna()
            if len(values) and (values == values.round()).all() and values.abs().max() < 2**53:
                series = series.astype("Int64")
            else:  # small numbers (error rates, fractions) keep two more places: 0.05 must not read 0.1
                series = series.round(digits + 2 if len(values) and values.abs().max() < 10 else digits)
        if series.isna().any():
            series = series.astype(object).where(series.notna(), MISSING)
        out[column] = series
    return out


def nothing_note(frame: pd.DataFrame, text: str) -> Any:
    """``frame``, or - when it has no rows - a :class:`Note` saying ``text`` (e.g. "Nothing to remove"): an empty
    table tells a reader nothing."""
    return Note(text, Level.INFO) if frame is None or len(frame) == 0 else frame


def headroom_note(ceiling_rps: float | None, *summaries: pd.DataFrame) -> Note:
    """Compare the best req/s any of ``summaries`` reached with the load generator's own ceiling (req/s against
    a server that does nothing). Within half of it the generator shapes the numbers: a warning says so."""
    from ..loadgen import headroom_warning

    if not ceiling_rps or not math.isfinite(ceiling_rps) or ceiling_rps <= 0:
        return Note("The load generator's ceiling was not measured, so it is unknown whether the generator "
                    "limited these numbers: run measure_ceiling() first.", Level.WARNING)
    frames = [s for s in summaries if s is not None and not s.empty and "req_per_s" in s]
    if not frames:
        return Note("No load results to compare with the generator's ceiling: run a sweep first.", Level.INFO)
    combined = pd.concat([f[["req_per_s"]] for f in frames], ignore_index=True)
    warning = headroom_warning(combined, ceiling_rps)
    if warning:
        return Note(warning, Level.WARNING)
    best = float(combined["req_per_s"].max())
    share = best / ceiling_rps
    share_text = "under 1%" if share < 0.01 else f"{share:.0%}"
    return Note(f"The server peaked at {best:,.1f} req/s, {share_text} of the {ceiling_rps:,.0f} req/s this load "
                "generator can send from here: the numbers measure the server, not the generator.", Level.OK)
