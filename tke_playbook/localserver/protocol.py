"""vLLM v0.10's embeddings API as pure functions: parse and check a request, shape responses and errors.

Request fields: ``model`` (optional; must name the served model), ``input`` (a string, a list of strings, a
list of token ids or a list of token-id lists), ``encoding_format`` (``float`` | ``base64``), ``dimensions``
(refused: the served models are not Matryoshka), ``truncate_prompt_tokens`` (-1 = max_model_len; k >= 1 keeps
the first k tokens of a text, as vLLM's right-side truncation does, and the last k of a token-id list),
``add_special_tokens``, ``user`` (ignored). Unknown fields are ignored, as vLLM does.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..errors import BadRequestError, EmbeddingAPIError

_ERROR_TYPES = {400: "BadRequestError", 401: "Unauthorized", 404: "NotFoundError", 503: "ServiceUnavailableError",
                500: "InternalServerError"}


def build_error(message: str, status: int, err_type: str | None = None) -> dict:
    """vLLM's error body: ``{"object": "error", "message", "type", "param": null, "code"}``."""
    return {"object": "error", "message": message, "type": err_type or _ERROR_TYPES.get(status, "Error"),
            "param": None, "code": int(status)}


def bad_request(message: str) -> BadRequestError:
    return BadRequestError(message, status=400, body=build_error(message, 400))


@dataclass(frozen=True)
class EmbeddingRequest:
    """A checked request: ``texts`` or ``token_ids`` (exactly one is set)."""

    model: str
    texts: tuple[str, ...] | None
    token_ids: tuple[tuple[int, ...], ...] | None
    encoding_format: str = "float"
    truncate_prompt_tokens: int | None = None
    add_special_tokens: bool = True

    @property
    def size(self) -> int:
        return len(self.texts if self.texts is not None else self.token_ids)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_input(value) -> tuple[tuple[str, ...] | None, tuple[tuple[int, ...], ...] | None]:
    if isinstance(value, str):
        return (value,), None
    if isinstance(value, list) and value:
        if all(isinstance(v, str) for v in value):
            return tuple(value), None
        if all(_is_int(v) for v in value):
            return None, (tuple(value),)
        if all(isinstance(v, list) and all(_is_int(t) for t in v) for v in value):
            return None, tuple(tuple(v) for v in value)
    if isinstance(value, list) and not value:
        raise bad_request("Input must not be empty: send a string, a list of strings or token ids.")
    raise bad_request("Field 'input' must be a string, a list of strings, a list of token ids (integers) or a "
                      "list of token-id lists.")


