"""What storing vectors costs: a small editable table of prices per GiB-month, and your own file on top - the
storage twin of the node price table (:mod:`tke_playbook.specs.prices`).

The defaults are ILLUSTRATIVE figures (``verified=False``), not Tencent Cloud's list prices, which vary by region,
billing mode and discount: verify them, edit the table in a notebook (:func:`storage_price_table` gives it as a
DataFrame; pass it as ``storage_prices=``), or put your own in a YAML or JSON file (``$TKE_PLAYBOOK_STORAGE_PRICES``)
whose entries replace or extend the defaults::

    # storage-prices.yaml
    cfs-standard: {per_gib_month: 0.35, currency: CNY, description: CFS standard (the PVC's file system)}
    memory: 45

Where an index lives decides its price: at rest on the volume that holds the model (CFS) or in object storage
(COS), on a block disk (CBS), or in the RAM of the nodes a vector database serves it from.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from ..errors import InvalidSpecError
from ..hostenv import STORAGE_PRICES_ENV
from ..specs.names import unknown

DEFAULT_STORAGE = "cfs-standard"
GIB = 2 ** 30
_ILLUSTRATIVE = "illustrative estimate, not a list price: verify it, or put your own in a storage prices file"


@dataclass(frozen=True)
class StoragePrice:
    """What one GiB kept for a month costs in ``name`` (a storage class or where the index lives)."""

    name: str
    per_gib_month: float
    currency: str = "CNY"
    description: str = ""
    verified: bool = False
    note: str = _ILLUSTRATIVE  # where the figure comes from: the table's "source" (it says "verify" until verified)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise InvalidSpecError("a storage price needs a name such as 'cfs-standard'", field="name",
                                   value=self.name)
        value = self.per_gib_month
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise InvalidSpecError(f"price per GiB-month {value!r} for {self.name} must be a number >= 0, such as "
                                   "0.35", field="per_gib_month", value=value)
        object.__setattr__(self, "per_gib_month", float(value))

    def assumption(self) -> str:
        """The sentence a figure or table states its storage cost under."""
        source = "verified" if self.verified else "illustrative, verify"
        return (f"storage priced as {self.description or self.name} at {self.per_gib_month:g} {self.currency} per "
                f"GiB-month ({source})")


STORAGE_PRICES: tuple[StoragePrice, ...] = (
    StoragePrice("cfs-standard", 0.35, description="CFS standard file storage (where the model's PVC lives)"),
    StoragePrice("cbs-premium", 0.35, description="CBS premium cloud disk"),
    StoragePrice("cbs-ssd", 1.0, description="CBS SSD cloud disk"),
    StoragePrice("cos-standard", 0.12, description="COS standard object storage"),
    StoragePrice("memory", 45.0, description="node memory (a vector database serving the index from RAM)"),
)


def _entry(name: str, value, path: Path) -> StoragePrice:
    if isinstance(value, dict):
        try:
            per = float(value.get("per_gib_month"))
        except (TypeError, ValueError):
            raise InvalidSpecError(f"{path}: {name} needs per_gib_month, a number (got "
                                   f"{value.get('per_gib_month')!r})", field="per_gib_month",
                                   value=value.get("per_gib_month")) from None
        return StoragePrice(name, per, str(value.get("currency") or "CNY"), str(value.get("description") or ""),
                            True, f"from {path}")
    return StoragePrice(name, value, "CNY", "", True, f"from {path}")


def load_storage_prices(path: str | os.PathLike | None = None,
                        environ: Mapping[str, str] | None = None) -> dict[str, StoragePrice]:
    """The default table, overridden by the YAML/JSON file at ``path`` (or ``$TKE_PLAYBOOK_STORAGE_PRICES`` as
    ``environ`` says, default the process's; the playbook's settings read it once and pass ``environ={}``)."""
    table = {p.name: p for p in STORAGE_PRICES}
    chosen = path or (os.environ if environ is None else environ).get(STORAGE_PRICES_ENV)
    if chosen:
        file = Path(chosen).expanduser()
        if not file.is_file():
            raise InvalidSpecError(f"storage prices file {file} does not exist: write one (YAML or JSON) or unset "
                                   f"${STORAGE_PRICES_ENV}", field="storage_prices", value=str(file))
        data = yaml.safe_load(file.read_text(encoding="utf-8"))  # JSON is YAML
        if not isinstance(data, dict):
            raise InvalidSpecError(f"storage prices file {file} must map names to prices, e.g. "
                                   "'cfs-standard: {per_gib_month: 0.35, currency: CNY}'", field="storage_prices",
                                   value=str(file))
        table.update({str(k): _entry(str(k), v, file) for k, v in data.items()})
    return table


def storage_price_table(path=None, *, prices: Mapping[str, StoragePrice] | None = None) -> pd.DataFrame:
    """The storage prices as a DataFrame to read or edit (then pass it as ``storage_prices=``). ``prices``: the table
    already read (``pb.settings.storage_prices()``, the settings' file); else :func:`load_storage_prices` of
    ``path``."""
    rows = [{"storage": p.name, "per_gib_month": p.per_gib_month, "currency": p.currency,
             "description": p.description, "source": p.note}
            for p in (prices if prices is not None else load_storage_prices(path)).values()]
    return pd.DataFrame(rows).set_index("storage")


def storage_price(name: str = DEFAULT_STORAGE, prices: pd.DataFrame | None = None) -> StoragePrice:
    """The price of storage ``name`` from an (edited) :func:`storage_price_table`, or from the defaults and file."""
    if prices is None:
        table = load_storage_prices()
        if name not in table:
            raise unknown("storage", name, list(table))
        return table[name]
    missing = {"per_gib_month", "currency"} - set(prices.columns)
    if missing:
        raise InvalidSpecError(f"the storage price table lacks {sorted(missing)}: start from storage_price_table()",
                               field="storage_prices", value=sorted(missing))
    if name not in prices.index:
        raise unknown("storage", name, [str(i) for i in prices.index])
    row = prices.loc[name]
    source = str(row.get("source", ""))
    return StoragePrice(name, float(row["per_gib_month"]), str(row["currency"]), str(row.get("description", "")),
                        verified="verify" not in source, note=source or _ILLUSTRATIVE)
