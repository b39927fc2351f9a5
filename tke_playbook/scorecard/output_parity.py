"""Served-output parity: beyond the vectors (:mod:`.parity`), does an endpoint's Cohere ``/v2/embed`` pack the
bits, and do its ``/score`` and ``/rerank`` score the pairs, as sentence-transformers does on the same inputs?

The endpoint's client (any vLLM-compatible one: the local server or a cluster's) is compared with a reference
from the same weights (:class:`~tke_playbook.scorecard.parity.ReferenceEncoder` in-process, or the CPU Job's
:class:`~tke_playbook.scorecard.reference_job.PrecomputedReference`):

- ``float`` from ``/v2/embed`` against the reference vectors (cosine >= 0.999);
- ``binary`` and ``ubinary`` against ``sentence_transformers.quantization.quantize_embeddings`` of the reference
  vectors, bit for bit - except where a reference value lies within ``NEAR_ZERO`` of zero: there the two sides'
  float noise may fall on either side, and sentence-transformers packs ``> 0`` where vLLM packs ``>= 0``;
- ``/score`` (one query against the documents, texts as sent: vLLM applies no prompt) against
  ``sentence_transformers.util.cos_sim`` of the reference vectors, within ``SCORE_TOL``;
- ``/rerank``: the same scores, sorted.

A failing check names its likely cause by testing which alternative explains what was served: the vectors
themselves (pooling, weights - as :func:`~tke_playbook.scorecard.parity.check_parity` names them), bits packed
least significant first, the signed/unsigned offset of Cohere's ``binary``, inverted bits, scores that are dot
products of unnormalised vectors or pass through a sigmoid, or a query prompt the server applied.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..embed.api import BINARY_OFFSET_HINT
from ..errors import EmbeddingAPIError, InvalidSpecError, PlaybookError
from ..evaluate.compare import model_of
from ..specs.catalog import ModelInfo, get_model
from .parity import COS_MIN, LONG_PROBE, Cause, ParityCheck, _cos, _doc_cause, probe_set

NEAR_ZERO = 1e-5  # |value| below which a bit may differ without a fault (float noise, > 0 against >= 0)
SCORE_TOL = 1e-3
PROBES = 12
QUERIES = 3


def quantize(vectors: np.ndarray, kind: str) -> np.ndarray:
    """sentence-transformers' own quantisation (``binary``: int8, ``ubinary``: uint8 packed bits)."""
    from sentence_transformers.util.quantization import quantize_embeddings

    return quantize_embeddings(np.asarray(vectors, dtype=np.float32), precision=kind)


def _unsigned(packed: np.ndarray, kind: str) -> np.ndarray:
    return (packed.astype(np.int16) + 128).astype(np.uint8) if kind == "binary" else packed.astype(np.uint8)


def _bits(packed: np.ndarray, kind: str) -> np.ndarray:
    return np.unpackbits(_unsigned(packed, kind), axis=-1)


def _bit_cause(kind: str, served: np.ndarray, reference: np.ndarray) -> tuple[Cause, str] | None:
    """Which packing of the reference vectors the served bits are, if one of the usual mistakes."""
    signs = reference > 0
    alternatives = [
        (np.packbits(signs, axis=-1, bitorder="little"), Cause.BIT_ORDER,
         "the bits are packed least significant first; Cohere, vLLM and sentence-transformers pack the most "
         "significant bit first"),
        (np.packbits(~signs, axis=-1), Cause.BIT_SENSE,
         "the bits are inverted: 1 for a negative value, where Cohere and sentence-transformers set 1 for a "
         "positive one"),
    ]
    for packed, cause, why in alternatives:
        if packed.shape == served.shape and np.array_equal(_unsigned(served, kind), packed):
            return cause, why
    return None


def _served_bits(client, docs: list[str], kind: str) -> tuple[np.ndarray | None, tuple[Cause, str] | None]:
    """The served packed bits of ``kind``, or the cause when the answer is not Cohere's packing at all."""
    try:
        return client.cohere_embed(docs, (kind,))[kind], None
    except EmbeddingAPIError as exc:
        if BINARY_OFFSET_HINT in str(exc):
            return None, (Cause.BINARY_OFFSET, exc.message)
        raise


