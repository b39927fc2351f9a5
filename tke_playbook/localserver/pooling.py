"""vLLM's other pooling routes for an embedding model, as pure functions: ``/score``, ``/rerank``, ``/pooling``,
Cohere's ``/v2/embed`` and ``/classify`` (request models and answers of ``vllm/entrypoints/pooling/*`` in 0.33.0
and 0.34.0, which agree on all of these; :mod:`.surface` says where the two releases differ).

An embedding model scores as vLLM's bi-encoder does: every query and document is embedded on its own and a pair's
score is the cosine of the two pooled vectors (``F.cosine_similarity``). Rerank is the same scoring, answered
sorted by relevance and cut to ``top_n``.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import EmbeddingAPIError
from . import surface
from .protocol import bad_request, build_error, decode_json, not_found, usage, validation_error


class _Scoring(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str | None = None
    user: str | None = None
    truncate_prompt_tokens: Annotated[int, Field(ge=-1)] | None = None
    truncation_side: Literal["left", "right"] | None = None
    request_id: str | None = None
    priority: Annotated[int, Field(ge=-(2 ** 63), le=2 ** 63 - 1)] = 0
    use_activation: bool | None = None
    max_tokens_per_query: int = 0
    max_tokens_per_doc: int = 0
    instruction: str | None = None
    chat_template_kwargs: dict[str, Any] | None = None


_ScoreInput = str | dict[str, Any]  # a string, or {"content": [...]} (multimodal: refused for a text model)


class _ScoreQueriesDocuments(_Scoring):
    queries: _ScoreInput | list[_ScoreInput]
    documents: _ScoreInput | list[_ScoreInput]


class _ScoreQueriesItems(_Scoring):
    queries: _ScoreInput | list[_ScoreInput]
    items: _ScoreInput | list[_ScoreInput]


class _ScoreData(_Scoring):
    data_1: _ScoreInput | list[_ScoreInput]
    data_2: _ScoreInput | list[_ScoreInput]


class _ScoreText(_Scoring):
    text_1: _ScoreInput | list[_ScoreInput]
    text_2: _ScoreInput | list[_ScoreInput]


class _Rerank(_Scoring):
    query: _ScoreInput
    documents: _ScoreInput | list[_ScoreInput]
    top_n: Annotated[int, Field(ge=0)] = 0


# The score forms in the order vLLM's ScoreRequest union tries them, with the fields that carry each side.
SCORE_FORMS = ((_ScoreQueriesDocuments, "queries", "documents"), (_ScoreQueriesItems, "queries", "items"),
               (_ScoreData, "data_1", "data_2"), (_ScoreText, "text_1", "text_2"))


class _Cohere(BaseModel):  # vLLM's CohereEmbedRequest is a plain BaseModel: unknown fields are ignored
    model: str | None = None
    input_type: str | None = None
    texts: list[str] | None = None
    images: list[str] | None = None
    inputs: list[dict[str, Any]] | None = None
    output_dimension: int | None = None
    embedding_types: list[Literal["float", "binary", "ubinary", "base64"]] | None = None
    truncate: Literal["NONE", "START", "END"] = "END"
    max_tokens: int | None = None
    priority: Annotated[int, Field(ge=-(2 ** 63), le=2 ** 63 - 1)] = 0


@dataclass(frozen=True)
class ScoringJob:
    """A checked score or rerank request: the two sides as texts, and how to answer."""

    model: str
    queries: tuple[str, ...]
    documents: tuple[str, ...]
    rerank: bool = False
    top_n: int = 0
    truncate_prompt_tokens: int | None = None
    truncation_side: str | None = None
    use_activation: bool | None = None
    max_tokens_per_query: int = 0
    max_tokens_per_doc: int = 0
    request_id: str | None = None


@dataclass(frozen=True)
class CohereJob:
    """A checked Cohere embed request."""

    model: str
    texts: tuple[str, ...] | None
    conversations: tuple[tuple[dict, ...], ...] | None
    output_dimension: int | None
    embedding_types: tuple[str, ...]
    truncate_prompt_tokens: int | None
    truncation_side: str | None
    max_tokens: int | None
    truncate: str


def _validate(model, data: dict):
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None


def _texts(value, architecture: str) -> list[str]:
    items = value if isinstance(value, list) else [value]
    if any(not isinstance(item, str) for item in items):
        raise bad_request(f"MultiModalParam is not supported for {architecture}")
    return items


def _model(requested: str | None, served: str) -> str:
    model = requested or served
    if model != served:
        raise not_found(f"The model `{model}` does not exist.")
    return model


def _token_limit(value: int, name: str, max_model_len: int) -> None:
    if value < 0:
        raise bad_request(f"{name} must be a non-negative integer")
    if value >= max_model_len:
        raise bad_request(f"{name} ({value}) must be less than max_model_len ({max_model_len}).")


def parse_scoring(body: bytes, *, rerank: bool, served: str, max_model_len: int, architecture: str,
                  request_id: str | None = None) -> ScoringJob:
    """A /score (any of its four forms) or /rerank body, checked as vLLM checks it."""
    data = decode_json(body)
    if rerank:
        parsed, first, second = _validate(_Rerank, data), "query", "documents"
    else:
        form = next((f for f in SCORE_FORMS if f[1] in data and f[2] in data), None)
        if form is None:
            _validate(_ScoreText, data)  # what vLLM lists as missing for a body of none of the forms
            raise bad_request("Send one of: queries + documents, queries + items, data_1 + data_2, text_1 + text_2.",
                              validation=True)
        parsed, first, second = _validate(form[0], data), form[1], form[2]
    model = _model(parsed.model, served)
    queries = _texts(getattr(parsed, first), architecture)
    documents = _texts(getattr(parsed, second), architecture)
    if len(queries) > 1 and len(queries) != len(documents):
        raise bad_request("Input lengths must be either 1:1, 1:N or N:N")
    if not queries:
        raise bad_request("At least one text element must be given")
    if not documents:
        raise bad_request("At least one text_pair element must be given")
    for name in ("max_tokens_per_query", "max_tokens_per_doc"):
        if getattr(parsed, name):
            _token_limit(getattr(parsed, name), name, max_model_len)
    return ScoringJob(model=model, queries=tuple(queries), documents=tuple(documents), rerank=rerank,
                      top_n=getattr(parsed, "top_n", 0), truncate_prompt_tokens=parsed.truncate_prompt_tokens,
                      truncation_side=parsed.truncation_side, use_activation=parsed.use_activation,
                      max_tokens_per_query=parsed.max_tokens_per_query, max_tokens_per_doc=parsed.max_tokens_per_doc,
                      request_id=request_id or parsed.request_id)


def cosine_scores(queries: np.ndarray, documents: np.ndarray) -> np.ndarray:
    """vLLM's bi-encoder score: the cosine of each pair (one query against every document, or pair by pair), with
    torch's ``cosine_similarity`` guard (norms below 1e-8 taken as 1e-8)."""
    q = np.asarray(queries, dtype=np.float64)
    d = np.asarray(documents, dtype=np.float64)
    if len(q) == 1:
        q = np.repeat(q, len(d), axis=0)
    norms = np.maximum(np.linalg.norm(q, axis=1), 1e-8) * np.maximum(np.linalg.norm(d, axis=1), 1e-8)
    return (q * d).sum(axis=1) / norms


