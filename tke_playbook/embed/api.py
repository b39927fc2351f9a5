"""Pure logic of the OpenAI-compatible embeddings API, shared by the sync and async clients.

Request bodies, response decoding (float lists and base64 little-endian float32), the mapping from an HTTP
answer to the toolkit's errors, and the retry policy. No I/O here.
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ..errors import AuthenticationError, BadRequestError, EmbeddingAPIError, InvalidSpecError, RetriesExhaustedError

ENCODING_FORMATS = ("float", "base64")
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
        raise InvalidSpecError(f"encoding_format {encoding_format!r} is not supported: use 'float' or 'base64'",
                               field="encoding_format", value=encoding_format)
    return encoding_format


def batches(items: Sequence[str], size: int) -> list[list[str]]:
    if size < 1:
        raise InvalidSpecError(f"max_batch_size {size} must be at least 1", field="max_batch_size", value=size)
    return [list(items[i:i + size]) for i in range(0, len(items), size)]


def is_retryable(status: int) -> bool:
    """429 (overloaded) and every 5xx are worth another try; other errors will not change by retrying."""
    return status == 429 or status >= 500


def build_embeddings_body(model: str | None, texts: Sequence[str], encoding_format: str = "float") -> dict:
    body: dict[str, Any] = {"input": list(texts), "encoding_format": check_encoding(encoding_format)}
    if model:
        body["model"] = model
    return body


def decode_embedding(value: Any) -> np.ndarray:
    """One embedding from a response: a list of floats or a base64 string of little-endian float32."""
    if isinstance(value, str):
        return np.frombuffer(base64.b64decode(value), dtype="<f4").astype(np.float32)
    return np.asarray(value, dtype=np.float32)


def parse_embeddings(payload: Any, expected: int) -> tuple[np.ndarray, int | None]:
    """``(vectors, prompt_tokens)`` from a response body, rows in input order (by each item's ``index``)."""
    try:
        data = sorted(payload["data"], key=lambda item: item.get("index", 0))
        rows = [decode_embedding(item["embedding"]) for item in data]
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