@dataclass
class OutputParityReport:
    """The checks for one endpoint, per-item numbers, and the likely cause of each failure."""

    embedder: str
    model: str
    checks: list[ParityCheck]
    per_item: pd.DataFrame
    causes: dict[str, tuple[Cause, str]] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def cause(self) -> Cause | None:
        return next(iter(self.causes.values()))[0] if self.causes else None

    def table(self) -> pd.DataFrame:
        frame = pd.DataFrame([c.__dict__ for c in self.checks]).set_index("name")
        frame["value"] = [f"{float(v):.6f}" for v in frame["value"]]
        frame["likely cause"] = [f"{self.causes[n][0].value}: {self.causes[n][1]}" if n in self.causes else ""
                                 for n in frame.index]
        return frame

    def sentence(self) -> str:
        if self.passed:
            return (f"{self.embedder}: served outputs match sentence-transformers (/v2/embed float, binary and "
                    f"ubinary; /score and /rerank) on {len(self.per_item)} probes")
        failed = [c.name for c in self.checks if not c.passed]
        name = next((n for n in failed if n in self.causes), failed[0])
        cause, why = self.causes.get(name, (Cause.WEIGHTS, "no single alternative explains it"))
        return f"{self.embedder}: output parity FAILED on {', '.join(failed)} - likely cause: {cause.value}. {why}"


def _score_cause(reference, query: str, docs: list[str], served: np.ndarray, info: ModelInfo) -> tuple[Cause,
                                                                                                        str]:
    """Which scoring of the reference explains the served scores."""
    def close(values) -> bool:
        return bool(np.abs(np.asarray(values, dtype=float) - served).max() <= SCORE_TOL)

    cosine = _cos(np.repeat(reference.encode([query]), len(docs), axis=0), reference.encode(docs))
    if close(1 / (1 + np.exp(-cosine))):
        return Cause.SCORE_FUNCTION, ("the scores are the sigmoid of the cosine: a bi-encoder's score is the plain "
                                      "cosine of the two vectors (vLLM: use_activation applies to cross-encoders)")
    if info.query_prompt != "{text}":
        prompted = _cos(np.repeat(reference.encode([info.format_query(query)]), len(docs), axis=0),
                        reference.encode(docs))
        if close(prompted):
            return Cause.PROMPT, ("the server applied the catalog's query prompt: vLLM's /score embeds both texts "
                                  "as sent (put a prompt in the text yourself)")
    try:
        raw = reference.pooled([query] + docs, info.pooling, False)
        if close(raw[1:] @ raw[0]):
            return Cause.SCORE_FUNCTION, ("the scores are dot products of unnormalised vectors, not their cosine: "
                                          "vLLM scores an embedding model with the cosine")
    except PlaybookError:  # a precomputed reference has no unnormalised query vectors
        pass
    return Cause.WEIGHTS, "no other scoring explains them: check the vectors (check_parity) and the served weights"


def _embed_checks(client, reference, docs: list[str], info: ModelInfo, report: OutputParityReport) -> None:
    typed = client.cohere_embed(docs, ("float",))
    ref = np.asarray(reference.encode(docs), dtype=np.float32)
    cos = _cos(np.asarray(typed["float"], dtype=np.float32), ref)
    report.checks.append(ParityCheck("/v2/embed float = reference", bool(cos.min() >= COS_MIN), float(cos.min()),
                                     f">= {COS_MIN}", f"{int((cos < COS_MIN).sum())} of {len(cos)} probes below"))
    report.per_item["float cosine"] = cos
    if cos.min() < COS_MIN:
        report.causes["/v2/embed float = reference"] = _doc_cause(reference, docs, typed["float"], cos, info)
    for kind in ("binary", "ubinary"):
        name = f"/v2/embed {kind} = quantize_embeddings"
        served, unpacked = _served_bits(client, docs, kind)
        if served is None:
            report.checks.append(ParityCheck(name, False, 0.0, "every bit off zero", "not Cohere's packing"))
            report.causes[name] = unpacked
            continue
        expected = quantize(ref, kind)
        differs = _bits(served, kind) != _bits(expected, kind) if served.shape == expected.shape else \
            np.ones((len(docs), ref.shape[1]), dtype=bool)
        noise = np.abs(ref) < NEAR_ZERO if differs.shape == ref.shape else np.zeros_like(differs)
        wrong = differs & ~noise
        report.checks.append(ParityCheck(name, not wrong.any(), float(1 - differs.mean()), "every bit off zero",
                                         f"{int(wrong.sum())} bits differ, {int((differs & noise).sum())} more "
                                         f"within {NEAR_ZERO:g} of zero (float noise, > 0 against >= 0)"))
        report.per_item[f"{kind} bits differing"] = wrong.sum(axis=1)
        if wrong.any():
            report.causes[name] = (report.causes.get("/v2/embed float = reference")
                                   or _bit_cause(kind, served, ref)
                                   or (Cause.WEIGHTS, "the bits follow no packing of the reference vectors"))


