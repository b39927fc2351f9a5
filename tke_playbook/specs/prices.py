"""Node prices for cost estimates: a small default table you are expected to edit, and your own file on top.

The defaults are ILLUSTRATIVE on-demand figures (``verified=False``), not Tencent Cloud's list prices, which vary
by region, billing mode and discount. Put your own in a YAML, JSON or CSV file and pass its path (or set
``$TKE_PLAYBOOK_NODE_PRICES``); its entries replace or extend the defaults:

    # prices.yaml                                  # prices.csv
    PNV5b.8XLARGE96: {per_hour: 21.5, currency: CNY}   node_type,per_hour,currency
    SA5.LARGE8: 0.6                                    PNV5b.8XLARGE96,21.5,CNY

Used by the capacity plan (cost per day) and meant to be shared by the model scorecard.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..errors import InvalidSpecError

PRICES_ENV = "TKE_PLAYBOOK_NODE_PRICES"
_ILLUSTRATIVE = "illustrative on-demand estimate, not a list price: put your own in a prices file"


@dataclass(frozen=True)
class NodePrice:
    """What one node of ``node_type`` costs per hour."""

    node_type: str
    per_hour: float
    currency: str = "CNY"
    verified: bool = False
    note: str = _ILLUSTRATIVE

    def __post_init__(self):
        if not isinstance(self.node_type, str) or not self.node_type.strip():
            raise InvalidSpecError("a node price needs a node type such as 'PNV5b.8XLARGE96'", field="node_type",
                                   value=self.node_type)
        value = self.per_hour
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise InvalidSpecError(f"price per hour {value!r} for {self.node_type} must be a number >= 0, "
                                   f"such as 21.5", field="per_hour", value=value)
        object.__setattr__(self, "per_hour", float(value))

    @property
    def per_day(self) -> float:
        return self.per_hour * 24


PRICES: tuple[NodePrice, ...] = (
    NodePrice("PNV5b.8XLARGE96", 20.0), NodePrice("PNV5b.16XLARGE192", 40.0),
    NodePrice("PNV5b.32XLARGE384", 80.0), NodePrice("PNV4.7XLARGE116", 12.0), NodePrice("PNV4.14XLARGE232", 24.0),
    NodePrice("GN7.2XLARGE32", 6.0), NodePrice("GN7.5XLARGE80", 9.0), NodePrice("GN10Xp.2XLARGE40", 16.0),
    NodePrice("GT4.4XLARGE96", 28.0), NodePrice("GT4.8XLARGE192", 56.0), NodePrice("SA5.LARGE8", 0.6),
)


def _entries(path: Path) -> list[tuple[str, object]]:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".csv":
        return [(row.get("node_type", ""), row) for row in csv.DictReader(text.splitlines())]
    data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    if not isinstance(data, dict):
        raise InvalidSpecError(f"prices file {path} must map node types to prices, e.g. "
                               f"'PNV5b.8XLARGE96: {{per_hour: 21.5, currency: CNY}}'", field="prices", value=str(path))
    return list(data.items())


def _price(node_type: str, value, path: Path) -> NodePrice:
    if isinstance(value, dict):
        try:
            per_hour = float(value.get("per_hour"))
        except (TypeError, ValueError):
            raise InvalidSpecError(f"{path}: {node_type} needs per_hour, a number (got {value.get('per_hour')!r})",
                                   field="per_hour", value=value.get("per_hour")) from None
        return NodePrice(node_type, per_hour, str(value.get("currency") or "CNY"), True, f"from {path}")
    return NodePrice(node_type, value, "CNY", True, f"from {path}")


def load_prices(path: str | os.PathLike | None = None) -> dict[str, NodePrice]:
    """The default table, overridden by the prices file at ``path`` (or ``$TKE_PLAYBOOK_NODE_PRICES``)."""
    table = {p.node_type.lower(): p for p in PRICES}
    chosen = path or os.environ.get(PRICES_ENV)
    if chosen:
        file = Path(chosen).expanduser()
        if not file.is_file():
            raise InvalidSpecError(f"prices file {file} does not exist: write one (YAML, JSON or CSV) or unset "
                                   f"${PRICES_ENV}", field="prices", value=str(file))
        for node_type, value in _entries(file):
            price = _price(str(node_type), value, file)
            table[price.node_type.lower()] = price
    return {p.node_type: p for p in table.values()}


def price_of(node_type: str, prices: dict[str, NodePrice] | None = None) -> NodePrice | None:
    """The price of ``node_type`` (case-insensitive), or None when the table has none."""
    table = prices if prices is not None else load_prices()
    wanted = str(node_type).strip().lower()
    return next((p for name, p in table.items() if name.lower() == wanted), None)


def price_rows(prices: dict[str, NodePrice] | None = None) -> list[dict]:
    """The table as rows: node type, per hour, per day, currency, verified, note."""
    table = prices if prices is not None else load_prices()
    return [{"node_type": p.node_type, "per_hour": p.per_hour, "per_day": p.per_day, "currency": p.currency,
             "verified": p.verified, "note": p.note} for p in table.values()]
