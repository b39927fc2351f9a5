"""Pure logic of the OpenAI-compatible embeddings API and vLLM's other pooling routes, shared by the sync and async
clients.

Request bodies, response decoding, the mapping from an HTTP answer to the toolkit's errors, and the retry policy.
No I/O here. What is decoded, as vLLM (0.33/0.34, ``vllm/utils/serial_utils.py`` and ``entrypoints/pooling``)
puts it on the wire:

- ``/v1/embeddings`` with ``encoding_format`` ``float`` (JSON floats, always float32 whatever ``embed_dtype``),
  ``base64`` (each row's bytes in ``embed_dtype`` and ``endianness``, base64-encoded) or ``bytes`` /
  ``bytes_only`` (the rows back to back in an ``application/octet-stream`` body; ``bytes`` adds a ``metadata``
  header saying where each row starts and ends, in which dtype and shape). ``embed_dtype``: ``float32``,
  ``float16`` (IEEE half), ``bfloat16`` (the top 16 bits of a float32), ``fp8_e4m3`` (torch's
  ``float8_e4m3fn``: bias 7, no infinities, ``S.1111.111`` is NaN) and ``fp8_e5m2`` (the top byte of a half).
  Decoded here with numpy alone; ``native`` endianness is read as little-endian (the byte order of the x86 and
  ARM machines vLLM runs on).
- ``/rerank`` (``/v1/rerank``, ``/v2/rerank``; Jina/Cohere shape): results ``{index, document, relevance_score}``
  sorted by relevance; ``/score``: ``data[i].score`` per pair.
- Cohere's ``/v2/embed``: ``embeddings`` by type - ``float`` lists, ``base64`` little-endian float32, ``binary``
  (signed int8: the packed byte minus 128) and ``ubinary`` (uint8) with one bit per dimension (1 where the value is
  >= 0), eight per byte, most significant bit first.
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import AuthenticationError, BadRequestError, EmbeddingAPIError, InvalidSpecError, RetriesExhaustedError

ENCODING_FORMATS = ("float", "base64", "bytes", "bytes_only")
EMBED_DTYPES = ("float32", "float16", "bfloat16", "fp8_e4m3", "fp8_e5m2")  # vLLM's embed_dtype values
ENDIANNESS = ("native", "big", "little")
COHERE_TYPES = ("float", "binary", "ubinary", "base64")  # vLLM's Cohere embedding_types (no int8/uint8)
BINARY_TYPES = ("binary", "ubinary")
COHERE_TRUNCATE = ("NONE", "START", "END")
RERANK_PATHS = ("/rerank", "/v1/rerank", "/v2/rerank")
# Bytes per vector element on the wire (and in an index); Cohere's binary types hold one bit.
ELEMENT_BYTES = {"float32": 4.0, "float16": 2.0, "bfloat16": 2.0, "fp8_e4m3": 1.0, "fp8_e5m2": 1.0,
                 "binary": 0.125, "ubinary": 0.125}
AUTH_MESSAGE = "the API key is missing or wrong: pass api_key=... or read it from the Secret"


def root_url(base_url: str) -> str:
    """The server root for any of ``http://h:p``, ``http://h:p/`` or ``http://h:p/v1``."""
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise InvalidSpecError(f"base_url {base_url!r} is not an HTTP URL: pass something like "
                               f"'http://127.0.0.1:60000' (a local server, LB address or port-forward)",
                               field="base_url", value=base_url)
    url = base_url.rstrip("/")
    return url[:-3] if url.endswith("/v1") else url


def check_texts(texts: str | Iterable[str], what: str = "texts") -> list[str]:
    """The inputs as a list of strings (one string is one text); anything else is refused with a hint.
    Shared by every embedder (HTTP client, local, lexical) so they refuse bad input alike."""
    items = [texts] if isinstance(texts, str) else list(texts)
    for i, text in enumerate(items):
        if not isinstance(text, str):
            raise InvalidSpecError(f"{what}[{i}] is {type(text).__name__}, not a string: pass a list of strings",
                                   field=what, value=i)
    return items