def _score_checks(client, reference, queries: list[str], docs: list[str], info: ModelInfo,
                  report: OutputParityReport) -> None:
    worst, rerank_worst, cause = 0.0, 0.0, None
    ref_docs, ref_queries = reference.encode(docs), reference.encode(queries)
    for query, ref_query in zip(queries, ref_queries):
        served = np.asarray(client.score(query, docs), dtype=float)
        expected = _cos(np.repeat(ref_query[None, :], len(docs), axis=0), ref_docs)
        gap = float(np.abs(served - expected).max())
        if gap > SCORE_TOL and cause is None:
            cause = _score_cause(reference, query, docs, served, info)
        worst = max(worst, gap)
        ranked = client.rerank(query, docs)
        order_ok = list(ranked.order) == sorted(range(len(docs)), key=lambda i: (-served[i], i)) or \
            np.allclose(np.sort(served)[::-1], ranked.scores, atol=SCORE_TOL)
        rerank_worst = max(rerank_worst, float(np.abs(ranked.by_index() - served).max()) if order_ok else 1.0)
    report.checks.append(ParityCheck("/score = cos_sim(reference)", worst <= SCORE_TOL, worst, f"<= {SCORE_TOL}",
                                     f"{len(queries)} queries x {len(docs)} documents, largest |served - expected|"))
    report.checks.append(ParityCheck("/rerank = /score, sorted", rerank_worst <= SCORE_TOL, rerank_worst,
                                     f"<= {SCORE_TOL}", "relevance_score of each document against its /score"))
    if cause:
        report.causes["/score = cos_sim(reference)"] = cause
    if rerank_worst > SCORE_TOL:
        report.causes["/rerank = /score, sorted"] = (Cause.SCORE_FUNCTION, "the rerank scores or their order differ "
                                                     "from /score on the same pairs: vLLM reranks by the same score")


def check_output_parity(client, reference, *, model: str | ModelInfo | None = None,
                        probes: Sequence[str] | None = None, queries: int = QUERIES) -> OutputParityReport:
    """Compare the endpoint behind ``client`` (its ``/v2/embed``, ``/score`` and ``/rerank``) with
    ``reference`` on the probe set; the report names the likely cause of each failure."""
    info = get_model(model) if model is not None else (model_of(client) or getattr(reference, "model", None))
    if not isinstance(info, ModelInfo):
        raise InvalidSpecError("cannot tell which catalog model the endpoint serves: pass model='<hf id>'",
                               field="model", value=getattr(client, "name", None))
    for method in ("cohere_embed", "score", "rerank"):
        if not callable(getattr(client, method, None)):
            raise InvalidSpecError(f"output parity needs an endpoint's client (with {method}): pass an "
                                   f"EmbeddingClient, not {type(client).__name__}", field="client",
                                   value=type(client).__name__)
    texts = [t for t in (probes or probe_set(PROBES)) if t != LONG_PROBE]
    if len(texts) < 2:
        raise InvalidSpecError("output parity needs at least two probes", field="probes", value=len(texts))
    docs = [info.format_document(t) for t in texts]
    report = OutputParityReport("", info.hf_id, [],
                                pd.DataFrame({"probe": [t[:40] + ("…" if len(t) > 40 else "") for t in texts]}))
    _embed_checks(client, reference, docs, info, report)
    _score_checks(client, reference, texts[:max(1, queries)], docs, info, report)
    report.embedder = str(getattr(client, "name", None) or type(client).__name__)  # the served name, once known
    return report
