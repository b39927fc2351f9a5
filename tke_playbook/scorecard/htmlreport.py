"""One self-contained HTML page to share a scorecard on your documents: the data-set card and what was skipped,
quality with 95 % intervals (and how many more labels halve them), agreement between systems and where they
disagree most, served-vector parity when it was checked, p99 latency and cost per million chunks, and the plots -
embedded as base64 PNG, so the file travels alone.

Nothing private leaves in it: no API key (clients never print theirs; :func:`scrub` also removes any string given
as a secret) and no absolute path (the corpus folder, the home folder and the working folder are replaced by
their names).
"""

from __future__ import annotations

import base64
import io
import math
import os
import platform
from collections.abc import Sequence
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd

from ..hostenv import load_prices
from ..plots.comparison import plot_metric_intervals
from ..plots.corpus import plot_agreement, plot_chunk_tokens, plot_embedding_speed
from ..specs.prices import LOCAL_PRICE_NODE, price_of
from .corpusrun import HEADLINE, CorpusScorecard

DEFAULT_NODE_TYPE = LOCAL_PRICE_NODE

_PAGE = jinja2.Template("""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Scorecard: {{ card.name }}</title>
<style>
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.6em 0;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
th{background:#f3f3f3}h2{margin-top:1.6em;border-bottom:1px solid #ddd}.note{color:#555;font-size:13px}
img{max-width:100%}.bad{color:#b00}.good{color:#070}
</style></head><body>
<h1>Scorecard: {{ card.name }}</h1>
<p class="note">{{ card.documents }} documents, {{ card.chunks }} chunks, {{ card.queries }} queries; measured on
{{ hardware }}. Made by tke-playbook.</p>
<h2>The data set</h2>{{ card_table }}
{% if skipped %}<h3>Skipped ({{ skipped_count }})</h3>{{ skipped }}{% endif %}
{{ chunk_plot }}
<h2>Quality</h2>
{% if quality %}{{ quality }}{{ quality_plot }}
<p>{{ halving }}</p>{% else %}<p>No relevance labels yet: label the pooled chunks in the notebook, or pass
<code>--qrels</code> (TREC qrels). The agreement below needs no labels.</p>{% endif %}
<h2>Agreement between systems (no labels needed)</h2>{{ agreement }}{{ agreement_plot }}
{% if disagreements %}<h3>Where they disagree most</h3>{{ disagreements }}{% endif %}
<h2>Served-vector parity</h2>{% if parity %}<ul>{% for p in parity %}<li class="{{ p.cls }}">{{ p.text }}</li>
{% endfor %}</ul>{% else %}<p class="note">Not checked in this run.</p>{% endif %}
<h2>Speed and cost</h2>{{ speed }}{{ speed_plot }}
<p class="note">{{ cost_note }}</p>
</body></html>""", autoescape=True)


