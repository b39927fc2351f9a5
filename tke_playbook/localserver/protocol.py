"""vLLM's embeddings API (the version in :mod:`.surface`) as pure functions: parse and check a request, shape
responses and errors.

Requests are validated by pydantic models with vLLM's field types, in pydantic's lax mode as vLLM's are
(``"truncate_prompt_tokens": "3"`` is 3; ``"encoding_format": null`` is refused). Two request forms:
``input`` (a string, a list of strings, token ids or token-id lists — EmbeddingCompletionRequest) and
``messages`` (one conversation or a list of them, rendered with the model's chat template —
EmbeddingChatRequest). Unknown fields are ignored, as vLLM does. Errors are :class:`EmbeddingAPIError`\\ s that
carry vLLM's status and body ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import BadRequestError, EmbeddingAPIError
from . import surface
from .serial import row_bytes
from .surface import EmbedDType, EncodingFormat, Endianness, TruncationSide


def build_error(message: str, status: int, err_type: str | None = None, param: str | None = None) -> dict:
    """vLLM's error body: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": err_type or surface.ERROR_TYPES.get(status, "Error"),
                      "param": param, "code": int(status)}}


_WHOLE_BODY = object()


def bad_request(message: str, *, validation: bool = False, param: str | None | object = _WHOLE_BODY
                ) -> BadRequestError:
    """A 400: ``validation`` errors (what FastAPI's request validation refuses) have type ``Bad Request`` and, as
    vLLM's handler gives them, a ``param`` (default ``"body"``: a check of the whole request); ``param`` names the
    field where vLLM's VLLMValidationError does."""
    if param is _WHOLE_BODY:
        param = "body" if validation else None
    err_type = surface.VALIDATION_ERROR_TYPE if validation else surface.BAD_REQUEST_TYPE
    return BadRequestError(message, status=400, body=build_error(message, 400, err_type, param))


def not_found(message: str) -> EmbeddingAPIError:
    return EmbeddingAPIError(message, status=404, body=build_error(message, 404, surface.NOT_FOUND_TYPE))


# --- request models (vLLM's field types; pydantic's lax mode, unknown fields allowed) -----------------------


class _Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[dict[str, Any]] | None = None


