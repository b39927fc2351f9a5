"""Retrieval tasks through ``mteb``, the field's evaluation library: the shipped bilingual set as a local custom
task (so the whole path runs offline), and MTEB / C-MTEB retrieval tasks by name when a hub is reachable.

Every system is handed to ``mteb.evaluate`` as a search model (:mod:`tke_playbook.scorecard.search`). mteb
rounds its averages to five decimals; ``exact_*`` scores (the unrounded mean of mteb's per-query values) are
added to each task's scores.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import datasets as hf_datasets
import mteb
import numpy as np
from datasets import Dataset
from mteb.abstasks.retrieval import AbsTaskRetrieval
from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData
from mteb.abstasks.task_metadata import TaskMetadata

from ..errors import PlaybookError, UnknownNameError
from ..evaluate.datasets import RetrievalDataset, load_bilingual
from ..specs.names import unknown

TASK_KS = (1, 3, 5, 10)
SUGGESTED_TASKS = ("T2Retrieval", "MMarcoRetrieval", "SciFact", "NFCorpus")
_LANGS = {"en": "eng-Latn", "zh": "cmn-Hans"}


class TkeBilingualRetrieval(AbsTaskRetrieval):
    """The shipped Chinese/English set as an mteb retrieval task (one ``test`` split, subset ``default``)."""

    k_values = TASK_KS
    metadata = TaskMetadata(
        name="TkeBilingualRetrieval", type="Retrieval", main_score="ndcg_at_10", category="t2t",
        description="tke-playbook's bilingual (Chinese/English) retrieval set: 36 documents, 22 queries, graded "
                    "qrels, same-language and cross-lingual pairs.",
        reference=None, dataset={"path": "tke-playbook/bilingual-retrieval", "revision": "1"},
        eval_splits=["test"], eval_langs=["eng-Latn", "cmn-Hans"], date=None, dialect=[], domains=[],
        task_subtypes=[], license="apache-2.0", annotations_creators="expert-annotated", modalities=["text"],
        sample_creation="created", bibtex_citation="")

    def __init__(self, dataset: RetrievalDataset | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.source = dataset or load_bilingual()
        self._top_k = len(self.source.documents)  # full rankings: every document scored for every query

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        if self.data_loaded:
            return
        ds = self.source
        self.dataset = {"default": {"test": RetrievalSplitData(
            queries=Dataset.from_list([{"id": q.id, "text": q.text} for q in ds.queries]),
            corpus=Dataset.from_list([{"id": d.id, "text": d.text, "title": ""} for d in ds.documents]),
            relevant_docs={q: dict(v) for q, v in ds.qrels.items()}, top_ranked=None)}}
        self.data_loaded = True


def bilingual_task(dataset: RetrievalDataset | None = None) -> TkeBilingualRetrieval:
    """The local custom task (offline), loaded."""
    task = TkeBilingualRetrieval(dataset)
    task.load_data()
    return task


def _retrieval_task_names() -> list[str]:
    return sorted(t.metadata.name for t in mteb.get_tasks(task_types=["Retrieval"]))


def named_task(name: str, *, hf_subsets: Sequence[str] | None = None, split: str | None = None,
               max_queries: int | None = None, max_documents: int | None = None, seed: int = 0):
    """An MTEB / C-MTEB retrieval task by name (e.g. ``T2Retrieval``, ``MMarcoRetrieval``, ``SciFact``,
    ``NFCorpus``), loaded from the hub; ``max_queries`` / ``max_documents`` keep a subset for speed."""
    try:
        task = mteb.get_task(name, hf_subsets=list(hf_subsets) if hf_subsets else None,
                             eval_splits=[split] if split else None)
    except (KeyError, ValueError) as exc:
        raise unknown("MTEB retrieval task", name, _retrieval_task_names()) from exc
    if not isinstance(task, AbsTaskRetrieval):
        raise UnknownNameError(f"{name} is an mteb {task.metadata.type} task, not a retrieval task: pick one of "
                               f"{', '.join(SUGGESTED_TASKS)}", kind="MTEB retrieval task", name=name)
    try:
        task.load_data()
    except Exception as exc:  # noqa: BLE001 - datasets/hub errors vary; one clear message
        hub = os.environ.get("HF_ENDPOINT", "the Hugging Face hub")
        raise PlaybookError(f"Could not load MTEB task {name} from {hub}: {type(exc).__name__}: {exc}. It needs a "
                            "connection to the hub (or HF_ENDPOINT set to a mirror, HF_HUB_OFFLINE unset); offline, "
                            "use the shipped set (bilingual_task()).", obj=name, cause=exc) from exc
    if max_queries or max_documents:
        subsample(task, max_queries=max_queries, max_documents=max_documents, seed=seed)
    return task


def choose_task(name: str = "", **subset):
    """``name`` as an MTEB task (see :func:`named_task`), or the shipped bilingual set when empty."""
    return named_task(name.strip(), **subset) if name and name.strip() else bilingual_task()


def subsample(task: AbsTaskRetrieval, *, max_queries: int | None = None, max_documents: int | None = None,
              seed: int = 0) -> AbsTaskRetrieval:
    """Keep at most ``max_queries`` queries (with a relevant document) per split and at most ``max_documents``
    documents - always every document judged for a kept query - chosen reproducibly with ``seed``."""
    task.convert_v1_dataset_format_to_v2(num_proc=None)
    rng = np.random.default_rng(seed)
    for splits in task.dataset.values():
        for data in splits.values():
            ids = _kept_queries(data, max_queries, rng)
            keep_q = set(ids)
            data["queries"] = data["queries"].filter(lambda row: row["id"] in keep_q)
            data["relevant_docs"] = {q: data["relevant_docs"][q] for q in ids}
            keep_d = _kept_documents(data, ids, max_documents, rng)
            data["corpus"] = data["corpus"].filter(lambda row: row["id"] in keep_d)
    return task


def _kept_queries(data, max_queries: int | None, rng) -> list:
    """The split's queries with a relevant document, at most ``max_queries`` of them drawn with ``rng``."""
    qrels = data["relevant_docs"]
    ids = [q for q in data["queries"]["id"] if any(g > 0 for g in qrels.get(q, {}).values())]
    if max_queries and len(ids) > max_queries:
        ids = sorted(rng.choice(ids, size=max_queries, replace=False).tolist())
    return ids


