"""Served-vector parity: does an endpoint return the vectors its weights should give?

A fixed probe set is embedded through the embedder under test (an endpoint's client, or anything with the
embedder interface) and compared with a reference computed from the same weights by sentence-transformers -
in-process here (:class:`ReferenceEncoder`), or on a cluster by a CPU Job reading the PVC
(:mod:`tke_playbook.scorecard.reference_job`). Checks: cosine >= 0.999 on every probe, the same norm, the same
vectors at batch 1 and batch 32, and queries carrying the catalog's prompt. A failing check names its likely
cause - pooling, normalisation, prompt, truncation or batching - by testing which alternative explains the served
vectors (users hit each of these: vllm#16892 pooling, vllm#16815 batch size, missing query prompts).
"""

from __future__ import annotations

import enum
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..embed.base import Embedder
from ..embed.local import LocalEmbedder, load_sentence_transformer, pool_tokens
from ..errors import BadRequestError, InvalidSpecError, PlaybookError
from ..evaluate.compare import model_of
from ..evaluate.datasets import load_bilingual
from ..hostenv import offline_model_dir
from ..specs.catalog import OFFLINE_MODEL, ModelInfo, Pooling, get_model

COS_MIN = 0.999
NORM_TOL = 1e-3
BATCH_COS_MIN = 0.9999
PROBE_COUNT = 32
LONG_PROBE = " ".join(["Kubernetes schedules pods onto nodes, restarts failed containers, mounts volumes and "
                       "routes traffic through services while the control plane reconciles the desired state."] * 30)
HANDWRITTEN = (
    "What is the capital of France?",
    "A PersistentVolumeClaim asks the cluster for storage.",
    "如何在 Kubernetes 中为容器申请 GPU？",
    "红烧肉要用小火慢炖一个小时。",
    "GPU",
    "The quick brown fox jumps over the lazy dog. 敏捷的棕色狐狸跳过了懒狗。",
    "Retry with exponential backoff when the server answers 429 or 503!",
    LONG_PROBE,
)


class Cause(str, enum.Enum):
    POOLING = "pooling"
    NORMALISATION = "normalisation"
    PROMPT = "prompt"
    TRUNCATION = "truncation"
    BATCH = "batching"
    WEIGHTS = "weights or dtype"
    # the served outputs beyond vectors (output_parity.py): packed bits and scores
    BIT_ORDER = "bit order"
    BINARY_OFFSET = "binary offset"
    BIT_SENSE = "bit sense"
    SCORE_FUNCTION = "score function"


def probe_set(n: int = PROBE_COUNT) -> list[str]:
    """The fixed probes: handwritten English/Chinese/mixed/short/over-long texts, then the shipped documents."""
    texts = list(HANDWRITTEN) + [d.text for d in load_bilingual().documents]
    return texts[:n]


class ReferenceEncoder:
    """The reference: sentence-transformers in-process on the model folder (its own pooling and normalisation),
    plus the token embeddings pooled other ways to name a cause. Batches of 8, so one long probe pads few others
    (results do not depend on the batch: sentence-transformers masks padding)."""

    def __init__(self, model_dir: str | os.PathLike, model: str | ModelInfo | None = None):
        self.model_dir = Path(model_dir)
        if not (self.model_dir / "config.json").is_file():
            raise InvalidSpecError(f"{self.model_dir} is not a model folder (no config.json): pass the folder the "
                                   "endpoint serves", field="model_dir", value=str(self.model_dir))
        self.model = get_model(model if model is not None else OFFLINE_MODEL)
        self.name = f"sentence-transformers reference ({self.model.short_name})"
        self._st = None

    def _load(self):
        if self._st is None:
            self._st = load_sentence_transformer(self.model_dir)
        return self._st

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Texts as given (prompts already applied), as the model's sentence-transformers config embeds them."""
        return np.asarray(self._load().encode(list(texts), batch_size=8, convert_to_numpy=True,
                                              show_progress_bar=False), dtype=np.float32)

    def pooled(self, texts: Sequence[str], pooling: Pooling, normalize: bool) -> np.ndarray:
        tokens = self._load().encode(list(texts), batch_size=8, output_value="token_embeddings",
                                     convert_to_numpy=False, show_progress_bar=False)
        vectors = np.stack([pool_tokens(t.float().cpu().numpy(), Pooling(pooling)) for t in tokens])
        if normalize:
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return vectors.astype(np.float32)

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """Untruncated token counts; verbose=False: counting a text longer than the model's limit is the point here,
        so the tokenizer must not warn (to stderr) about "indexing errors"."""
        encoded = self._load().tokenizer(list(texts), add_special_tokens=True, verbose=False)
        return [len(ids) for ids in encoded["input_ids"]]

    @property
    def max_tokens(self) -> int:
        return int(self._load().max_seq_length or self.model.max_tokens)


