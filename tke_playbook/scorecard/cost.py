"""Quality against cost: each system's nDCG@10 joined with its measured throughput (tokens/s per GPU, e.g. from
notebook 06's load test) and its node type's hourly price into a cost per million tokens.

Prices come from :mod:`tke_playbook.specs.prices` - the project's one editable node price table (its defaults are
illustrative, not list prices: verify them, or put your own in ``$TKE_PLAYBOOK_NODE_PRICES``); GPUs per node
from :mod:`tke_playbook.specs.hardware`. :func:`price_table` gives the table as a DataFrame to edit in a notebook.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from ..errors import InvalidSpecError, UnknownNameError
from ..hostenv import load_prices
from ..reporting import estimate_text
from ..specs.hardware import get_node_type
from ..specs.prices import LOCAL_PRICE_NODE, NodePrice
from .registry import Kind

VERIFY = "list price, verify"
RERANK_NOT_PRICED = "not priced: its /rerank calls were not timed"
UNPRICED_BECAUSE = "unpriced because"


def _gpus(node_type: str) -> int:
    try:
        return get_node_type(node_type).gpu_count
    except UnknownNameError:
        return 0


def price_table(path=None, *, prices: Mapping[str, NodePrice] | None = None) -> pd.DataFrame:
    """Node prices with GPUs per node: edit it and pass it to :func:`cost_table`. ``prices``: the table already
    read (``pb.settings.node_prices()``, the settings' prices file); else ``tke_playbook.specs.prices``' defaults
    with the prices file ``path`` (or ``$TKE_PLAYBOOK_NODE_PRICES``) on top. Rows from the illustrative defaults
    say so in ``source``."""
    rows = [{"node_type": p.node_type, "hourly_price": p.per_hour, "gpus": _gpus(p.node_type),
             "currency": p.currency, "source": p.note if p.verified else f"{VERIFY} ({p.note})"}
            for p in (prices if prices is not None else load_prices(path)).values()]
    return pd.DataFrame(rows).set_index("node_type")


@dataclass(frozen=True)
class Throughput:
    """A measured throughput: ``tokens_per_s`` on ``accelerators`` GPUs (1 for a CPU node) of ``node_type``;
    ``texts``/``tokens``: the sample it was measured on, where known (so a reader can judge how rough it is)."""

    system: str
    tokens_per_s: float
    node_type: str
    accelerators: int = 1
    source: str = "measured"
    texts: int | None = None
    tokens: int | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.tokens_per_s, (int, float)) and self.tokens_per_s > 0):
            raise InvalidSpecError(f"{self.system}: tokens_per_s={self.tokens_per_s!r}: use the measured tokens per "
                                   "second (> 0), e.g. from 06's load test", field="tokens_per_s",
                                   value=self.tokens_per_s)
        if isinstance(self.accelerators, bool) or not isinstance(self.accelerators, int) or self.accelerators < 1:
            raise InvalidSpecError(f"{self.system}: accelerators={self.accelerators!r}: use how many GPUs served "
                                   "that throughput (1 on a CPU node)", field="accelerators", value=self.accelerators)

    @property
    def tokens_per_s_per_accelerator(self) -> float:
        return self.tokens_per_s / self.accelerators

    @property
    def sample(self) -> str:
        """``measured on 58 texts, 1,234 tokens`` (empty when the sample is not known)."""
        parts = [f"{n:,} {what}" for n, what in ((self.texts, "texts"), (self.tokens, "tokens")) if n is not None]
        return "measured on " + ", ".join(parts) if parts else ""

    def describe(self) -> str:
        """``2,778 tokens/s on SA5.LARGE8 (its source; measured on 58 texts, 1,234 tokens)``: the throughput per
        accelerator, where and how it was measured."""
        how = "; ".join(part for part in (self.source, self.sample) if part)
        return f"{self.tokens_per_s_per_accelerator:,.0f} tokens/s on {self.node_type} ({how})"


def throughputs_by_system(throughputs: Sequence[Throughput] | Mapping[str, Throughput] | None) -> dict[str, Throughput]:
    """``{system: Throughput}`` from a mapping or a list (as :func:`scorecard_throughputs` returns)."""
    if throughputs is None:
        return {}
    if isinstance(throughputs, Mapping):
        return dict(throughputs)
    found = list(throughputs)
    wrong = [type(t).__name__ for t in found if not isinstance(t, Throughput)]
    if wrong:
        raise InvalidSpecError(f"throughputs holds {wrong[0]}, not Throughput: pass scorecard_throughputs(result) "
                               "or Throughput(system, tokens_per_s, node_type) values", field="throughputs",
                               value=wrong[0])
    return {t.system: t for t in found}


def unpriced_reason(kind: str | None) -> str:
    """Why a system of ``kind`` has no cost per million tokens: a lexical one needs no model server; a two-stage
    pipeline's reranking goes through the model's ``/rerank``, whose calls are not timed (it is not free)."""
    if kind == Kind.LEXICAL.value:
        return "no model to serve (word overlap)"
    return RERANK_NOT_PRICED if kind == Kind.TWO_STAGE.value else "no throughput measured"


def throughput_from_summary(system: str, summary: pd.DataFrame, node_type: str, accelerators: int = 1) -> Throughput:
    """The best ``tokens_per_s`` of a loadgen summary (one row per load level, from notebook 06) without errors."""
    if "tokens_per_s" not in getattr(summary, "columns", ()):
        raise InvalidSpecError("the summary has no tokens_per_s column: pass loadgen's summary DataFrame",
                               field="summary", value=list(getattr(summary, "columns", [])))
    clean = summary[summary["errors"] == 0] if "errors" in summary.columns else summary
    best = float(clean["tokens_per_s"].max()) if len(clean) else float("nan")
    if not best > 0:
        raise InvalidSpecError("no load level finished without errors and with tokens counted: rerun 06 at a "
                               "lower load", field="summary", value=len(summary))
    return Throughput(system, best, node_type, accelerators, source="loadgen summary (best error-free level)")


def cost_per_million_tokens(throughput: Throughput, hourly_price: float, gpus: int) -> float:
    """Price of one accelerator-hour (a CPU node counts as one) / tokens one accelerator embeds in an hour, x 1e6."""
    return hourly_price / max(gpus, 1) / (throughput.tokens_per_s_per_accelerator * 3600) * 1e6


def _price_rows(prices) -> dict[str, dict]:
    table = prices if isinstance(prices, pd.DataFrame) else price_table()
    missing = {"hourly_price", "gpus"} - set(table.columns)
    if missing:
        raise InvalidSpecError(f"the price table lacks {sorted(missing)}: start from scorecard.price_table()",
                               field="prices", value=sorted(missing))
    return {str(i).lower(): {"node_type": str(i), **r.to_dict()} for i, r in table.iterrows()}


def cost_table(quality: pd.DataFrame, throughputs: Sequence[Throughput] | Mapping[str, Throughput],
               prices: pd.DataFrame | None = None, *, metric: str = "ndcg@10") -> pd.DataFrame:
    """One row per system of ``quality`` (a scorecard table): the metric and its interval, throughput per
    accelerator, node type, price and cost per million tokens (NaN where no throughput was given, and
    ``unpriced because`` says why: :func:`unpriced_reason`)."""
    found = throughputs_by_system(throughputs)
    table, rows = _price_rows(prices), []
    for system, row in quality.iterrows():
        t = found.get(system)
        price = table.get(t.node_type.lower()) if t else None
        if t and price is None:
            raise InvalidSpecError(f"no price for node type {t.node_type!r} (system {system}): add it to the price "
                                   "table (scorecard.price_table(), or a prices file in $TKE_PLAYBOOK_NODE_PRICES)",
                                   field="prices", value=t.node_type)
        cost = cost_per_million_tokens(t, float(price["hourly_price"]), int(price["gpus"])) if t else float("nan")
        rows.append({"system": system, **({"kind": row["kind"]} if "kind" in row else {}),
                     metric: row[metric], "low": row.get(f"{metric} low"),
                     "high": row.get(f"{metric} high"),
                     "tokens/s per accelerator": t.tokens_per_s_per_accelerator if t else float("nan"),
                     "node type": price["node_type"] if t else None,
                     "price per node-hour": float(price["hourly_price"]) if t else float("nan"),
                     "currency": price.get("currency") if t else None, "cost per 1M tokens": cost,
                     "price source": price.get("source") if t else None, "throughput source": t.source if t else None,
                     UNPRICED_BECAUSE: None if t else unpriced_reason(row.get("kind"))})
    return pd.DataFrame(rows).set_index("system")


def scorecard_throughputs(result, node_type: str = LOCAL_PRICE_NODE, measured_on: str = "") -> list[Throughput]:
    """Single-stream throughput of each dense system, from the tokens its endpoint reported during a cold
    scorecard run (only endpoints that report usage; a rough figure - prefer 06's load test). ``measured_on``
    (e.g. ``pb.serving.measured_on()``) is added to each throughput's source."""
    out, source = [], "scorecard cold run, one stream" + (f", {measured_on}" if measured_on else "")
    for system, calls in result.embed_calls.items():
        counted = [c for c in calls if c.get("tokens")]
        seconds = sum(c["seconds"] for c in counted)
        tokens = sum(c["tokens"] for c in counted)
        if counted and seconds > 0:
            out.append(Throughput(system, tokens / seconds, node_type, source=source,
                                  texts=sum(int(c.get("texts") or 0) for c in counted), tokens=int(tokens)))
    return out


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _or_dash(value, fmt: str = "{}") -> str:
    return "–" if _missing(value) else fmt.format(value)


def cost_summary(costs: pd.DataFrame, metric: str = "ndcg@10") -> pd.DataFrame:
    """:func:`cost_table` for reading: quality, throughput, the node type priced and the cost per million tokens
    as text ("–" where no throughput was measured; a two-stage pipeline's says its reranking is not priced), and
    whether the price is the illustrative default."""
    missing = {metric, "tokens/s per accelerator", "node type", "cost per 1M tokens"} - set(costs.columns)
    if missing:
        raise InvalidSpecError(f"cost_summary needs a cost_table(), which has {sorted(missing)}", field="costs",
                               value=sorted(missing))
    rows = {}
    for system, r in costs.iterrows():
        cost = "–" if _missing(r["cost per 1M tokens"]) else estimate_text(float(r["cost per 1M tokens"]))
        if cost == "–" and r.get(UNPRICED_BECAUSE) == RERANK_NOT_PRICED:
            cost = RERANK_NOT_PRICED  # it calls the model: a dash would read as free
        source = r.get("price source")
        rows[system] = {metric: _or_dash(r[metric], "{:.3f}"),
                        "tokens/s": _or_dash(r["tokens/s per accelerator"], "{:,.0f}"),
                        "priced as": _or_dash(r["node type"]),
                        "cost per 1M tokens": cost if _missing(r.get("currency")) else f"{cost} {r['currency']}",
                        "price": "–" if _missing(source) else
                                 "illustrative, verify" if VERIFY in str(source) else str(source)}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("system")
