"""What a researcher reads first: the data set a scorecard ran on (:func:`dataset_card`) and its results as one
narrow table (:func:`results_table`), each metric once with its 95 % interval. Who wins, and whether it is
significant, is :meth:`~tke_playbook.scorecard.run.ScorecardResult.pairwise` (all pairs, Holm-corrected).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from ..errors import InvalidSpecError
from ..evaluate.datasets import GRADES, LANGUAGES, QUERY_KINDS, RetrievalDataset
from .run import HEADLINE
from .stats import metric_label
from .task import TkeBilingualRetrieval, task_splits

LANGUAGE_NAMES = {"en": "English", "zh": "Chinese"}


@dataclass(frozen=True, repr=False)
class DatasetCard:
    """A data set described in a few labelled lines: ``rows`` of ``(field, text)``. Shows as a table whose text
    wraps (nothing is cut off); ``str()`` gives the same lines as plain text."""

    title: str
    rows: tuple[tuple[str, str], ...]

    def get(self, field: str) -> str:
        return dict(self.rows).get(field, "")

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(list(self.rows), columns=["field", "value"]).set_index("field")

    def __str__(self) -> str:
        width = max(len(k) for k, _ in self.rows)
        return "\n".join([self.title] + [f"  {k:<{width}}  {v}" for k, v in self.rows])

    __repr__ = __str__

    def _repr_html_(self) -> str:
        cells = "".join(f'<tr><th style="text-align:left;vertical-align:top;padding-right:14px;white-space:nowrap">'
                        f'{html.escape(k)}</th><td style="text-align:left;white-space:normal">{html.escape(v)}</td>'
                        f"</tr>" for k, v in self.rows)
        return (f'<table class="tke-playbook-card" style="max-width:960px"><caption style="text-align:left">'
                f"<b>{html.escape(self.title)}</b></caption>{cells}</table>")


def _split(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {LANGUAGE_NAMES.get(lang, lang)}" for lang, n in counts.items())


def _bilingual_card(task: TkeBilingualRetrieval) -> DatasetCard:
    data: RetrievalDataset = task.source
    facts = data.summary()
    topics = ", ".join(names.get("en", key) for key, names in data.topics.items())
    kinds = "; ".join(f"{kind} {facts[f'{kind}_queries']} ({meaning})" for kind, meaning in QUERY_KINDS.items())
    grades = ", ".join(f"{facts[f'grade_{g}']} of grade {g}" for g in sorted(GRADES, reverse=True))
    rows = (
        ("data set", f"{data.name}, version {task.metadata.dataset.get('revision', '')} "
                     f"(mteb task {task.metadata.name})"),
        ("documents", f"{facts['documents']}: {_split({l: facts[f'{l}_documents'] for l in LANGUAGES})}; "
                      f"{facts['topics']} topics ({topics})"),
        ("queries", f"{facts['queries']}: {_split({l: facts[f'{l}_queries'] for l in LANGUAGES})}; every query "
                    "has at least one relevant document, and every query is scored against every document"),
        ("query kind", f"by the language of the relevant documents - {kinds}"),
        ("relevance", f"{data.relevance} {facts['judgements']} judgements: {grades}.".strip()),
        ("metrics", "nDCG@10 uses the grades (grade 2 counts twice grade 1); recall@10 and MRR@10 count grade 1 "
                    "or 2 as relevant"),
        ("source", data.source or data.description),
        ("licence", data.license or task.metadata.license or "not stated"),
    )
    return DatasetCard(f"Data set: {data.name}", rows)


def _mteb_card(task) -> DatasetCard:
    meta = task.metadata
    queries = documents = judgements = 0
    splits = []
    for subset, split, data in task_splits(task):
        splits.append(split if subset == "default" else f"{subset}/{split}")
        queries += len(data["queries"])
        documents += len(data["corpus"])
        judgements += sum(len(v) for v in data["relevant_docs"].values())
    langs = ", ".join(meta.eval_langs if isinstance(meta.eval_langs, list)
                      else sorted({lang for v in meta.eval_langs.values() for lang in v}))
    rows = (
        ("data set", f"{meta.name} ({meta.dataset.get('path', '')}, revision "
                     f"{str(meta.dataset.get('revision', ''))[:12]}); split(s) {', '.join(splits)}"),
        ("documents", f"{documents} (as evaluated: a subset when max_queries or max_documents was given)"),
        ("queries", f"{queries}"),
        ("languages", langs),
        ("query kind", "not defined for this task (the shipped set marks same-language and cross-lingual queries)"),
        ("relevance", f"{meta.annotations_creators or 'not stated'} judgements ({judgements} in the evaluated "
                      f"split); see the reference"),
        ("source", f"{meta.description} {meta.reference or ''}".strip()),
        ("licence", meta.license or "not stated"),
    )
    return DatasetCard(f"Data set: {meta.name}", rows)


def dataset_card(task) -> DatasetCard:
    """What ``task`` (the shipped bilingual set or a loaded mteb retrieval task) holds: documents and queries
    with their language split, what a query's kind means, how relevance was judged, source and licence."""
    if isinstance(task, TkeBilingualRetrieval):
        return _bilingual_card(task)
    if getattr(task, "metadata", None) is None or not hasattr(task, "dataset"):
        raise InvalidSpecError(f"dataset_card needs a retrieval task (choose_task(...)), not {type(task).__name__}",
                               field="task", value=type(task).__name__)
    return _mteb_card(task)


def _interval(mean: float, low: float, high: float) -> str:
    return f"{mean:.3f} [{low:.3f}, {high:.3f}]"


def results_table(result, metrics: Sequence[str] = HEADLINE) -> pd.DataFrame:
    """One row per system, best ``metrics[0]`` first: its kind and each metric once, as ``mean [95% CI]``
    (bootstrap over queries). Narrow enough to read without scrolling; the numbers are in ``result.table``."""
    table = result.table
    missing = [m for m in metrics if m not in table.columns]
    if missing:
        raise InvalidSpecError(f"the scorecard has no {missing}: use some of {list(HEADLINE)}", field="metrics",
                               value=missing)
    ordered = table.sort_values(metrics[0], ascending=False, kind="stable")
    out = pd.DataFrame(index=ordered.index)
    out["kind"] = ordered["kind"]
    for metric in metrics:
        out[f"{metric_label(metric)} [95% CI]"] = [_interval(r[metric], r[f"{metric} low"], r[f"{metric} high"])
                                                   for _, r in ordered.iterrows()]
    return out
