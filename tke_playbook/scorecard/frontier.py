"""The quality-cost frontier of an embedding service: model × output dimension × vector precision, each point with
its nDCG@10 and 95 % interval, bytes per vector, index size for N documents and what a million documents cost
to embed and to keep.

Every point is the endpoint's own answer (:meth:`~tke_playbook.embed.http.EmbeddingClient.variant`): fewer
dimensions through vLLM's ``dimensions`` (Matryoshka), a narrower precision through vLLM's ``embed_dtype`` (the
server casts float32 to float16, bfloat16, fp8_e4m3 or fp8_e5m2 and sends those bytes) or Cohere's binary types
from ``/v2/embed`` (one bit per dimension, searched by Hamming distance) - the precision is applied as the server
does, never simulated here. The points are systems of one scorecard (:func:`~tke_playbook.scorecard.run.run_scorecard`:
the embedding cache, mteb, bootstrap intervals), and each is tested against its model's full float32 vectors with
the paired test of :mod:`~tke_playbook.scorecard.stats`, Holm-corrected over the points.

Costs, per million documents: embedding = tokens per document (as the server counted them) × the cost per
million tokens of the measured throughput on a priced node (:mod:`~tke_playbook.scorecard.cost`); storage = bytes
per vector × 10^6 / 2^30 GiB × the price per GiB-month of the chosen storage
(:mod:`~tke_playbook.scorecard.storage_prices`) × the months kept. The index is the vectors alone (a flat index;
HNSW adds its graph). A point is on the Pareto frontier when no other point has at least its nDCG@10 for at most
its cost, one of them strictly.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..embed.api import BINARY_TYPES, ELEMENT_BYTES, EMBED_DTYPES
from ..embed.http import EmbeddingClient
from ..errors import EmbeddingAPIError, InvalidSpecError, PlaybookError
from ..localserver import start_server
from . import stats
from .cost import (LOCAL_PRICE_NODE, Throughput, _price_rows, cost_per_million_tokens, scorecard_throughputs,
                   throughputs_by_system)
from .run import ScorecardResult, run_scorecard
from .storage_prices import DEFAULT_STORAGE, GIB, StoragePrice, storage_price

PRECISIONS = EMBED_DTYPES + BINARY_TYPES
QUICK_PRECISIONS = ("float32", "fp8_e4m3", "ubinary")
LOCAL_DIMENSIONS = (256, 128, 64)  # the local frontier's --hf-overrides matryoshka_dimensions (MiniLM: 384 in full)
QUICK_DIMENSIONS = (128,)
CLUSTER_DIMENSIONS = (512, 256, 128)
NOT_MATRYOSHKA = "not Matryoshka-trained: expect loss"
DEFAULT_DOCUMENTS = 1_000_000
DEFAULT_MONTHS = 12
PROBE = "What does a GPU node serve?"
METRIC = "ndcg@10"
SEPARATE_MEASUREMENT = ("measured separately, during the frontier's own scorecard run, not the throughput of a cost "
                        "table shown before it (pass that one as throughputs= to price with it)")


def frontier_variants(clients: Sequence, dimensions: Sequence[int | None] = (None, *LOCAL_DIMENSIONS),
                      precisions: Sequence[str] = PRECISIONS) -> list[EmbeddingClient]:
    """Every (endpoint, dimensions, precision) as a client of its own (None: the full vector)."""
    out = []
    for client in clients:
        if not callable(getattr(client, "variant", None)):
            raise InvalidSpecError(f"the frontier asks an endpoint for its vectors at each dimension and precision: "
                                   f"pass EmbeddingClients, not {type(client).__name__}", field="clients",
                                   value=type(client).__name__)
        out += [client.variant(dimensions=d, precision=p) for d in dimensions for p in precisions]
    return out


def pareto_front(cost, quality) -> np.ndarray:
    """True for each point no other point beats: at most its cost and at least its quality, one strictly. Points
    with a missing cost or quality are never on it."""
    c, q = np.asarray(cost, dtype=float), np.asarray(quality, dtype=float)
    known = np.isfinite(c) & np.isfinite(q)
    out = np.zeros(len(c), dtype=bool)
    for i in np.flatnonzero(known):
        beaten = known & (c <= c[i]) & (q >= q[i]) & ((c < c[i]) | (q > q[i]))
        out[i] = not beaten.any()
    return out


def _probe(variant) -> tuple[int | None, str]:
    """The variant's dimension, or the server's reason for refusing it (no Matryoshka, no /v2/embed ...)."""
    try:
        return int(variant.embed_documents([PROBE]).shape[1]), ""
    except EmbeddingAPIError as exc:
        return None, str(exc)


def _check_counts(documents: int, months: float) -> None:
    if isinstance(documents, bool) or not isinstance(documents, int) or documents < 1:
        raise InvalidSpecError(f"documents={documents!r}: use how many documents the index holds, e.g. 1_000_000",
                               field="documents", value=documents)
    if isinstance(months, bool) or not isinstance(months, (int, float)) or not months > 0:
        raise InvalidSpecError(f"months={months!r}: use how many months the vectors are kept, e.g. 12",
                               field="months", value=months)


def _tokens_per_document(result: ScorecardResult, names: Sequence[str]) -> float:
    calls = [c for name in names for c in result.embed_calls.get(name, []) if c.get("kind") == "document"
             and c.get("tokens")]
    texts = sum(c["texts"] for c in calls)
    return sum(c["tokens"] for c in calls) / texts if texts else float("nan")


@dataclass
class _Pricing:
    """What a million documents cost a model to embed: its throughput on a priced node (the one passed in, e.g.
    the page's cost table; else measured in the frontier's own run, and said so), tokens per document."""

    throughputs: Mapping[str, Throughput]
    prices: pd.DataFrame | None
    node_type: str
    measured_on: str

    def embed_cost(self, model: str, variants: Sequence[str], result: ScorecardResult) -> tuple[float, float, str,
                                                                                              str]:
        """``(tokens per document, cost of embedding 1M documents, currency, source)`` for ``model``."""
        found, separate = self.throughputs.get(model), ""
        if found is None:
            measured = throughputs_by_system(scorecard_throughputs(result, self.node_type, self.measured_on))
            found, separate = next((measured[v] for v in variants if v in measured), None), SEPARATE_MEASUREMENT
        tokens = _tokens_per_document(result, variants)
        if found is None or not math.isfinite(tokens):
            return tokens, float("nan"), "", "no throughput measured"
        price = _price_rows(self.prices).get(found.node_type.lower())
        if price is None:
            raise InvalidSpecError(f"no price for node type {found.node_type!r}: add it to the price table "
                                   "(scorecard.price_table())", field="prices", value=found.node_type)
        per_token = cost_per_million_tokens(found, float(price["hourly_price"]), int(price["gpus"]))
        return tokens, tokens * per_token, str(price.get("currency") or ""), \
            found.describe() + (f", {separate}" if separate else "")


@dataclass
class Frontier:
    """The frontier's points (``points``: one row per variant), what was refused and why, and the assumptions."""

    points: pd.DataFrame
    refused: pd.DataFrame
    storage: StoragePrice
    documents: int
    months: float
    scorecard: ScorecardResult | None = None
    notes: list[str] = field(default_factory=list)
    throughput_source: dict[str, str] = field(default_factory=dict)

    @property
    def cost_column(self) -> str:
        return f"per 1M docs, embedded + stored {self.months:g} months"

    def ratio(self, precision: str, *, baseline: str = "float32", dimensions: int | None = None,
              model: str | None = None) -> float:
        """nDCG@10 at ``precision`` over nDCG@10 at ``baseline``, same model and dimensions (default: the first
        model, full dimensions)."""
        points = self.points
        model = model or points["model"].iloc[0]
        rows = points[(points["model"] == model) & (points["truncated"] == (dimensions is not None))]
        if dimensions is not None:
            rows = rows[rows["dimensions"] == dimensions]
        found = rows.set_index("precision")[METRIC]
        missing = [p for p in (precision, baseline) if p not in found.index]
        if missing:
            raise InvalidSpecError(f"the frontier has no {missing} point for {model} at "
                                   f"{dimensions or 'full'} dimensions: run it with those precisions",
                                   field="precision", value=missing)
        return float(found[precision] / found[baseline]) if found[baseline] else float("nan")

    def table(self) -> pd.DataFrame:
        """The points for reading, best nDCG@10 first: interval, sizes, costs, the test against full float32, and
        ``pareto`` (on the cost per million documents when it is known, else on bytes per vector)."""
        p = self.points
        currency = next((c for c in p["currency"] if c), "")
        out = pd.DataFrame({
            "model": p["model"].str.rsplit("/", n=1).str[-1],
            "dimensions": [f"{d}" + (f" ({NOT_MATRYOSHKA})" if flag else "") for d, flag in
                           zip(p["dimensions"], p["not matryoshka"])],
            "precision": p["precision"],
            "nDCG@10 [95% CI]": [f"{m:.3f} [{lo:.3f}, {hi:.3f}]" for m, lo, hi in
                                 zip(p[METRIC], p[f"{METRIC} low"], p[f"{METRIC} high"])],
            "Δ vs full float32 (p Holm)": [("–" if math.isnan(d) else f"{d:+.3f} ({q:.2g})") for d, q in
                                           zip(p["delta vs full float32"], p["p (Holm)"])],
            "bytes/vector": p["bytes per vector"].map(lambda b: f"{b:g}"),
            f"index, {self.documents:,} docs": p["index GiB"].map(_size),
            f"embed 1M docs ({currency})": p["embed per 1M docs"].map(_money),
            f"store 1M docs / month ({currency})": p["store per 1M docs per month"].map(_money),
            f"{self.cost_column} ({currency})": p[self.cost_column].map(_money),
            "pareto": np.where(p["pareto"], "yes", ""),
        }, index=p.index)
        return out.loc[p.sort_values(METRIC, ascending=False).index]

    def cost_assumption(self) -> str:
        """The storage assumption in one line (what the frontier plot states)."""
        return f"{self.storage.assumption()}, kept {self.months:g} months; index of {self.documents:,} documents"

    def assumptions(self) -> str:
        """What the costs and points assume, one line each (what a notebook prints beside the table)."""
        lines = [f"Index: {self.documents:,} documents, vectors only (a flat index; HNSW adds its graph); "
                 f"{self.storage.assumption()}, kept {self.months:g} months.",
                 "Embedding: " + ("; ".join(f"{m.rsplit('/', 1)[-1]}: {s}" for m, s in self.throughput_source.items())
                                  or "no throughput measured") + "."]
        lines += self.notes
        if len(self.refused):
            lines.append(f"{len(self.refused)} variant(s) refused by the server (see .refused): "
                         + "; ".join(sorted({r.split(':')[0] for r in self.refused['why']}))[:300])
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        lines = "".join(f"<li>{html.escape(line)}</li>" for line in self.assumptions().splitlines())
        return self.table()._repr_html_() + f"<ul>{lines}</ul>"