def parse_embedding_request(body: bytes, *, served_names: tuple[str, ...]) -> EmbeddingRequest:
    """Parse a POST /v1/embeddings body; raise an EmbeddingAPIError carrying vLLM's status and error body."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"Invalid JSON in the request body: {exc}") from None
    if not isinstance(data, dict):
        raise bad_request("The request body must be a JSON object.")
    if "input" not in data:
        raise bad_request("Field required: 'input'.")
    model = data.get("model")
    if model is None:
        model = served_names[0]
    elif model not in served_names:
        message = f"The model `{model}` does not exist."
        raise EmbeddingAPIError(message, status=404, body=build_error(message, 404))
    texts, token_ids = _parse_input(data["input"])
    encoding_format = data.get("encoding_format") or "float"
    if encoding_format not in ("float", "base64"):
        raise bad_request(f"Input should be 'float' or 'base64' (field 'encoding_format', got {encoding_format!r}).")
    if data.get("dimensions") is not None:
        raise bad_request(f'Model "{model}" does not support matryoshka representation, changing output '
                          f"dimensions will lead to poor results.")
    truncate = data.get("truncate_prompt_tokens")
    if truncate is not None and (not _is_int(truncate) or truncate < -1 or truncate == 0):
        raise bad_request("Field 'truncate_prompt_tokens' must be -1 (truncate to the model's maximum length) or "
                          "an integer of at least 1.")
    add_special = data.get("add_special_tokens", True)
    if not isinstance(add_special, bool):
        raise bad_request("Field 'add_special_tokens' must be true or false.")
    return EmbeddingRequest(model=model, texts=texts, token_ids=token_ids, encoding_format=encoding_format,
                            truncate_prompt_tokens=truncate, add_special_tokens=add_special)


def resolve_token_ids(request: EmbeddingRequest, tokenize: Callable[..., list[list[int]]], *,
                      max_model_len: int, vocab_size: int) -> list[list[int]]:
    """The token ids each input is encoded from, after vLLM's truncation and length checks."""
    truncate = request.truncate_prompt_tokens
    if truncate is not None and truncate <= -1:
        truncate = max_model_len
    if truncate is not None and truncate > max_model_len:
        raise bad_request(f"truncate_prompt_tokens value ({truncate}) is greater than max_model_len "
                          f"({max_model_len}). Please, select a smaller truncation size.")
    if request.texts is not None:
        ids = tokenize(list(request.texts), add_special_tokens=request.add_special_tokens, max_length=truncate)
    else:
        ids = [list(row[-truncate:]) if truncate is not None else list(row) for row in request.token_ids]
        for row in ids:
            if not row:
                raise bad_request("The decoder prompt cannot be empty")
            if min(row) < 0 or max(row) >= vocab_size:
                raise bad_request(f"Token id {max(row) if max(row) >= vocab_size else min(row)} is out of "
                                  f"vocabulary (size {vocab_size}).")
    for row in ids:
        if len(row) > max_model_len:
            raise bad_request(f"This model's maximum context length is {max_model_len} tokens. However, you "
                              f"requested {len(row)} tokens in the input for embedding generation. Please reduce "
                              f"the length of the input.")
        if not row:
            raise bad_request("The decoder prompt cannot be empty")
    return ids


@lru_cache(maxsize=8)
def _row_format(dim: int) -> str:
    # 9 significant digits round-trip every float32 exactly, at a third of json.dumps's cost.
    return "[" + ",".join(["%.9g"] * dim) + "]"


def render_embedding_response(embeddings: np.ndarray, *, model: str, prompt_tokens: int,
                              encoding_format: str = "float", request_id: str | None = None,
                              created: int | None = None) -> bytes:
    """The JSON body of a /v1/embeddings answer, as vLLM shapes it (``base64`` = little-endian float32)."""
    head = json.dumps({"id": request_id or f"embd-{uuid.uuid4().hex}", "object": "list",
                       "created": int(created if created is not None else time.time()), "model": model})
    matrix = np.ascontiguousarray(embeddings, dtype="<f4")
    if encoding_format == "base64":
        values = ['"' + base64.b64encode(row.tobytes()).decode("ascii") + '"' for row in matrix]
    else:
        fmt = _row_format(matrix.shape[1]) if matrix.ndim == 2 and matrix.shape[1] else "[]"
        values = [fmt % tuple(row) for row in matrix.tolist()]
    data = ",".join(f'{{"index":{i},"object":"embedding","embedding":{v}}}' for i, v in enumerate(values))
    usage = f'{{"prompt_tokens":{int(prompt_tokens)},"total_tokens":{int(prompt_tokens)},"completion_tokens":0}}'
    return f'{head[:-1]},"data":[{data}],"usage":{usage}}}'.encode()


def build_models_response(model: str, *, root: str, max_model_len: int, created: int | None = None) -> dict:
    """GET /v1/models, as vLLM answers it."""
    created = int(created if created is not None else time.time())
    return {"object": "list", "data": [{
        "id": model, "object": "model", "created": created, "owned_by": "vllm", "root": root, "parent": None,
        "max_model_len": max_model_len,
        "permission": [{"id": f"modelperm-{uuid.uuid4().hex}", "object": "model_permission", "created": created,
                        "allow_create_engine": False, "allow_sampling": True, "allow_logprobs": True,
                        "allow_search_indices": False, "allow_view": True, "allow_fine_tuning": False,
                        "organization": "*", "group": None, "is_blocking": False}]}]}