def _kept_documents(data, ids: list, max_documents: int | None, rng) -> set:
    """Every document judged for the kept queries ``ids``, then others drawn with ``rng`` up to
    ``max_documents`` in all (all of them without a bound)."""
    judged = {d for q in ids for d in data["relevant_docs"][q]}
    others = [d for d in data["corpus"]["id"] if d not in judged]
    room = max(0, (max_documents or len(judged) + len(others)) - len(judged))
    drawn = rng.choice(others, size=min(room, len(others)), replace=False).tolist() if others and room else []
    return judged | set(drawn)


def task_splits(task: AbsTaskRetrieval):
    """``(subset, split, data)`` for every evaluated split of a loaded task."""
    task.convert_v1_dataset_format_to_v2(num_proc=None)
    for subset, splits in task.dataset.items():
        for split, data in splits.items():
            if split in task.eval_splits:
                yield subset, split, data


def _exact_scores(scores: Mapping[str, Mapping[str, float]], qrels, results, **kwargs: Any) -> dict[str, float]:
    """mteb's per-query values (pytrec_eval) averaged without rounding, as ``exact_<metric>``."""
    if not scores:
        return {}
    keys = next(iter(scores.values())).keys()
    out = {}
    for key in keys:
        for prefix, name in (("ndcg_cut_", "ndcg_at_"), ("recall_", "recall_at_")):
            if key.startswith(prefix) and key[len(prefix):].isdigit():
                out[f"exact_{name}{key[len(prefix):]}"] = float(np.mean([row[key] for row in scores.values()]))
    return out


def evaluate_search(search, task: AbsTaskRetrieval) -> dict[tuple[str, str], dict[str, float]]:
    """Run ``mteb.evaluate`` for one system on one task; mteb's scores per ``(subset, split)``."""
    task.task_specific_scores = _exact_scores  # instance attribute: mteb calls it with its per-query scores
    quiet = not hf_datasets.are_progress_bars_disabled()
    if quiet:
        hf_datasets.disable_progress_bars()  # "Standardizing text corpus format" bars on every run
    try:
        result = mteb.evaluate(search, task, cache=None, overwrite_strategy="always", show_progress_bar=False,
                               encode_kwargs={"batch_size": 32, "show_progress_bar": False})
    finally:
        if quiet:
            hf_datasets.enable_progress_bars()
    out = {}
    for task_result in result.task_results:
        for split, rows in task_result.scores.items():
            for row in rows:
                out[(row["hf_subset"], split)] = {k: v for k, v in row.items() if isinstance(v, (int, float))}
    return out