def _size(gib: float) -> str:
    return f"{gib * 1024:,.1f} MiB" if gib < 1 else f"{gib:,.2f} GiB"


def _money(value: float) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:,.4g}"


def _vs_full(result: ScorecardResult, rows: list[dict]) -> None:
    """Each point against its model's full float32 point: the difference and its Holm-corrected p-value."""
    full = {r["model"]: r["system"] for r in rows if not r["truncated"] and r["precision"] == "float32"}
    tested = [r for r in rows if r["model"] in full and r["system"] != full[r["model"]]]
    tests = [result.paired(full[r["model"]], r["system"], METRIC) for r in tested]
    adjusted = stats.holm_adjust([t.p_value for t in tests]) if tests else []
    for row in rows:
        row["delta vs full float32"], row["p (Holm)"] = (0.0, 1.0) if full.get(row["model"]) == row["system"] \
            else (np.nan, np.nan)
    for row, test, p in zip(tested, tests, adjusted):
        row["delta vs full float32"], row["p (Holm)"] = test.difference, float(p)


def _points(accepted, result: ScorecardResult, pricing: _Pricing, storage: StoragePrice, documents: int,
            months: float, not_matryoshka: set[str]) -> tuple[pd.DataFrame, dict[str, str]]:
    rows, sources = [], {}
    by_model: dict[str, list[str]] = {}
    for variant, _ in accepted:
        by_model.setdefault(variant.model, []).append(variant.name)
    embedding = {m: pricing.embed_cost(m, names, result) for m, names in by_model.items()}
    for variant, dims in accepted:
        tokens, embed, currency, source = embedding[variant.model]
        sources[variant.model] = source
        precision = variant.precision or "float32"
        size = dims * ELEMENT_BYTES[precision]
        store = size * 1e6 / GIB * storage.per_gib_month
        same = currency in ("", storage.currency)
        row = result.table.loc[variant.name]
        rows.append({"system": variant.name, "model": variant.model, "dimensions": dims, "precision": precision,
                     "truncated": variant.dimensions is not None,
                     "not matryoshka": variant.dimensions is not None and variant.model in not_matryoshka,
                     METRIC: row[METRIC], f"{METRIC} low": row[f"{METRIC} low"],
                     f"{METRIC} high": row[f"{METRIC} high"], "bytes per vector": size,
                     "index GiB": size * documents / GIB, "tokens per document": tokens, "embed per 1M docs": embed,
                     "store per 1M docs per month": store,
                     f"per 1M docs, embedded + stored {months:g} months": embed + store * months if same else np.nan,
                     "currency": currency or storage.currency})
    _vs_full(result, rows)
    frame = pd.DataFrame(rows).set_index("system")
    total = frame[f"per 1M docs, embedded + stored {months:g} months"]
    frame["pareto"] = pareto_front(total if total.notna().any() else frame["bytes per vector"], frame[METRIC])
    frame["pareto (bytes)"] = pareto_front(frame["bytes per vector"], frame[METRIC])
    return frame, sources