@dataclass(frozen=True)
class ParityCheck:
    name: str
    passed: bool
    value: float
    threshold: str
    detail: str = ""


@dataclass
class ParityReport:
    """The checks for one embedder, per-probe numbers, and - when a check fails - the likely cause."""

    embedder: str
    model: str
    checks: list[ParityCheck]
    per_probe: pd.DataFrame
    cause: Cause | None = None
    explanation: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def min_cos(self) -> float:
        return float(min(self.per_probe["cosine"].min(), self.per_probe["query cosine"].min(skipna=True)))

    def table(self) -> pd.DataFrame:
        """One row per check, for reading: the value to six decimals (no scientific notation)."""
        frame = pd.DataFrame([c.__dict__ for c in self.checks]).set_index("name")
        frame["value"] = [f"{float(v):.6f}" if isinstance(v, (int, float)) else str(v) for v in frame["value"]]
        return frame

    def sentence(self) -> str:
        if self.passed:
            return f"{self.embedder}: parity OK (min cosine {self.min_cos:.6f} over {len(self.per_probe)} probes)"
        return f"{self.embedder}: parity FAILED - likely cause: {self.cause.value}. {self.explanation}"


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    return (a * b).sum(axis=1) / np.maximum(na * nb, 1e-12)


def _served(embedder, texts: list[str], batch: int) -> tuple[np.ndarray, np.ndarray]:
    together = np.vstack([np.asarray(embedder.embed_documents(texts[i:i + batch]), dtype=np.float32)
                          for i in range(0, len(texts), batch)])
    single = np.vstack([np.asarray(embedder.embed_documents([t]), dtype=np.float32) for t in texts])
    return together, single


def _servable(embedder, texts: list[str], reference) -> tuple[list[str], str]:
    """Probes the endpoint accepts: one longer than the model's limit is dropped when the server refuses it (vLLM
    answers 400 without ``truncate_prompt_tokens``) instead of truncating."""
    if not callable(getattr(reference, "token_counts", None)):
        return texts, ""
    limit = reference.max_tokens
    long = [t for t, n in zip(texts, reference.token_counts(texts)) if n > limit]
    if not long:
        return texts, ""
    try:
        embedder.embed_documents(long[:1])
    except BadRequestError as exc:
        kept = [t for t in texts if t not in long]
        return kept, (f"{len(long)} probe(s) over {limit} tokens left out: the endpoint refuses them instead of "
                      f"truncating ({exc})")
    return texts, ""


def _pooling_cause(reference, texts, served, model: ModelInfo) -> tuple[Cause, str] | None:
    if not callable(getattr(reference, "pooled", None)):
        return None
    for pooling in Pooling:  # cosine ignores normalisation: normalised alternatives suffice
        if pooling is not model.pooling and _cos(served, reference.pooled(texts, pooling, True)).min() >= COS_MIN:
            return Cause.POOLING, (f"the served vectors match {pooling.value.upper()} pooling, but {model.hf_id} "
                                   f"uses {model.pooling.value.upper()} pooling (sentence-transformers config): "
                                   "set the server's pooler to the model's pooling (vLLM: --pooler-config).")
    return None


def _doc_cause(reference, texts, served, cos, model: ModelInfo) -> tuple[Cause, str]:
    found = _pooling_cause(reference, texts, served, model)
    if found:
        return found
    if callable(getattr(reference, "token_counts", None)):
        counts = np.asarray(reference.token_counts(texts))
        bad = cos < COS_MIN
        limit = reference.max_tokens
        if bad.any() and (counts[bad] > limit).all():
            return Cause.TRUNCATION, (f"only probes longer than {limit} tokens differ: the server cuts long inputs "
                                      "elsewhere than the model's max_seq_length (check --max-model-len and "
                                      "truncate_prompt_tokens).")
    return Cause.WEIGHTS, ("the vectors differ on ordinary probes and no other pooling explains them: check that "
                           "the endpoint serves the same weights (revision) and dtype as the reference.")


def _query_cause(reference, queries, served_q, model: ModelInfo) -> tuple[Cause, str]:
    raw = reference.encode(queries)
    if model.query_prompt != "{text}" and _cos(served_q, raw).min() >= COS_MIN:
        return Cause.PROMPT, (f"queries were embedded WITHOUT the catalog's query prompt {model.query_prompt!r}: "
                              "the client must apply it (EmbeddingClient.embed_queries does).")
    return Cause.PROMPT, (f"queries were embedded with a prompt other than the catalog's {model.query_prompt!r}: "
                          "check the client's catalog_model and task instruction.")