def check_encoding(encoding_format: str) -> str:
    if encoding_format not in ENCODING_FORMATS:
        raise InvalidSpecError(f"encoding_format {encoding_format!r} is not supported: use one of "
                               f"{', '.join(ENCODING_FORMATS)}", field="encoding_format", value=encoding_format)
    return encoding_format


def _choice(value, choices: Sequence[str], what: str):
    if value is not None and value not in choices:
        raise InvalidSpecError(f"{what}={value!r} is not one vLLM takes: use one of {', '.join(choices)}",
                               field=what, value=value)
    return value


def requested_dimensions(dimensions) -> int | None:
    if dimensions is not None and (isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1):
        raise InvalidSpecError(f"dimensions={dimensions!r}: use a positive whole number (a size the model's "
                               "Matryoshka training lists), or None for the full vector", field="dimensions",
                               value=dimensions)
    return dimensions


@dataclass(frozen=True)
class EmbedOptions:
    """How vectors are asked for: ``encoding_format``, ``embed_dtype`` and ``endianness`` (None: the server's
    default, not sent), ``dimensions`` (Matryoshka; None: the full vector). ``embed_dtype`` only shapes base64 and
    bytes answers (JSON floats are float32), so asking for a narrower dtype with ``float`` is refused."""

    encoding_format: str = "float"
    dimensions: int | None = None
    embed_dtype: str | None = None
    endianness: str | None = None

    def __post_init__(self) -> None:
        check_encoding(self.encoding_format)
        requested_dimensions(self.dimensions)
        _choice(self.embed_dtype, EMBED_DTYPES, "embed_dtype")
        _choice(self.endianness, ENDIANNESS, "endianness")
        if self.encoding_format == "float" and self.embed_dtype not in (None, "float32"):
            raise InvalidSpecError(f"embed_dtype={self.embed_dtype!r} shapes base64 and bytes answers only (vLLM "
                                   "sends JSON floats as float32): use encoding_format='base64' or 'bytes'",
                                   field="embed_dtype", value=self.embed_dtype)

    @property
    def binary(self) -> bool:
        return self.encoding_format in ("bytes", "bytes_only")


def batches(items: Sequence[str], size: int) -> list[list[str]]:
    if size < 1:
        raise InvalidSpecError(f"max_batch_size {size} must be at least 1", field="max_batch_size", value=size)
    return [list(items[i:i + size]) for i in range(0, len(items), size)]


def is_retryable(status: int) -> bool:
    """429 (overloaded) and every 5xx are worth another try; other errors will not change by retrying."""
    return status == 429 or status >= 500


def build_embeddings_body(model: str | None, texts: Sequence[str], encoding_format: str = "float",
                          options: EmbedOptions | None = None) -> dict:
    options = options or EmbedOptions(encoding_format)
    body: dict[str, Any] = {"input": list(texts), "encoding_format": check_encoding(encoding_format)}
    if model:
        body["model"] = model
    for name in ("dimensions", "embed_dtype", "endianness"):
        if getattr(options, name) is not None:
            body[name] = getattr(options, name)
    return body


def _e4m3_table() -> np.ndarray:
    """The 256 values of torch's ``float8_e4m3fn``: sign, 4 exponent bits (bias 7), 3 mantissa bits; exponent 0
    is subnormal (m/8 * 2^-6); no infinities, ``S.1111.111`` is NaN."""
    codes = np.arange(256)
    sign = np.where(codes & 0x80, -1.0, 1.0)
    exponent, mantissa = (codes >> 3) & 0xF, codes & 0x7
    magnitude = np.where(exponent == 0, mantissa / 8 * 2.0 ** -6, (1 + mantissa / 8) * 2.0 ** (exponent - 7))
    values = sign * magnitude
    values[(exponent == 0xF) & (mantissa == 0x7)] = np.nan
    return values.astype(np.float32)


_E4M3 = _e4m3_table()