def run_frontier(clients: Sequence, task=None, *, dimensions: Sequence[int | None] = (None, *LOCAL_DIMENSIONS),
                 precisions: Sequence[str] = PRECISIONS, documents: int = DEFAULT_DOCUMENTS,
                 months: float = DEFAULT_MONTHS, storage: str = DEFAULT_STORAGE,
                 storage_prices: pd.DataFrame | None = None,
                 throughputs: Mapping[str, Throughput] | Sequence[Throughput] | None = None,
                 prices: pd.DataFrame | None = None, node_type: str = LOCAL_PRICE_NODE, measured_on: str = "",
                 not_matryoshka: Sequence[str] = (), notes: Sequence[str] = (), cache_dir=None, home=None,
                 progress: bool = True, n_boot: int = stats.DEFAULT_BOOT) -> Frontier:
    """The frontier of ``clients`` (endpoints) on ``task`` (default: the shipped set): every dimension ×
    precision the server accepts becomes a point; the ones it refuses are listed with its reason. ``throughputs``
    (``{model: Throughput}`` or a list, e.g. the page's :func:`~tke_playbook.scorecard.cost.scorecard_throughputs`
    or 06's load test) price the embedding, so one page shows one throughput per model; else the frontier's own
    cold run on ``node_type``, labelled as a separate measurement (``prices``: the node price table,
    :func:`~tke_playbook.scorecard.cost.price_table`);
    ``not_matryoshka`` names models served with a forced Matryoshka override (their truncated points are labelled
    "not Matryoshka-trained: expect loss"). ``cache_dir``/``home``: the embedding cache, as for
    :func:`~tke_playbook.scorecard.run.run_scorecard`."""
    _check_counts(documents, months)
    price, given = storage_price(storage, storage_prices), throughputs_by_system(throughputs)  # refused before the run
    accepted, refused = [], []
    for variant in frontier_variants(clients, dimensions, precisions):
        dims, why = _probe(variant)
        (accepted.append((variant, dims)) if dims else refused.append({"system": variant.name, "why": why}))
    if not accepted:
        raise PlaybookError("the endpoint refused every variant of the frontier: " + "; ".join(
            r["why"] for r in refused[:3]), obj=[getattr(c, "name", c) for c in clients])
    result = run_scorecard([v for v, _ in accepted], task, cache_dir=cache_dir, home=home, progress=progress,
                           n_boot=n_boot, visuals=False)
    pricing = _Pricing(given, prices, node_type, measured_on)
    frame, sources = _points(accepted, result, pricing, price, documents, months, set(not_matryoshka))
    return Frontier(frame, pd.DataFrame(refused, columns=["system", "why"]), price, documents, months, result,
                    list(notes), sources)


