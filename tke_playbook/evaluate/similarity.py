"""Similarity analytics on embedding matrices: cosine matrices, top-k retrieval into TREC runs, score
distributions of relevant and irrelevant pairs, topic separation and a 2-D PCA projection (numpy only)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..errors import InvalidSpecError


def as_matrix(vectors, what: str = "vectors") -> np.ndarray:
    """``vectors`` as a 2-D float64 array with finite values, or a clear error."""
    array = np.asarray(vectors, dtype=np.float64)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] == 0:
        raise InvalidSpecError(f"{what} must be a 2-D array (one row per text), got shape {array.shape}",
                               field=what, value=array.shape)
    if not np.isfinite(array).all():
        raise InvalidSpecError(f"{what} contain NaN or infinite values: check the embedder's output", field=what,
                               value=array.shape)
    return array


def normalize_rows(vectors) -> np.ndarray:
    """Rows scaled to unit L2 norm; all-zero rows stay zero (their cosine with anything is 0)."""
    array = as_matrix(vectors)
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return np.divide(array, norms, out=np.zeros_like(array), where=norms > 0)


def cosine_matrix(a, b=None) -> np.ndarray:
    """Cosine similarity of every row of ``a`` with every row of ``b`` (``a`` with itself when ``b`` is None)."""
    left = normalize_rows(a)
    right = left if b is None else normalize_rows(b)
    if left.shape[1] != right.shape[1]:
        raise InvalidSpecError(f"cannot compare {left.shape[1]}-dim with {right.shape[1]}-dim vectors: embed both "
                               "sides with the same model", field="b", value=right.shape)
    return np.clip(left @ right.T, -1.0, 1.0)


def retrieve(query_vecs, doc_vecs, query_ids: Sequence[str], doc_ids: Sequence[str],
             k: int | None = 10) -> dict[str, dict[str, float]]:
    """A TREC-style run ``run[qid][docid] = cosine`` holding each query's top ``k`` documents (all when None)."""
    sim = cosine_matrix(query_vecs, doc_vecs)
    if sim.shape != (len(query_ids), len(doc_ids)):
        raise InvalidSpecError(f"{sim.shape[0]} query vectors and {sim.shape[1]} document vectors do not match "
                               f"{len(query_ids)} query ids and {len(doc_ids)} document ids", field="ids",
                               value=sim.shape)
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
        raise InvalidSpecError(f"k must be a positive integer or None, got {k!r}", field="k", value=k)
    return run_from_matrix(sim, query_ids, doc_ids, k)


def run_from_matrix(sim: np.ndarray, query_ids: Sequence[str], doc_ids: Sequence[str],
                    k: int | None = None) -> dict[str, dict[str, float]]:
    """Turn a query × document score matrix into a run, keeping each row's top ``k`` (ties by document id)."""
    run: dict[str, dict[str, float]] = {}
    order_ids = np.argsort(np.asarray(doc_ids, dtype=object), kind="stable")
    for i, qid in enumerate(query_ids):
        row = sim[i]
        # ids in ascending order, then a stable sort by descending score: equal scores keep ascending id order
        ranked = order_ids[np.argsort(-row[order_ids], kind="stable")]
        top = ranked if k is None else ranked[:k]
        run[str(qid)] = {str(doc_ids[j]): float(row[j]) for j in top}
    return run


def score_distributions(sim, qrels: Mapping[str, Mapping[str, float]], query_ids: Sequence[str],
                        doc_ids: Sequence[str], query_langs: Sequence[str] | None = None,
                        doc_langs: Sequence[str] | None = None):
    """Every query-document pair as a row: ``query_id``, ``doc_id``, ``score``, ``grade`` (0 when not judged),
    ``relevant`` (grade > 0), ``label`` (``relevant``/``irrelevant``) and, given languages, ``cross_lingual``."""
    import pandas as pd  # late: as in metrics.per_query_table

    sim = as_matrix(sim, "sim")
    if sim.shape != (len(query_ids), len(doc_ids)):
        raise InvalidSpecError(f"sim has shape {sim.shape} but there are {len(query_ids)} queries and "
                               f"{len(doc_ids)} documents", field="sim", value=sim.shape)
    rows = []
    for i, qid in enumerate(query_ids):
        judged = qrels.get(qid, {})
        for j, did in enumerate(doc_ids):
            grade = judged.get(did, 0)
            row = {"query_id": qid, "doc_id": did, "score": float(sim[i, j]), "grade": int(grade),
                   "relevant": grade > 0, "label": "relevant" if grade > 0 else "irrelevant"}
            if query_langs is not None and doc_langs is not None:
                row["cross_lingual"] = query_langs[i] != doc_langs[j]
            rows.append(row)
    return pd.DataFrame(rows)