def decode_values(raw: bytes, embed_dtype: str = "float32", endianness: str = "native") -> np.ndarray:
    """Bytes of vLLM's ``embed_dtype`` (in ``endianness``; ``native`` read as little-endian) as float32 values."""
    _choice(embed_dtype, EMBED_DTYPES, "embed_dtype")
    order = ">" if _choice(endianness, ENDIANNESS, "endianness") == "big" else "<"
    if embed_dtype in ("float32", "float16"):
        return np.frombuffer(raw, dtype=f"{order}f{4 if embed_dtype == 'float32' else 2}").astype(np.float32)
    if embed_dtype == "bfloat16":
        bits = np.frombuffer(raw, dtype=f"{order}u2").astype(np.uint32) << 16
        return bits.astype("<u4").view("<f4").astype(np.float32)
    codes = np.frombuffer(raw, dtype=np.uint8)
    if embed_dtype == "fp8_e5m2":
        return (codes.astype("<u2") << 8).view("<f2").astype(np.float32)
    return _E4M3[codes]


def decode_embedding(value: Any, embed_dtype: str = "float32", endianness: str = "native") -> np.ndarray:
    """One embedding from a response: a list of floats, or a base64 string of ``embed_dtype`` values."""
    if isinstance(value, str):
        return decode_values(base64.b64decode(value), embed_dtype, endianness)
    return np.asarray(value, dtype=np.float32)


def parse_embeddings(payload: Any, expected: int, options: EmbedOptions | None = None) -> tuple[np.ndarray, int | None]:
    """``(vectors, prompt_tokens)`` from a response body, rows in input order (by each item's ``index``)."""
    dtype, order = (options.embed_dtype or "float32", options.endianness or "native") if options else ("float32",
                                                                                                       "native")
    try:
        data = sorted(payload["data"], key=lambda item: item.get("index", 0))
        rows = [decode_embedding(item["embedding"], dtype, order) for item in data]
        usage = payload.get("usage") or {}
        tokens = usage.get("prompt_tokens")
        matrix = np.vstack(rows).astype(np.float32, copy=False) if rows else np.empty((0, 0), dtype=np.float32)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise EmbeddingAPIError(f"the server's answer is not an embeddings response: {str(payload)[:200]} - check "
                                f"that the base URL points at an OpenAI-compatible embeddings server",
                                status=200, body=payload, cause=exc) from exc
    if len(rows) != expected:
        raise EmbeddingAPIError(f"asked for {expected} embeddings, got {len(rows)}: the server dropped inputs; "
                                f"retry with a smaller max_batch_size", status=200, body=payload)
    return matrix, tokens


def _not_an_answer(what: str, payload: Any, exc: BaseException | None = None) -> EmbeddingAPIError:
    return EmbeddingAPIError(f"the server's answer is not {what}: {str(payload)[:200]} - check that the base URL "
                             f"points at a vLLM-compatible server", status=200, body=payload, cause=exc)


def parse_bytes_embeddings(content: bytes, metadata: str | None, expected: int,
                           options: EmbedOptions) -> tuple[np.ndarray, int | None]:
    """``(vectors, prompt_tokens)`` from a ``bytes`` answer (rows placed by the ``metadata`` header, each in the
    dtype, byte order and shape it names) or a ``bytes_only`` one (no header: ``expected`` equal rows in the
    requested dtype)."""
    dtype, order = options.embed_dtype or "float32", options.endianness or "native"
    if not metadata:
        if options.encoding_format == "bytes":
            raise _not_an_answer("a bytes answer with its metadata header", content[:50])
        values = decode_values(content, dtype, order)
        if expected == 0 or len(values) % expected:
            raise _not_an_answer(f"{expected} equal rows of {dtype}", f"{len(content)} bytes")
        return values.reshape(expected, -1), None
    try:
        meta = json.loads(metadata)
        items = sorted(meta["data"], key=lambda item: item["index"])
        rows = [decode_values(content[i["start"]:i["end"]], i["embed_dtype"], i["endianness"]).reshape(i["shape"])
                for i in items]
        tokens = (meta.get("usage") or {}).get("prompt_tokens")
    except (KeyError, TypeError, ValueError, InvalidSpecError) as exc:
        raise _not_an_answer("a bytes answer vLLM's metadata describes", metadata, exc) from exc
    if any(i["embed_dtype"] != dtype for i in items):
        raise EmbeddingAPIError(f"asked for embed_dtype {dtype!r}, the server answered "
                                f"{sorted({i['embed_dtype'] for i in items})}: it does not apply embed_dtype",
                                status=200, body=meta)
    if len(rows) != expected:
        raise EmbeddingAPIError(f"asked for {expected} embeddings, got {len(rows)}: the server dropped inputs; "
                                f"retry with a smaller max_batch_size", status=200, body=meta)
    return np.vstack(rows).astype(np.float32) if rows else np.empty((0, 0), np.float32), tokens