def score_response(job: ScoringJob, scores: np.ndarray, prompt_tokens: int, version: str,
                   created: int | None = None) -> dict:
    """vLLM's ScoreResponse."""
    return {"id": f"score-{job.request_id}", "object": "list",
            "created": int(created if created is not None else time.time()), "model": job.model,
            "data": [{"index": i, "object": "score", "score": float(s)} for i, s in enumerate(scores)],
            "usage": usage(prompt_tokens, version)}


def rerank_response(job: ScoringJob, scores: np.ndarray, prompt_tokens: int) -> dict:
    """vLLM's RerankResponse: results sorted by relevance, the first ``top_n`` (all when 0), each document
    echoed (vLLM has no ``return_documents`` switch: the field is ignored like any unknown one)."""
    results = [{"index": i, "document": {"text": doc, "multi_modal": None}, "relevance_score": float(s)}
               for i, (doc, s) in enumerate(zip(job.documents, scores))]
    results.sort(key=lambda r: r["relevance_score"], reverse=True)
    if 0 < job.top_n < len(results):
        results = results[:job.top_n]
    return {"id": f"score-{job.request_id}", "model": job.model,
            "usage": {"prompt_tokens": int(prompt_tokens), "total_tokens": int(prompt_tokens)}, "results": results}


# --- /pooling ----------------------------------------------------------------------------------------------------


def pooling_body(body: bytes) -> dict:
    """A /pooling body made an embeddings body, after vLLM's /pooling checks (``normalize`` removed, only the
    embedding model's task, no ``dimensions``)."""
    data = decode_json(body)
    if "normalize" in data:
        raise bad_request("Parameter `normalize` was removed; use `use_activation` instead.", validation=True,
                          param="normalize")
    task = data.get("task")
    if task is not None and task != "embed":
        raise bad_request(f"Unsupported task: {task!r} Supported tasks: {surface.EMBED_MODEL_TASKS}", param="task")
    if data.get("dimensions") is not None:
        raise bad_request("dimensions is currently not supported", param="dimensions")
    return {k: v for k, v in data.items() if k != "task"}


# --- Cohere /v2/embed ---------------------------------------------------------------------------------------------


def _cohere_truncation(parsed: _Cohere) -> tuple[int | None, str | None]:
    if parsed.truncate == "NONE":
        return None, None
    if parsed.truncate == "START":
        return (parsed.max_tokens if parsed.max_tokens is not None else -1), "left"
    return (parsed.max_tokens if parsed.max_tokens is not None else -1), None