def check_parity(embedder: Embedder, reference, *, model: str | ModelInfo | None = None, probes: Sequence[str] | None = None,
                 batch: int = 32, queries: int = 8) -> ParityReport:
    """Compare ``embedder`` with ``reference`` on the probe set; the report names the likely cause of a failure."""
    info = _served_model(embedder, reference, model)
    texts = list(probes or probe_set())
    if len(texts) < 2:
        raise InvalidSpecError("parity needs at least two probes", field="probes", value=len(texts))
    texts, note = _servable(embedder, texts, reference)
    docs = [info.format_document(t) for t in texts]
    served, single = _served(embedder, texts, batch)
    ref = np.asarray(reference.encode(docs), dtype=np.float32)
    if served.shape != ref.shape:
        raise PlaybookError(f"{getattr(embedder, 'name', 'embedder')} returns {served.shape[1]}-dim vectors, the "
                            f"reference {ref.shape[1]}-dim: these are not the same model", obj=embedder)
    cos, norm_s, norm_r = _cos(served, ref), np.linalg.norm(served, axis=1), np.linalg.norm(ref, axis=1)
    batch_cos = _cos(single, served)
    qtexts = texts[:queries]
    served_q = np.asarray(embedder.embed_queries(qtexts), dtype=np.float32)
    q_cos = _cos(served_q, np.asarray(reference.encode([info.format_query(t) for t in qtexts]), dtype=np.float32))
    norm_gap = np.abs(norm_s - norm_r) / np.maximum(norm_r, 1e-12)
    checks = [
        ParityCheck("cosine per probe", bool(cos.min() >= COS_MIN), float(cos.min()), f">= {COS_MIN}",
                    f"{int((cos < COS_MIN).sum())} of {len(cos)} probes below"),
        ParityCheck("same norm", bool(norm_gap.max() <= NORM_TOL), float(norm_gap.max()), f"relative gap <= {NORM_TOL}",
                    f"served norms {norm_s.min():.3f}..{norm_s.max():.3f}, reference {norm_r.min():.3f}..{norm_r.max():.3f}"),
        ParityCheck("batch 1 = batch 32", bool(batch_cos.min() >= BATCH_COS_MIN), float(batch_cos.min()),
                    f">= {BATCH_COS_MIN}", f"each probe alone vs in batches of {batch}"),
        ParityCheck("query prompt as the catalog says", bool(q_cos.min() >= COS_MIN), float(q_cos.min()),
                    f">= {COS_MIN}", f"prompt {info.query_prompt!r}"),
    ]
    per_probe = pd.DataFrame({"probe": [t[:40] + ("…" if len(t) > 40 else "") for t in texts], "cosine": cos,
                              "served norm": norm_s, "reference norm": norm_r, "batch-1 cosine": batch_cos,
                              "query cosine": np.concatenate([q_cos, np.full(len(texts) - len(qtexts), np.nan)])})
    report = ParityReport(getattr(embedder, "name", type(embedder).__name__), info.hf_id, checks, per_probe,
                          extra={"note": note} if note else {})
    failed = {c.name for c in checks if not c.passed}
    if failed:
        report.cause, report.explanation = _cause(failed, reference, info, docs, served, cos, (norm_s, norm_r),
                                                  qtexts, served_q)
    return report


def _served_model(embedder: Embedder, reference, model: str | ModelInfo | None) -> ModelInfo:
    """The catalog model to compare against: ``model``, else what the embedder or the reference says it is."""
    info = get_model(model) if model is not None else (model_of(embedder) or getattr(reference, "model", None))
    if not isinstance(info, ModelInfo):
        raise InvalidSpecError("cannot tell which catalog model the embedder serves: pass model='<hf id>'",
                               field="model", value=getattr(embedder, "name", None))
    return info


def _cause(failed: set[str], reference, info: ModelInfo, docs, served, cos, norms, qtexts,
           served_q) -> tuple[Cause, str]:
    """The likeliest cause of the failed checks, the most telling check first: documents' directions, then their
    norms, then the query prompt, else the batch."""
    if "cosine per probe" in failed:
        return _doc_cause(reference, docs, served, cos, info)
    if "same norm" in failed:
        norm_s, norm_r = norms
        return Cause.NORMALISATION, (
            f"directions match but norms differ (served {norm_s.mean():.3f}, reference {norm_r.mean():.3f}): one "
            "side does not L2-normalise; cosine scores survive, dot products and thresholds do not.")
    if "query prompt as the catalog says" in failed:
        return _query_cause(reference, qtexts, served_q, info)
    return Cause.BATCH, (
        "a text's vector changes with the batch it is sent in: padding or attention masking differs between "
        "batch sizes (vllm#16815); pin the server version or report it.")


def wrong_pooling_demo(pooling: Pooling | str = Pooling.CLS) -> ParityReport:
    """Parity of a deliberately misconfigured embedder - the offline model pooled with ``pooling`` instead of
    its mean pooling - against its sentence-transformers reference: it must fail, with the cause named."""
    return check_parity(LocalEmbedder(pooling=pooling), ReferenceEncoder(offline_model_dir()),
                        probes=[t for t in probe_set() if t != LONG_PROBE])