# --- /rerank and /score -------------------------------------------------------------------------------------------


def build_rerank_body(model: str | None, query: str, documents: Sequence[str], top_n: int | None = None) -> dict:
    """vLLM's RerankRequest (Jina/Cohere shape): ``query``, ``documents``, ``top_n`` (0 or absent: all)."""
    if not isinstance(query, str):
        raise InvalidSpecError(f"query is {type(query).__name__}, not a string: pass the query text",
                               field="query", value=type(query).__name__)
    body: dict[str, Any] = {"query": query, "documents": check_texts(documents, "documents")}
    if top_n is not None:
        if isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 0:
            raise InvalidSpecError(f"top_n={top_n!r}: use a whole number >= 0 (0: every document)", field="top_n",
                                   value=top_n)
        body["top_n"] = top_n
    if model:
        body["model"] = model
    return body


def parse_rerank(payload: Any, documents: int) -> tuple[list[int], np.ndarray, int | None]:
    """``(document indexes best first, their relevance scores, prompt_tokens)`` from a RerankResponse."""
    try:
        results = sorted(payload["results"], key=lambda r: -float(r["relevance_score"]))
        order = [int(r["index"]) for r in results]
        scores = np.array([float(r["relevance_score"]) for r in results], dtype=np.float64)
        tokens = (payload.get("usage") or {}).get("prompt_tokens")
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise _not_an_answer("a rerank response", payload, exc) from exc
    if any(not 0 <= i < documents for i in order) or len(set(order)) != len(order):
        raise _not_an_answer(f"a ranking of the {documents} documents sent", payload)
    return order, scores, tokens


@dataclass(frozen=True)
class Reranked:
    """A rerank answer: ``order`` (document indexes, best first) and their relevance ``scores``."""

    query: str
    documents: tuple[str, ...]
    order: Sequence[int]
    scores: Sequence[float]
    prompt_tokens: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "order", tuple(int(i) for i in self.order))
        object.__setattr__(self, "scores", tuple(float(s) for s in self.scores))

    def by_index(self) -> np.ndarray:
        """Each sent document's relevance score in the order sent (NaN where ``top_n`` left it out)."""
        out = np.full(len(self.documents), np.nan)
        out[list(self.order)] = self.scores
        return out

    def to_frame(self):
        """The ranking as a table: rank, the document's index as sent, its relevance score and text."""
        import pandas as pd  # late: the clients themselves need no pandas

        return pd.DataFrame({"rank": range(1, len(self.order) + 1), "index": self.order,
                             "relevance_score": [round(s, 4) for s in self.scores],
                             "document": [self.documents[i] for i in self.order]}).set_index("rank")

    def _repr_html_(self) -> str:
        return self.to_frame()._repr_html_()