def local_frontier(model_dir=None, *, dimensions: Sequence[int] = LOCAL_DIMENSIONS, home=None,
                   **options) -> Frontier:
    """The frontier of a model folder on this machine (default: the packaged all-MiniLM-L6-v2): a second local
    server is started with ``--hf-overrides '{"matryoshka_dimensions": [...]}'`` - vLLM refuses ``dimensions``
    for a model that is not Matryoshka-trained without it - and stopped when the frontier is done; its truncated
    points are labelled "not Matryoshka-trained: expect loss". ``home``: the state folder its log and the
    embedding cache go under (``pb.settings.home``; None: ``$TKE_PLAYBOOK_HOME``)."""
    overrides = {"matryoshka_dimensions": sorted({int(d) for d in dimensions}, reverse=True)}
    with start_server(model_dir, hf_overrides=overrides, home=home) as server:
        name = server.served_model_name
        note = (f"A second local server served {name} for the frontier with --hf-overrides "
                f"'{json.dumps(overrides)}' (without it vLLM refuses `dimensions` for a model that is not "
                f"Matryoshka-trained); {name.rsplit('/', 1)[-1]} at fewer dimensions is {NOT_MATRYOSHKA}. "
                "The server was stopped after the run.")
        client = EmbeddingClient(server.url, name, server.api_key)
        return run_frontier([client], dimensions=(None, *dimensions), not_matryoshka=(name,),
                            notes=(*options.pop("notes", ()), note), home=home, **options)