def _cohere_conversations(inputs: list[dict]) -> tuple[tuple[dict, ...], ...]:
    out = []
    for item in inputs:
        content = item.get("content") if isinstance(item, dict) else None
        if not isinstance(content, list) or any(not isinstance(p, dict) for p in content):
            raise bad_request("inputs: each input needs a `content` list of parts.", validation=True)
        if any(p.get("type") != "text" or not isinstance(p.get("text"), str) for p in content):
            raise bad_request("Only text content parts are supported by this model.")
        out.append(({"role": "user", "content": "".join(p["text"] for p in content)},))
    return tuple(out)


def _cohere_prefix(input_type: str | None, task_instructions: dict | None) -> str:
    """The task instruction put before each text for ``input_type`` ('' without one); an input_type the model
    does not define is refused as vLLM refuses it."""
    if input_type is None:
        return (task_instructions or {}).get("", "")
    if not task_instructions:
        raise bad_request(f"Unsupported input_type {input_type!r}. This model does not define any input_type "
                          f"task instructions.")
    if input_type not in task_instructions:
        raise bad_request(f"Unsupported input_type {input_type!r}. Supported values: "
                          f"{', '.join(sorted(task_instructions))}")
    return task_instructions[input_type]


def parse_cohere(body: bytes, *, served: str, task_instructions: dict | None = None) -> CohereJob:
    """A Cohere /v2/embed body, checked as vLLM's CohereEmbedRequest and embed IO processor check it."""
    parsed = _validate(_Cohere, decode_json(body))
    given = [f for f in (parsed.texts, parsed.images, parsed.inputs) if f is not None]
    if len(given) != 1 or not given[0]:
        raise bad_request("Value error, Exactly one of texts, images, or inputs must be provided, and it must be "
                          "non-empty", validation=True)
    model = _model(parsed.model, served)
    prefix = _cohere_prefix(parsed.input_type, task_instructions)
    if parsed.images is not None:
        raise bad_request("This model takes no images: send `texts`.")
    texts = tuple(prefix + t for t in parsed.texts) if parsed.texts is not None else None
    truncate, side = _cohere_truncation(parsed)
    return CohereJob(model=model, texts=texts,
                     conversations=_cohere_conversations(parsed.inputs) if parsed.inputs is not None else None,
                     output_dimension=parsed.output_dimension,
                     embedding_types=tuple(parsed.embedding_types or ("float",)), truncate_prompt_tokens=truncate,
                     truncation_side=side, max_tokens=parsed.max_tokens, truncate=parsed.truncate)


def _packed(vectors: np.ndarray, signed: bool) -> list[list[int]]:
    """Cohere's binary types: one bit per value (>= 0 is 1), eight per byte, most significant first."""
    if vectors.shape[1] % 8:
        raise bad_request(f"Embedding dimension must be a multiple of 8 for binary embedding types, but got "
                          f"{vectors.shape[1]}.")
    packed = np.packbits(vectors >= 0, axis=-1)
    return (packed.astype(np.int16) - 128 if signed else packed).tolist()


def cohere_response(job: CohereJob, vectors: np.ndarray, prompt_tokens: int, request_id: str,
                    original_texts: list[str] | None = None) -> dict:
    """vLLM's CohereEmbedResponse (dumped without its empty fields)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    embeddings: dict[str, Any] = {}
    for kind in job.embedding_types:
        if kind == "float":
            embeddings["float"] = vectors.astype(np.float64).tolist()
        elif kind in ("binary", "ubinary"):
            embeddings[kind] = _packed(vectors, signed=kind == "binary")
        else:
            embeddings["base64"] = [base64.b64encode(row.astype("<f4").tobytes()).decode("ascii") for row in vectors]
    answer = {"id": f"embd-{request_id}", "embeddings": embeddings}
    if original_texts is not None:
        answer["texts"] = list(original_texts)
    answer["meta"] = {"api_version": {"version": "2"},
                      "billed_units": {"input_tokens": int(prompt_tokens), "image_tokens": 0}}
    answer["response_type"] = "embeddings_by_type"
    return answer


def cohere_too_many_tokens(lengths, max_tokens: int) -> EmbeddingAPIError | None:
    """``truncate=NONE`` with ``max_tokens``: vLLM refuses an input over it after encoding."""
    for n in lengths:
        if n > max_tokens:
            return bad_request(f"Input of {n} tokens exceeds max_tokens={max_tokens} with truncate=NONE. Set "
                               f"truncate to END or START to allow truncation.")
    return None


# --- /classify ----------------------------------------------------------------------------------------------------


def classify_unsupported() -> EmbeddingAPIError:
    """vLLM's answer on /classify for an embedding model: no classification handler (NotImplementedError, 501)."""
    message = "The model does not support Classification API"
    return EmbeddingAPIError(message, status=501, body=build_error(message, 501, "NotImplementedError"))


def dumps(body: dict) -> bytes:
    return json.dumps(body).encode()