def build_score_body(model: str | None, queries: str | Sequence[str], documents: str | Sequence[str]) -> dict:
    """vLLM's ScoreRequest in its ``queries`` + ``documents`` form (1:N or N:N)."""
    first = queries if isinstance(queries, str) else check_texts(queries, "queries")
    body: dict[str, Any] = {"queries": first, "documents": check_texts(documents, "documents")}
    if not isinstance(first, str) and len(first) not in (1, len(body["documents"])):
        raise InvalidSpecError(f"{len(first)} queries for {len(body['documents'])} documents: send one query, or "
                               "one per document", field="queries", value=len(first))
    if model:
        body["model"] = model
    return body


def parse_scores(payload: Any, expected: int) -> tuple[np.ndarray, int | None]:
    """``(scores in pair order, prompt_tokens)`` from a ScoreResponse."""
    try:
        data = sorted(payload["data"], key=lambda item: item.get("index", 0))
        scores = np.array([float(item["score"]) for item in data], dtype=np.float64)
        tokens = (payload.get("usage") or {}).get("prompt_tokens")
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise _not_an_answer("a score response", payload, exc) from exc
    if len(scores) != expected:
        raise _not_an_answer(f"{expected} scores", payload)
    return scores, tokens


# --- Cohere /v2/embed ---------------------------------------------------------------------------------------------


def build_cohere_body(model: str | None, texts: Sequence[str], embedding_types: Sequence[str] = ("float",), *,
                      input_type: str | None = None, output_dimension: int | None = None,
                      truncate: str | None = None) -> dict:
    """vLLM's CohereEmbedRequest: ``texts`` with ``embedding_types`` and, when given, ``input_type`` (the model's
    task instruction; a model without any refuses it), ``output_dimension`` (Matryoshka) and ``truncate``."""
    kinds = list(embedding_types)
    if not kinds:
        raise InvalidSpecError("embedding_types is empty: ask for at least one of " + ", ".join(COHERE_TYPES),
                               field="embedding_types", value=kinds)
    for kind in kinds:
        _choice(kind, COHERE_TYPES, "embedding_types")
    body: dict[str, Any] = {"texts": check_texts(texts), "embedding_types": kinds}
    if input_type is not None:
        body["input_type"] = str(input_type)
    if requested_dimensions(output_dimension) is not None:
        body["output_dimension"] = output_dimension
    if _choice(truncate, COHERE_TRUNCATE, "truncate") is not None:
        body["truncate"] = truncate
    if model:
        body["model"] = model
    return body


def parse_cohere_response(payload: Any, expected: int, embedding_types: Sequence[str]) -> tuple[dict[str, np.ndarray],
                                                                                       int | None]:
    """``({type: rows}, input_tokens)`` from a CohereEmbedResponse: ``float`` and ``base64`` as float32 vectors,
    ``binary`` as int8 and ``ubinary`` as uint8 packed bits (one row of dimension/8 bytes per text)."""
    out: dict[str, np.ndarray] = {}
    try:
        embeddings = payload["embeddings"]
        for kind in embedding_types:
            rows = embeddings[kind]
            if kind == "base64":
                out[kind] = np.stack([decode_values(base64.b64decode(r), "float32", "little") for r in rows]) \
                    if rows else np.empty((0, 0), np.float32)
            elif kind == "float":
                out[kind] = np.asarray(rows, dtype=np.float32).reshape(len(rows), -1)
            else:
                out[kind] = _packed_bits(rows, kind, payload)
        tokens = ((payload.get("meta") or {}).get("billed_units") or {}).get("input_tokens")
    except (AttributeError, KeyError, TypeError, ValueError, OverflowError) as exc:
        raise _not_an_answer("a Cohere embed response with " + ", ".join(embedding_types), payload, exc) from exc
    if any(len(rows) != expected for rows in out.values()):
        raise _not_an_answer(f"{expected} embeddings of each type", payload)
    return out, tokens


BINARY_RANGES = {"binary": (-128, 127, np.int8), "ubinary": (0, 255, np.uint8)}
BINARY_OFFSET_HINT = ("Cohere's binary is the packed byte minus 128 (int8, -128..127) and ubinary the byte itself "
                      "(uint8, 0..255)")