def separation(distributions) -> dict[str, float]:
    """How well scores separate relevant from irrelevant pairs: the mean gap and the AUC (the chance that a random
    relevant pair outscores a random irrelevant one; 0.5 = no better than chance)."""
    rel = distributions.loc[distributions["relevant"], "score"].to_numpy()
    irr = distributions.loc[~distributions["relevant"], "score"].to_numpy()
    if len(rel) == 0 or len(irr) == 0:
        return {"mean_relevant": float("nan"), "mean_irrelevant": float("nan"), "gap": float("nan"),
                "auc": float("nan")}
    greater = (rel[:, None] > irr[None, :]).sum() + 0.5 * (rel[:, None] == irr[None, :]).sum()
    return {"mean_relevant": float(rel.mean()), "mean_irrelevant": float(irr.mean()),
            "gap": float(rel.mean() - irr.mean()), "auc": float(greater / (len(rel) * len(irr)))}


def topic_separation(sim, topics: Sequence[str]) -> dict[str, float]:
    """Mean similarity of different sentences within one topic, across topics, and their difference."""
    sim = as_matrix(sim, "sim")
    labels = np.asarray(topics, dtype=object)
    if sim.shape != (len(labels), len(labels)):
        raise InvalidSpecError(f"sim has shape {sim.shape} but there are {len(labels)} topic labels",
                               field="topics", value=len(labels))
    same = labels[:, None] == labels[None, :]
    off_diagonal = ~np.eye(len(labels), dtype=bool)
    within = sim[same & off_diagonal]
    across = sim[~same]
    w = float(within.mean()) if within.size else float("nan")
    a = float(across.mean()) if across.size else float("nan")
    return {"within_topic": w, "across_topics": a, "margin": w - a}


def pca_2d(vectors) -> np.ndarray:
    """Project rows onto their first two principal components (centred, via SVD); shape ``(n, 2)``.

    Signs are fixed so that each component's largest-magnitude loading is positive (stable across runs)."""
    array = as_matrix(vectors)
    if array.shape[0] < 2:
        raise InvalidSpecError("PCA needs at least two vectors", field="vectors", value=array.shape)
    centred = array - array.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    components = vt[:2]
    signs = np.sign(components[np.arange(len(components)), np.abs(components).argmax(axis=1)])
    components = components * signs[:, None]
    points = centred @ components.T
    if points.shape[1] < 2:  # one-dimensional input: pad the missing component with zeros
        points = np.hstack([points, np.zeros((points.shape[0], 2 - points.shape[1]))])
    return points


def project_2d(vectors, method: str = "pca", *, seed: int = 0) -> np.ndarray:
    """Rows projected to 2-D: ``pca`` (numpy, deterministic) or ``umap`` (needs ``umap-learn``; cosine metric)."""
    if method == "pca":
        return pca_2d(vectors)
    if method != "umap":
        raise InvalidSpecError(f"method={method!r}: use 'pca' or 'umap'", field="method", value=method)
    try:
        import umap
    except ImportError as exc:
        raise InvalidSpecError("method='umap' needs umap-learn: pip install umap-learn (or use method='pca')",
                               field="method", value=method, cause=exc) from exc
    array = as_matrix(vectors)
    reducer = umap.UMAP(n_components=2, n_neighbors=min(15, len(array) - 1), metric="cosine", random_state=seed)
    return np.asarray(reducer.fit_transform(array), dtype=float)