class _Common(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str | None = None
    user: str | None = None
    truncate_prompt_tokens: Annotated[int, Field(ge=-1)] | None = None
    truncation_side: Literal["left", "right"] | None = None
    padding: Literal["max_length", "do_not_pad"] | None = None
    request_id: str | None = None
    priority: Annotated[int, Field(ge=-(2 ** 63), le=2 ** 63 - 1)] = 0
    cache_salt: Annotated[str, Field(min_length=1, max_length=1024)] | None = None
    mm_processor_kwargs: dict[str, Any] | None = None
    encoding_format: Literal["float", "base64", "bytes", "bytes_only"] = "float"
    embed_dtype: Literal["float32", "float16", "bfloat16", "fp8_e4m3", "fp8_e5m2"] = "float32"
    endianness: Literal["native", "big", "little"] = "native"
    dimensions: int | None = None
    use_activation: bool | None = None
    normalize: bool | None = None  # 0.10.1's name for use_activation (see surface)


class _CompletionRequest(_Common):
    input: list[int] | list[list[int]] | str | list[str]
    add_special_tokens: bool = True


class _ChatRequest(_Common):
    messages: list[_Message] | list[Annotated[list[_Message], Field(min_length=1)]]
    add_generation_prompt: bool = False
    continue_final_message: bool = False
    add_special_tokens: bool = False
    chat_template: str | None = None
    chat_template_kwargs: dict[str, Any] | None = None


@dataclass(frozen=True)
class ChatOptions:
    """How conversations become prompts (vLLM's chat-template fields)."""

    add_generation_prompt: bool = False
    continue_final_message: bool = False
    chat_template_kwargs: tuple[tuple[str, Any], ...] = ()
    chat_template: str | None = None  # a request-supplied template (only when the server trusts them)


@dataclass(frozen=True)
class EmbeddingRequest:
    """A checked request: exactly one of ``texts``, ``token_ids`` or ``conversations`` is set."""

    model: str
    texts: tuple[str, ...] | None
    token_ids: tuple[tuple[int, ...], ...] | None
    encoding_format: EncodingFormat = EncodingFormat.FLOAT
    truncate_prompt_tokens: int | None = None
    add_special_tokens: bool = True
    conversations: tuple[tuple[dict, ...], ...] | None = None
    chat: ChatOptions | None = None
    truncation_side: TruncationSide | None = None
    use_activation: bool | None = None
    dimensions: int | None = None
    embed_dtype: EmbedDType = EmbedDType.FLOAT32
    endianness: Endianness = Endianness.NATIVE
    request_id: str | None = None

    @property
    def size(self) -> int:
        for items in (self.texts, self.token_ids, self.conversations):
            if items is not None:
                return len(items)
        return 0


# --- parsing ------------------------------------------------------------------------------------------------


def decode_json(body: bytes) -> dict:
    """The request body as a JSON object; anything else (bad JSON, too deep, not an object) is a 400."""
    try:
        data = json.loads(body)
    except RecursionError:
        raise bad_request("JSON decode error: the request body is nested too deeply.", validation=True) from None
    except (ValueError, UnicodeDecodeError) as exc:
        where = getattr(exc, "pos", None)  # FastAPI's location of a JSON error: ("body", position)
        raise bad_request(f"JSON decode error: {exc}", validation=True,
                          param="body" if where is None else f"body.{where}") from None
    if not isinstance(data, dict):
        raise bad_request("Input should be a valid dictionary or object to extract fields from (the request body "
                          "must be a JSON object).", validation=True)
    return data


def validation_error(exc: ValidationError) -> BadRequestError:
    """A pydantic ValidationError as vLLM's handler answers it: ``Bad Request``, ``param`` at the first error."""
    errors = exc.errors(include_url=False)
    return bad_request(validation_message(exc), validation=True,
                       param=surface.validation_param(errors[0]["loc"]) if errors else "body")


def validation_message(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False)[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "body"
        parts.append(f"{where}: {error['msg']}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def _check_count(data: dict, max_inputs: int) -> None:
    """Refuse too many inputs before validating each one (that work grows with the count)."""
    for key in ("input", "messages"):
        value = data.get(key)
        one_input = isinstance(value, list) and value and isinstance(value[0], (int, dict))  # token ids, one chat
        if isinstance(value, list) and len(value) > max_inputs and not one_input:
            raise bad_request(f"This server takes at most {max_inputs} inputs per request; the request has "
                              f"{len(value)}. Split it into several requests.")


def _is_conversation(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(item, dict) and isinstance(item.get("role"), str) for item in value)


def _validate(data: dict) -> _Common:
    if "messages" not in data and (_is_conversation(data.get("input")) or (
            isinstance(data.get("input"), list) and data["input"] and all(map(_is_conversation, data["input"])))):
        data = {**data, "messages": data["input"]}  # chat messages sent in "input", as vLLM accepts
        data.pop("input")
    model = _ChatRequest if "messages" in data else _CompletionRequest
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None


def _check_text(text: str, where: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise bad_request(f"{where} is not valid Unicode ({exc.reason} at position {exc.start}): send UTF-8 text "
                          f"without lone surrogates.") from None
    return text


def _conversations(messages: list) -> tuple[tuple[dict, ...], ...]:
    batches = messages if messages and isinstance(messages[0], list) else [messages]
    out = []
    for b, conversation in enumerate(batches):
        if not conversation:
            raise bad_request("messages must not be empty.", validation=True)
        turns = []
        for m, message in enumerate(conversation):
            content = message.content
            if isinstance(content, list):
                if any(part.get("type") != "text" or not isinstance(part.get("text"), str) for part in content):
                    raise bad_request("Only text content parts ({\"type\": \"text\", \"text\": ...}) are supported "
                                      "by this model.")
                content = "".join(part["text"] for part in content)
            turn = {"role": _check_text(message.role, f"messages[{b}][{m}].role")}
            turn["content"] = _check_text(content or "", f"messages[{b}][{m}].content")
            turns.append(turn)
        out.append(tuple(turns))
    return tuple(out)


def _use_activation(parsed: _Common) -> bool | None:
    if parsed.normalize is not None and parsed.use_activation is not None and \
            parsed.normalize != parsed.use_activation:
        raise bad_request("`normalize` and `use_activation` disagree: send only `use_activation` (normalize is its "
                          "old name).")
    return parsed.use_activation if parsed.use_activation is not None else parsed.normalize


def _chat_options(parsed: _ChatRequest, trust_request_chat_template: bool) -> ChatOptions:
    """vLLM's rule: a template in the request (``chat_template`` or ``chat_template_kwargs.chat_template``) is
    refused unless the server runs with ``--trust-request-chat-template``; the top-level one wins."""
    kwargs = parsed.chat_template_kwargs or {}
    requested = parsed.chat_template if parsed.chat_template is not None else kwargs.get("chat_template")
    if requested is not None and not trust_request_chat_template:
        raise bad_request(surface.UNTRUSTED_CHAT_TEMPLATE)
    if requested is not None and not isinstance(requested, str):
        raise bad_request("chat_template_kwargs.chat_template must be a string (a Jinja template).")
    if parsed.add_generation_prompt and parsed.continue_final_message:
        raise bad_request("Cannot set both `continue_final_message` and `add_generation_prompt` to True.",
                          validation=True)
    return ChatOptions(parsed.add_generation_prompt, parsed.continue_final_message,
                       tuple(sorted(kwargs.items())), requested)


def _inputs(parsed: _Common, trust_request_chat_template: bool = False) -> dict:
    if isinstance(parsed, _ChatRequest):
        return {"texts": None, "token_ids": None, "conversations": _conversations(parsed.messages),
                "chat": _chat_options(parsed, trust_request_chat_template)}
    value = parsed.input
    if isinstance(value, str):
        return {"texts": (_check_text(value, "input"),), "token_ids": None}
    if not value:
        raise bad_request("Input must not be empty: send a string, a list of strings or token ids.")
    if isinstance(value[0], str):
        return {"texts": tuple(_check_text(t, f"input[{i}]") for i, t in enumerate(value)), "token_ids": None}
    if isinstance(value[0], int):
        return {"texts": None, "token_ids": (tuple(value),)}
    return {"texts": None, "token_ids": tuple(tuple(row) for row in value)}


def parse_embedding_request(body: bytes | dict, *, served_names: tuple[str, ...],
                            max_inputs: int = surface.MAX_INPUTS_PER_REQUEST,
                            request_id: str | None = None,
                            trust_request_chat_template: bool = False) -> EmbeddingRequest:
    """Parse a POST /v1/embeddings body; raise an EmbeddingAPIError carrying vLLM's status and error body.

    ``request_id`` (the ``X-Request-Id`` header) wins over the body's ``request_id``, as in vLLM. A chat request
    carrying its own template is refused unless ``trust_request_chat_template`` (vLLM's flag of that name).
    """
    data = decode_json(body) if isinstance(body, (bytes, bytearray, memoryview)) else body
    _check_count(data, max_inputs)
    parsed = _validate(data)
    model = parsed.model or served_names[0]
    if model not in served_names:
        raise not_found(f"The model `{model}` does not exist.")
    inputs = _inputs(parsed, trust_request_chat_template)
    request = EmbeddingRequest(
        model=model, encoding_format=EncodingFormat(parsed.encoding_format),
        truncate_prompt_tokens=parsed.truncate_prompt_tokens, add_special_tokens=parsed.add_special_tokens,
        truncation_side=TruncationSide(parsed.truncation_side) if parsed.truncation_side else None,
        use_activation=_use_activation(parsed), dimensions=parsed.dimensions,
        embed_dtype=EmbedDType(parsed.embed_dtype), endianness=Endianness(parsed.endianness),
        request_id=request_id or parsed.request_id, **inputs)
    if request.size > max_inputs:
        raise bad_request(f"This server takes at most {max_inputs} inputs per request; the request has "
                          f"{request.size}. Split it into several requests.")
    if request.truncate_prompt_tokens == 0:
        raise bad_request("truncate_prompt_tokens must be -1 (truncate to the model's maximum length) or at least "
                          "1.")
    return request


# --- checks that need the model ------------------------------------------------------------------------------


def check_dimensions(request: EmbeddingRequest, *, is_matryoshka: bool,
                     matryoshka_dimensions: Sequence[int] | None = None, embedding_size: int | None = None) -> None:
    """vLLM 0.33/0.34's rules for ``dimensions`` (``PoolingParams._set_default_parameters``, VLLMValidationError:
    400 BadRequestError): only Matryoshka models take it, within ``[1, embedding_size]``, and only their listed
    sizes if listed."""
    dimensions = request.dimensions
    if dimensions is None:
        return
    if not is_matryoshka:
        raise bad_request(f"Model {request.model!r} does not support Matryoshka embeddings; dimensions must be unset "
                          f"(received dimensions={dimensions}).")
    if not 1 <= dimensions <= (embedding_size or dimensions):
        raise bad_request(f"Model {request.model!r} only supports dimensions in range [1, {embedding_size}], got "
                          f"{dimensions}.")
    if matryoshka_dimensions and dimensions not in matryoshka_dimensions:
        raise bad_request(f"Model {request.model!r} only supports Matryoshka dimensions "
                          f"{list(matryoshka_dimensions)}, got {dimensions}.")


def _truncate(ids: list[list[int]], truncate: int | None, side: TruncationSide) -> list[list[int]]:
    if truncate is None:
        return ids
    return [row[-truncate:] if side is TruncationSide.LEFT else row[:truncate] for row in ids]


def _too_long(max_model_len: int, length: int, at_least: bool = False) -> BadRequestError:
    """vLLM 0.33/0.34's refusal (TokenizeParams._token_len_check). vLLM tokenises text that is not to be truncated
    only to max+1 tokens, so for text it says "at least max+1"; token ids are counted in full."""
    count = f"at least {max_model_len + 1}" if at_least else str(length)
    return bad_request(f"This model's maximum context length is {max_model_len} tokens. However, your prompt "
                       f"contains {count} input tokens, which exceeds this limit even without any output tokens. "
                       f"Please reduce the length of the input prompt.", param="input_tokens")


def resolve_token_ids(request: EmbeddingRequest, tokenize: Callable[..., list[list[int]]], *,
                      max_model_len: int, vocab_size: int, max_tokens: int | None = None,
                      prompts: Sequence[str] | None = None, prompts_tokenized: bool = False,
                      max_input_len: int | None = None) -> list[list[int]]:
    """The token ids each input is encoded from, after vLLM's truncation and length checks.

    Texts keep their start when cut (``truncation_side`` ``right``, the tokenizer's default) and token-id lists
    their end (``left``), as vLLM does; ``truncation_side`` chooses explicitly. ``max_tokens`` caps the request.
    A chat request's ``prompts`` are what its template rendered (:mod:`.chat`); ``prompts_tokenized`` means vLLM
    tokenised them in the template call, so no special tokens are added whatever ``add_special_tokens`` says.
    ``max_input_len`` is the longest input taken (default ``max_model_len``; longer with vLLM's chunked processing,
    where ``0`` means no limit).
    """
    truncate = _truncation(request, max_model_len)
    texts, special = _texts(request, prompts, prompts_tokenized)
    if texts is not None:
        if request.truncation_side is TruncationSide.LEFT and truncate is not None:
            ids = tokenize(list(texts), add_special_tokens=special, max_length=truncate, truncation_side="left")
        else:
            ids = tokenize(list(texts), add_special_tokens=special, max_length=truncate)
    else:
        ids = _truncate([list(row) for row in request.token_ids], truncate,
                        request.truncation_side or TruncationSide.LEFT)
        _check_vocabulary(ids, vocab_size)
    _check_lengths(ids, max_model_len if max_input_len is None else max_input_len, max_tokens,
                   at_least=texts is not None and truncate is None)
    return ids


def _truncation(request: EmbeddingRequest, max_model_len: int) -> int | None:
    """``truncate_prompt_tokens`` as vLLM takes it: -1 (or less) means max_model_len; more than that is refused."""
    truncate = request.truncate_prompt_tokens
    if truncate is not None and truncate <= -1:
        truncate = max_model_len
    if truncate is not None and truncate > max_model_len:
        raise bad_request(f"truncate_prompt_tokens value ({truncate}) is greater than max_model_len "
                          f"({max_model_len}). Please, select a smaller truncation size.")
    return truncate


def _texts(request: EmbeddingRequest, prompts: Sequence[str] | None,
           prompts_tokenized: bool) -> tuple[Sequence[str] | None, bool]:
    """The texts to tokenise (None for token-id input) and whether special tokens are added: a chat request's
    are its rendered ``prompts``, without special tokens when the template call already tokenised them."""
    if request.conversations is None:
        return request.texts, request.add_special_tokens
    if prompts is None or len(prompts) != len(request.conversations):
        raise bad_request("This model has no chat template: send `input` instead of `messages`.")
    return tuple(prompts), request.add_special_tokens and not prompts_tokenized


def _check_vocabulary(ids: list[list[int]], vocab_size: int) -> None:
    for row in ids:
        if row and (min(row) < 0 or max(row) >= vocab_size):
            raise bad_request(f"Token id {max(row) if max(row) >= vocab_size else min(row)} is out of "
                              f"vocabulary (size {vocab_size}).")


def _check_lengths(ids: list[list[int]], limit: int, max_tokens: int | None, *, at_least: bool) -> None:
    """vLLM's length checks: no input longer than ``limit`` (0: no limit), none empty; this server's cap of
    ``max_tokens`` per request."""
    total = 0
    for row in ids:
        if limit and len(row) > limit:
            raise _too_long(limit, len(row), at_least=at_least)
        if not row:
            raise bad_request("The decoder prompt cannot be empty")
        total += len(row)
    if max_tokens is not None and total > max_tokens:
        raise bad_request(f"This server takes at most {max_tokens} tokens per request; the request has {total}. "
                          f"Split it into several requests.")


# --- responses -----------------------------------------------------------------------------------------------


def finish_embeddings(raw: np.ndarray, *, dimensions: int | None = None, normalize: bool = True) -> np.ndarray:
    """Pooled vectors as the API returns them: the first ``dimensions`` (Matryoshka), then L2-normalised.

    The division matches ``torch.nn.functional.normalize`` (norms below 1e-12 are taken as 1e-12).
    """
    out = np.asarray(raw, dtype=np.float32)
    if dimensions is not None:
        out = out[:, :dimensions]
    if normalize and out.size:
        norms = np.maximum(np.linalg.norm(out, axis=1, keepdims=True), np.float32(1e-12))
        out = out / norms
    return np.ascontiguousarray(out, dtype=np.float32)


@lru_cache(maxsize=8)
def _row_format(dim: int) -> str:
    # 9 significant digits round-trip every float32 exactly, at a third of json.dumps's cost.
    return "[" + ",".join(["%.9g"] * dim) + "]"


def response_id(request_id: str | None = None, prefix: str = "embd") -> str:
    """``embd-<request_id>`` (vLLM's prefix; ``pool-`` for /pooling), or ``embd-<random>`` without one."""
    return f"{prefix}-{request_id or uuid.uuid4().hex}"


def chunk_rows(ids: list[list[int]], size: int) -> tuple[list[list[int]], list[int] | None]:
    """Rows longer than ``size`` cut into consecutive chunks of ``size`` tokens (vLLM's ``chunk_list`` over the
    prompt's ids, special tokens included); the owner index of each chunk, or None when nothing was cut."""
    if all(len(row) <= size for row in ids):
        return ids, None
    rows, owners = [], []
    for index, row in enumerate(ids):
        for start in range(0, len(row), size):
            rows.append(row[start:start + size])
            owners.append(index)
    return rows, owners


def combine_chunks(raw: np.ndarray, owners: list[int], lengths: list[int], count: int, *,
                   normalize: bool) -> np.ndarray:
    """vLLM's chunked-processing aggregation: each input's chunk vectors (normalised first when the activation is
    on, as its pooler returns them) averaged, weighted by the chunk's token count."""
    chunks = finish_embeddings(raw, normalize=normalize).astype(np.float64)
    sums = np.zeros((count, chunks.shape[1]), dtype=np.float64)
    weights = np.zeros(count, dtype=np.float64)
    np.add.at(sums, owners, chunks * np.asarray(lengths, dtype=np.float64)[:, None])
    np.add.at(weights, owners, lengths)
    return (sums / weights[:, None]).astype(np.float32)


def usage(prompt_tokens: int, version: str = surface.VLLM_VERSION) -> dict:
    """vLLM's UsageInfo as the given release dumps it (0.34.0 leaves out an empty ``prompt_tokens_details``)."""
    body = {"prompt_tokens": int(prompt_tokens), "total_tokens": int(prompt_tokens), "completion_tokens": 0,
            "prompt_tokens_details": None, "completion_tokens_details": None}
    if not surface.usage_has_prompt_tokens_details(version):
        del body["prompt_tokens_details"]
    return body


def render_embedding_response(embeddings: np.ndarray, *, model: str, prompt_tokens: int,
                              encoding_format: str = "float", request_id: str | None = None,
                              created: int | None = None, embed_dtype: str = "float32",
                              endianness: str = "native", version: str = surface.VLLM_VERSION,
                              item: tuple[str, str] = ("embedding", "embedding")) -> bytes:
    """The JSON body of a /v1/embeddings answer, as vLLM shapes it (``request_id`` is the whole id); ``item`` is
    each row's ``object`` and key (``("pooling", "data")`` for /pooling)."""
    head = json.dumps({"id": request_id or response_id(), "object": "list",
                       "created": int(created if created is not None else time.time()), "model": model})
    matrix = np.ascontiguousarray(embeddings, dtype=np.float32)
    if EncodingFormat(encoding_format) is EncodingFormat.BASE64:
        values = ['"' + base64.b64encode(row).decode("ascii") + '"'
                  for row in row_bytes(matrix, embed_dtype, endianness)]
    else:
        fmt = _row_format(matrix.shape[1]) if matrix.ndim == 2 and matrix.shape[1] else "[]"
        values = [fmt % tuple(row) for row in matrix.tolist()]
    kind, key = item
    data = ",".join(f'{{"index":{i},"object":"{kind}","{key}":{v}}}' for i, v in enumerate(values))
    return f'{head[:-1]},"data":[{data}],"usage":{json.dumps(usage(prompt_tokens, version))}}}'.encode()


def render_bytes_response(embeddings: np.ndarray, *, model: str, prompt_tokens: int, encoding_format: str = "bytes",
                          request_id: str | None = None, created: int | None = None, embed_dtype: str = "float32",
                          endianness: str = "native") -> tuple[bytes, dict[str, str]]:
    """``encoding_format`` ``bytes``: the rows back to back, and a ``metadata`` header (JSON) saying where each
    row starts and ends; ``bytes_only`` leaves the header out. As vLLM's binary embeddings answer."""
    matrix = np.ascontiguousarray(embeddings, dtype=np.float32)
    rows = row_bytes(matrix, embed_dtype, endianness)
    if EncodingFormat(encoding_format) is EncodingFormat.BYTES_ONLY:
        return b"".join(rows), {}
    items, offset = [], 0
    for i, row in enumerate(rows):
        items.append({"index": i, "embed_dtype": str(EmbedDType(embed_dtype).value),
                      "endianness": str(Endianness(endianness).value), "start": offset, "end": offset + len(row),
                      "shape": list(matrix.shape[1:])})
        offset += len(row)
    metadata = {"id": request_id or response_id(), "created": int(created if created is not None else time.time()),
                "model": model, "data": items,
                "usage": {"prompt_tokens": int(prompt_tokens), "total_tokens": int(prompt_tokens)}}
    return b"".join(rows), {"metadata": json.dumps(metadata)}


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
