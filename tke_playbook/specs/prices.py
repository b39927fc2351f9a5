"""Node prices for cost estimates: a small default table you are expected to edit, and your own file on top.

The defaults are ILLUSTRATIVE on-demand figures (``verified=False``), not Tencent Cloud's list prices, which vary
by region, billing mode and discount. Put your own in a YAML, JSON or CSV file and pass its path (or set
``$TKE_PLAYBOOK_NODE_PRICES``; :func:`tke_playbook.hostenv.load_prices` reads it); its entries replace or extend
the defaults:

    # prices.yaml                                  # prices.csv
    PNV5b.8XLARGE96: {per_hour: 21.5, currency: CNY}   node_type,per_hour,currency
    SA5.LARGE8: 0.6                                    PNV5b.8XLARGE96,21.5,CNY

Used by the capacity plan (cost per day) and meant to be shared by the model scorecard.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass

import yaml

from ..errors import InvalidSpecError

# The CPU node type a local CPU server stands in for when its throughput is priced (notebook 05's cost table, 06's
# capacity plan, the corpus scorecard's report): 4 vCPU / 8 GiB, the tutorial's download node.
LOCAL_PRICE_NODE = "SA5.LARGE8"
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


def _entries(text: str, suffix: str, source: str) -> list[tuple[str, object]]:
    if suffix == "csv":
        return [(row.get("node_type", ""), row) for row in csv.DictReader(text.splitlines())]
    data = json.loads(text) if suffix == "json" else yaml.safe_load(text)
    if not isinstance(data, dict):
        raise InvalidSpecError(f"prices file {source} must map node types to prices, e.g. "
                               f"'PNV5b.8XLARGE96: {{per_hour: 21.5, currency: CNY}}'", field="prices", value=source)
    return list(data.items())


def _price(node_type: str, value, source: str) -> NodePrice:
    if isinstance(value, dict):
        try:
            per_hour = float(value.get("per_hour"))
        except (TypeError, ValueError):
            raise InvalidSpecError(f"{source}: {node_type} needs per_hour, a number (got {value.get('per_hour')!r})",
                                   field="per_hour", value=value.get("per_hour")) from None
        return NodePrice(node_type, per_hour, str(value.get("currency") or "CNY"), True, f"from {source}")
    return NodePrice(node_type, value, "CNY", True, f"from {source}")


def prices_from_text(text: str, suffix: str, source: str) -> list[NodePrice]:
    """The prices in a prices file's ``text``: CSV when ``suffix`` is ``.csv``, JSON for ``.json``, else YAML.
    ``source`` (the file's name) is what messages and each price's note name."""
    kind = suffix.lower().lstrip(".")
    return [_price(str(node_type), value, source) for node_type, value in _entries(text, kind, source)]


def default_prices() -> dict[str, NodePrice]:
    """The illustrative default table, by node type."""
    return {p.node_type: p for p in PRICES}


def with_prices(prices: Iterable[NodePrice], base: dict[str, NodePrice] | None = None) -> dict[str, NodePrice]:
    """``base`` (default: the default table) with ``prices`` replacing or extending it (node types compared
    case-insensitively)."""
    table = {p.node_type.lower(): p for p in (base if base is not None else default_prices()).values()}
    table.update({p.node_type.lower(): p for p in prices})
    return {p.node_type: p for p in table.values()}


def price_of(node_type: str, prices: dict[str, NodePrice] | None = None) -> NodePrice | None:
    """The price of ``node_type`` (case-insensitive) in ``prices`` (default: the default table), or None."""
    table = prices if prices is not None else default_prices()
    wanted = str(node_type).strip().lower()
    return next((p for name, p in table.items() if name.lower() == wanted), None)


def price_rows(prices: dict[str, NodePrice] | None = None) -> list[dict]:
    """The table (default: the default one) as rows: node type, per hour, per day, currency, verified, note."""
    table = prices if prices is not None else default_prices()
    return [{"node_type": p.node_type, "per_hour": p.per_hour, "per_day": p.per_day, "currency": p.currency,
             "verified": p.verified, "note": p.note} for p in table.values()]