def figure_png(fig) -> str:
    """A Figure as an ``<img>`` with its PNG inline (base64)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=96)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="plot" src="data:image/png;base64,{data}">'


def scrub(text: str, roots: Sequence = (), secrets: Sequence[str] = ()) -> str:
    """``text`` without the given secrets and without absolute paths of ``roots``, the home and working folders
    (each replaced by its last name, or ``~``)."""
    out = str(text)
    for secret in secrets:
        if secret:
            out = out.replace(secret, "<redacted>")
    places = {os.path.abspath(str(r)): Path(str(r)).resolve().name or "." for r in roots}
    places.update({os.path.realpath(str(r)): Path(str(r)).resolve().name or "." for r in roots})
    places.setdefault(os.getcwd(), ".")
    places.setdefault(os.path.expanduser("~"), "~")
    for full in sorted(places, key=len, reverse=True):
        if len(full) > 1:
            out = out.replace(full, places[full])
    return out


def hardware() -> str:
    return f"{platform.machine() or 'unknown CPU'}, {os.cpu_count()} cores, {platform.system()}"


def _html_table(frame: pd.DataFrame, digits: int = 3) -> str:
    return frame.round(digits).to_html(border=0, na_rep="", escape=True)


def cost_rows(table: pd.DataFrame, node_type: str = DEFAULT_NODE_TYPE, prices=None) -> pd.DataFrame:
    """Per system that embedded chunks: chunks/s, p99 ms and cost per million chunks on ``node_type`` (the node
    price table, :mod:`tke_playbook.specs.prices`: an hour of the node / chunks embedded in an hour)."""
    price = price_of(node_type, prices if prices is not None else load_prices())
    rows = []
    for system, row in table.iterrows():
        rate = float(row.get("chunks/s", np.nan))
        per_million = price.per_hour / (rate * 3600) * 1e6 if price and math.isfinite(rate) and rate > 0 else np.nan
        rows.append({"system": system, "chunks/s": rate, "p99 ms": float(row.get("p99 ms", np.nan)),
                     f"cost per 1M chunks ({price.currency if price else '?'})": per_million})
    return pd.DataFrame(rows).set_index("system")


def _card(result: CorpusScorecard) -> dict:
    card = dict(result.card)
    card["queries"] = len(result.queries)
    card["label unit"] = result.unit
    return card


def _quality(result: CorpusScorecard, table: pd.DataFrame) -> tuple[str, str, str]:
    if not result.judged():
        return "", "", ""
    columns = [c for m in HEADLINE for c in (m, f"{m} low", f"{m} high")] + ["judged queries"]
    halve = result.labels_to_halve()
    text = (f"{halve['judged_queries']} judged queries, {halve['judgements_per_query']} judgements each. About "
            f"{halve['more_judgements']} more judgements ({halve['more_queries']} more queries) would halve the "
            f"intervals. Method: {halve['method']}.") if halve["more_judgements"] is not None else \
        "Label at least two queries for intervals."
    plot = figure_png(plot_metric_intervals(table)) if len(result.judged()) >= 2 else ""
    return _html_table(table[columns]), plot, text


def _agreement(result: CorpusScorecard, k: int) -> tuple[str, str, str]:
    if len(result.systems) < 2:
        return "<p class='note'>One system: nothing to compare.</p>", "", ""
    table = _html_table(result.agreement(k))
    plot = figure_png(plot_agreement(result.overlap(k), k=k))
    worst = result.disagreements(k=k, n=10)
    return table, plot, _html_table(worst) if len(worst) else ""


def render_report(result: CorpusScorecard, *, parity: Sequence = (), node_type: str = DEFAULT_NODE_TYPE,
                  prices=None, roots: Sequence = (), secrets: Sequence[str] = (), k: int = 10) -> str:
    """The report as one HTML string (see the module docstring); ``parity`` holds ParityReports (optional)."""
    table = result.table()
    card = _card(result)
    quality, quality_plot, halving = _quality(result, table)
    agreement, agreement_plot, disagreements = _agreement(result, k)
    costs = cost_rows(table, node_type, prices)
    embedded = costs[np.isfinite(costs["chunks/s"])]
    chunks = result.corpus.chunks["tokens"] if result.corpus is not None else []
    page = _PAGE.render(
        card=card, hardware=hardware(), card_table=_markup(_html_table(pd.Series(card, name="value").to_frame())),
        skipped=_markup(_html_table(result.corpus.skipped.head(50))) if result.corpus is not None and
        len(result.corpus.skipped) else "", skipped_count=card.get("skipped", 0),
        chunk_plot=_markup(figure_png(plot_chunk_tokens(chunks, limit=card.get("chunk_tokens")))) if len(chunks) else "",
        quality=_markup(quality), quality_plot=_markup(quality_plot), halving=halving,
        agreement=_markup(agreement), agreement_plot=_markup(agreement_plot), disagreements=_markup(disagreements),
        parity=[{"text": p.sentence(), "cls": "good" if p.passed else "bad"} for p in parity],
        speed=_markup(_html_table(costs)),
        speed_plot=_markup(figure_png(plot_embedding_speed(table, hardware=hardware()))) if len(embedded) else "",
        cost_note=f"Cost per million chunks: the price of one {node_type} node-hour (the node price table; its "
                  "defaults are illustrative: put your own in $TKE_PLAYBOOK_NODE_PRICES) divided by the chunks "
                  "embedded in an hour at the measured rate. Latency: each embedding request's wall time, p99.")
    roots = [*roots, *([result.corpus.name] if result.corpus is not None else [])]
    return scrub(page, roots, secrets)


def _markup(fragment: str):
    return jinja2.utils.markupsafe.Markup(fragment)


def write_report(path, result: CorpusScorecard, **options) -> Path:
    """Write :func:`render_report`'s page to ``path``."""
    where = Path(path).expanduser()
    where.parent.mkdir(parents=True, exist_ok=True)
    where.write_text(render_report(result, **options), encoding="utf-8")
    return where


__all__ = ["render_report", "write_report", "scrub", "cost_rows", "figure_png"]
