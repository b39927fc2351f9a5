"""Run a scorecard: every system on one retrieval task through mteb, then statistics on the recorded runs."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import mteb
import numpy as np
import pandas as pd

from ..errors import InvalidSpecError
from ..evaluate.similarity import cosine_matrix
from ..loadgen.sync import interruptible, preload
from ..specs.names import unknown
from . import stats
from .cache import ResultCache, default_cache_dir
from .registry import Kind, System, build_systems
from .task import TkeBilingualRetrieval, bilingual_task, evaluate_search, task_splits

HEADLINE = ("ndcg@10", "recall@10", "mrr@10")


@dataclass
class ScorecardResult:
    """Everything measured: ``table`` (one row per system: kind, mteb's nDCG@10 and our metrics with 95 %
    intervals), ``per_query`` (per system), ``runs``, ``qrels``, ``mteb_scores`` and, for dense systems on the
    bilingual set, document vectors and sentence similarity matrices for the visuals."""

    task: str
    systems: list[str]
    kinds: dict[str, str]
    table: pd.DataFrame
    per_query: dict[str, pd.DataFrame]
    runs: dict[str, dict]
    qrels: dict
    mteb_scores: pd.DataFrame
    query_info: pd.DataFrame
    seconds: dict[str, float]
    doc_vectors: dict[str, np.ndarray] = field(default_factory=dict)
    sentence_sims: dict[str, np.ndarray] = field(default_factory=dict)
    embed_calls: dict[str, list[dict]] = field(default_factory=dict)  # measured when first evaluated
    n_boot: int = stats.DEFAULT_BOOT
    reused: dict[str, bool] = field(default_factory=dict)  # True: scores and rankings came from the result cache
    stages: dict[str, dict] = field(default_factory=dict)  # two-stage systems: first stage, reranker, depth

    def _check(self, name: str) -> str:
        if name not in self.per_query:
            raise unknown("system", name, self.systems)
        return name

    def paired(self, a: str, b: str, metric: str = "ndcg@10", **options) -> stats.PairedTest:
        """Paired significance test of ``b`` against ``a`` over the same queries."""
        a, b = self._check(a), self._check(b)
        return stats.paired_test(self.per_query[a][metric].to_numpy(), self.per_query[b][metric].to_numpy(),
                                 a=a, b=b, metric=metric, **options)

    def paired_table(self, baseline: str | None = None, metric: str = "ndcg@10") -> pd.DataFrame:
        """Every other system against ``baseline`` (default: the first): difference (the row's system minus
        ``baseline``: positive means the row's system is better), interval, p-value."""
        baseline = self._check(baseline or self.systems[0])
        rows = []
        for name in self.systems:
            if name != baseline:
                t = self.paired(baseline, name, metric)
                rows.append({"system": name, "vs": baseline, "metric": metric,
                             "difference (system − vs)": t.difference,
                             "ci95": f"{t.low:+.3f}..{t.high:+.3f}", "p_value": t.p_value,
                             "significant": t.significant, "wins": t.wins_b, "losses": t.wins_a, "ties": t.ties})
        return pd.DataFrame(rows).set_index("system") if rows else pd.DataFrame()

    def pairwise(self, metric: str = "ndcg@10", **options) -> stats.PairwiseTests:
        """Every pair of systems tested on ``metric`` over the same queries, p-values Holm-adjusted over the
        pairs: ``.table()`` and ``.verdict()`` (one sentence: who leads, and whether it is significant)."""
        return stats.pairwise_tests({name: self.per_query[name][metric].to_numpy() for name in self.systems},
                                    metric, **options)

    def disagreements(self, a: str, b: str, k: int = 3) -> pd.DataFrame:
        """Queries where one system has a relevant document in its top ``k`` and the other does not."""
        a, b = self._check(a), self._check(b)
        table = stats.disagreements(self.qrels, self.runs[a], self.runs[b], a=a, b=b, k=k,
                                    query_text=self.query_info["query"].to_dict())
        extra = [c for c in ("lang", "kind") if c in self.query_info.columns]
        return table.join(self.query_info[extra]) if extra else table

    def intervals(self, name: str) -> pd.DataFrame:
        return stats.intervals(self.per_query[self._check(name)], n_boot=self.n_boot)


def _flatten(system: System, task) -> tuple[dict, dict, list[dict]]:
    """The recorded run and the qrels across subsets/splits (ids prefixed when there is more than one)."""
    splits = list(task_splits(task))
    run, qrels, info = {}, {}, []
    for subset, split, data in splits:
        prefix = f"{subset}/{split}/" if len(splits) > 1 else ""
        recorded = system.search.runs.get((subset, split), {})
        run.update({prefix + q: scores for q, scores in recorded.items()})
        qrels.update({prefix + q: docs for q, docs in data["relevant_docs"].items()})
        info.extend({"query_id": prefix + row["id"], "query": row["text"]} for row in data["queries"])
    return run, qrels, info


def _query_info(task, info: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(info).drop_duplicates("query_id").set_index("query_id")
    if isinstance(task, TkeBilingualRetrieval):
        source = task.source
        frame["lang"] = [source.query(q).lang for q in frame.index]
        frame["topic"] = [source.query(q).topic for q in frame.index]
        frame["kind"] = [source.query_kind(q) for q in frame.index]
    return frame


def _row(system: System, per_query: pd.DataFrame, mteb_row: dict, n_boot: int) -> dict:
    row = {"system": system.name, "kind": system.kind.value, "mteb ndcg_at_10": mteb_row.get("ndcg_at_10")}
    for metric in HEADLINE:
        mean, low, high = stats.bootstrap_ci(per_query[metric].to_numpy(), n_boot=n_boot)
        row.update({metric: mean, f"{metric} low": low, f"{metric} high": high})
    row["queries"] = len(per_query)
    return row


def _visual_data(result: ScorecardResult, systems: list[System], task) -> None:
    if not isinstance(task, TkeBilingualRetrieval):
        return
    source = task.source
    texts = [d.text for d in source.documents]
    sentences = list(source.sentence_set().texts)
    for system in systems:  # embedders only: the hybrid's dense half is drawn as its own system
        if system.kind is not Kind.HYBRID and system.embedder is not None:
            result.doc_vectors[system.name] = np.asarray(system.embedder.embed_documents(texts), dtype=np.float32)
            if sentences:
                result.sentence_sims[system.name] = cosine_matrix(system.embedder.embed_documents(sentences))


def task_fingerprint(task) -> str:
    """The task's name, evaluated content (queries, corpus, qrels) and the mteb version, hashed."""
    digest = hashlib.sha256(f"{task.metadata.name}|{mteb.__version__}|{sorted(task.k_values)}".encode())
    for subset, split, data in task_splits(task):
        digest.update(f"{subset}|{split}".encode())
        for part in (data["queries"]["id"], data["queries"]["text"], data["corpus"]["id"], data["corpus"]["text"]):
            digest.update("\x1f".join(map(str, part)).encode("utf-8"))
        digest.update(json.dumps(data["relevant_docs"], sort_keys=True).encode("utf-8"))
    return digest.hexdigest()


def _evaluate(system: System, task, results: ResultCache | None, fingerprint: str) -> tuple[dict, bool, list]:
    """mteb's scores per ``"subset\tsplit"``, whether they came from the result cache, and the embedding calls
    that produced them (kept with the cached result, so a rerun still knows the measured throughput)."""
    key = ResultCache.key(system.fingerprint, fingerprint)
    cached = results.get(key) if results is not None else None
    if cached is not None:
        system.search.runs = {tuple(k.split("\t")): v for k, v in cached["runs"].items()}
        return cached["scores"], True, cached.get("calls", [])
    scores = {"\t".join(k): v for k, v in evaluate_search(system.search, task).items()}
    calls = list(getattr(system.embedder, "calls", []) or [])
    if results is not None:
        results.put(key, {"scores": scores, "calls": calls,
                          "runs": {"\t".join(k): v for k, v in system.search.runs.items()}})
    return scores, False, calls


def run_scorecard(items: Sequence, task=None, *, cache_dir=None, home=None, **options) -> ScorecardResult:
    """:func:`_run_scorecard`, interruptible: an interrupt stops it with one line, and the embeddings computed so
    far stay in the cache (a rerun reuses them). ``cache_dir``: the cache folder, else
    :func:`~tke_playbook.scorecard.cache.default_cache_dir` of ``home`` (the state folder: ``pb.settings.home``;
    None: ``$TKE_PLAYBOOK_HOME``)."""
    cache_dir = cache_dir or default_cache_dir(home)
    with interruptible(lambda: f"scorecard: stopped; the embeddings computed so far are kept in "
                               f"{cache_dir} (a rerun reuses them)"):
        preload("sentence_transformers")  # mteb imports it (and torch) for every model: stoppable while it loads
        return _run_scorecard(items, task, cache_dir=cache_dir, **options)


MTEB_METRICS = ("ndcg", "recall", "mrr", "exact_ndcg", "exact_recall", "main_score")


def _mteb_metrics(scores: dict) -> dict:
    """The metrics of one mteb score row the scorecard keeps (nDCG, recall, MRR at each k, the main score)."""
    return {k: v for k, v in scores.items() if k.split("_at_")[0] in MTEB_METRICS}


def _label_queries(per_query: dict, query_info: pd.DataFrame) -> None:
    """Add each query's language, topic and kind to every system's per-query table."""
    for frame in per_query.values():
        for column in ("lang", "topic", "kind"):
            if column in query_info.columns:
                frame[column] = query_info.loc[frame.index, column].to_numpy()


def _run_scorecard(items: Sequence, task=None, *, cache_dir=None, progress: bool = True,
                   n_boot: int = stats.DEFAULT_BOOT, ks: Sequence[int] = stats.DEFAULT_KS, visuals: bool = True,
                   task_instruction: str | None = None, reuse_results: bool = True) -> ScorecardResult:
    """Evaluate every system in ``items`` on ``task`` (default: the shipped bilingual set as an mteb task)
    through ``mteb.evaluate``. Embeddings are cached on disk per (model, revision, dataset), and - unless
    ``reuse_results`` is False - mteb's scores and rankings per (system, task content, mteb version), so an
    unchanged rerun costs nothing."""
    task = task if task is not None else bilingual_task()
    if max(ks) < 10:
        raise InvalidSpecError("ks must include 10: the scorecard reports nDCG@10, recall@10 and MRR@10",
                               field="ks", value=ks)
    name = task.metadata.name
    dataset_key = f"{name}-{task.metadata.dataset.get('revision', '')}"
    systems = build_systems(items, dataset_key, cache_dir=cache_dir, progress=progress,
                            task_instruction=task_instruction)
    rows, per_query, runs, mteb_rows, seconds, calls, reused = [], {}, {}, [], {}, {}, {}
    qrels, info = {}, []
    results = ResultCache(cache_dir) if reuse_results else None
    fingerprint = task_fingerprint(task) if reuse_results else ""
    for system in systems:
        began = time.perf_counter()
        scores, reused[system.name], calls[system.name] = _evaluate(system, task, results, fingerprint)
        seconds[system.name] = time.perf_counter() - began
        run, qrels, info = _flatten(system, task)
        runs[system.name] = run
        per_query[system.name] = stats.per_query_scores(qrels, run, ks)
        first = next(iter(scores.values()), {})
        mteb_rows.append({"system": system.name, **_mteb_metrics(first)})
        rows.append(_row(system, per_query[system.name], first, n_boot))
    query_info = _query_info(task, info)
    _label_queries(per_query, query_info)
    result = ScorecardResult(task=name, systems=[s.name for s in systems], kinds={s.name: s.kind.value for s in systems},
                             table=pd.DataFrame(rows).set_index("system"), per_query=per_query, runs=runs, qrels=qrels,
                             mteb_scores=pd.DataFrame(mteb_rows).set_index("system"), query_info=query_info,
                             seconds=seconds, embed_calls=calls, n_boot=n_boot, reused=reused,
                             stages={s.name: s.extra for s in systems if s.kind is Kind.TWO_STAGE})
    if visuals:
        _visual_data(result, systems, task)
    return result