def _packed_bits(rows, kind: str, payload: Any) -> np.ndarray:
    low, high, dtype = BINARY_RANGES[kind]
    values = np.asarray(rows, dtype=np.int64).reshape(len(rows), -1)
    if values.size and (values.min() < low or values.max() > high):
        raise EmbeddingAPIError(f"the server's {kind} values run {values.min()}..{values.max()}, outside "
                                f"{low}..{high}: {BINARY_OFFSET_HINT}", status=200, body=payload)
    return values.astype(dtype)


def unpack_bits(packed: np.ndarray, kind: str) -> np.ndarray:
    """Cohere's packed bits (``binary`` int8 or ``ubinary`` uint8) as float32 vectors of +1 (bit set) and -1.
    Their cosine is ``1 - 2 * hamming / dimensions``: ranking by it is ranking by Hamming distance."""
    array = np.asarray(packed)
    unsigned = (array.astype(np.int16) + 128).astype(np.uint8) if kind == "binary" else array.astype(np.uint8)
    return np.unpackbits(unsigned, axis=-1).astype(np.float32) * 2.0 - 1.0


def error_message(body: Any) -> str:
    """vLLM's (or OpenAI's) error message from an error body, else the body itself, shortened."""
    if isinstance(body, dict):
        inner = body.get("error") if isinstance(body.get("error"), dict) else body
        for key in ("message", "detail"):
            if inner.get(key):
                return str(inner[key])
    return str(body)[:500] if body not in (None, "") else "no details in the answer"


def decode_body(raw: bytes | str) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, TypeError):
        return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw


def error_for(status: int, body: Any, url: str) -> EmbeddingAPIError:
    """The error to raise for a non-retryable error answer."""
    message = error_message(body)
    if status == 400:
        return BadRequestError(f"the server refused the request (400): {message}", status=status, body=body,
                               obj=url)
    if status == 401:
        return AuthenticationError(f"{AUTH_MESSAGE} (401 from {url})", status=status, body=body, obj=url)
    if status == 404 and body == {"detail": "Not Found"}:  # FastAPI's answer for a route it does not have
        return EmbeddingAPIError(f"not found (404) at {url}: the server has no such route - it predates this API "
                                 f"(vLLM added /rerank, /score and /v2/embed over its releases) or is not vLLM",
                                 status=status, body=body, obj=url)
    if status == 404:
        return EmbeddingAPIError(f"not found (404) at {url}: {message} - check the base URL and the served model "
                                 f"name (client.models() lists it)", status=status, body=body, obj=url)
    return EmbeddingAPIError(f"the server answered {status} at {url}: {message}", status=status, body=body, obj=url)


def retry_delay(attempt: int, backoff: float, max_backoff: float, retry_after: str | None = None,
                rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number ``attempt`` (0-based): exponential with jitter, or Retry-After."""
    if retry_after:
        try:
            return min(max(float(retry_after), 0.0), max_backoff)
        except ValueError:
            pass
    ceiling = min(backoff * (2 ** attempt), max_backoff)
    return ceiling * (0.5 + 0.5 * (rng or random).random())


def exhausted_error(url: str, attempts: int, status: int | None, body: Any,
                    cause: BaseException | None) -> EmbeddingAPIError:
    """The error raised when every attempt met a retryable failure; it names the last one."""
    last = f"HTTP {status}: {error_message(body)}" if status is not None else (
        f"{type(cause).__name__}: {cause}" if cause is not None else "unknown failure")
    if status == 429:
        hint = "the server is overloaded: lower the concurrency or add replicas"
    elif status is not None:
        hint = "the server is failing or restarting: check its logs and /health"
    elif cause is not None and "Connect" in type(cause).__name__:
        hint = "nothing answered at that address: start the server or the port-forward, or check the URL"
    else:
        hint = "the server did not answer in time or dropped the connection: raise timeout= or check its load"
    return RetriesExhaustedError(f"gave up on {url} after {attempts} attempts; last: {last} ({hint})",
                                 status=status, body=body, obj=url, cause=cause)
