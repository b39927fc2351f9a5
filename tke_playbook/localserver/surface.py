"""Which vLLM API the local server speaks: version, fields, limits, error types and the API-key rule, in one place.

The server follows vLLM **0.33.0** (``vllm/entrypoints/pooling/embed/protocol.py`` and the OpenAI server's auth
middleware and error handlers), or **0.34.0** with ``serve --vllm-version 0.34.0`` (the differences are listed
below, behaviour by behaviour; the pooling routes of :mod:`.pooling` are the same in both), and keeps what
**0.10.1** clients send working. One deliberate difference:
0.33.0 refuses ``normalize`` ("Parameter `normalize` was removed; use `use_activation` instead"); the local
server still takes it as the 0.10.1 spelling of ``use_activation``, so clients written against the tutorial's
0.10.1 image keep working. Tests read their expectations from here and from recorded vLLM bodies.
"""

from __future__ import annotations

from enum import Enum

VLLM_VERSION = "0.33.0"  # the default release: what GET /version answers and what the surface follows
VLLM_VERSIONS = ("0.33.0", "0.34.0")  # releases the server can follow (`serve --vllm-version`)
COMPAT_VERSION = "0.10.1"  # the oldest vLLM whose clients must keep working (the tutorial's image)


class EncodingFormat(str, Enum):
    """``encoding_format``: JSON floats, base64 in a JSON body, or raw bytes (with or without a metadata header)."""

    FLOAT = "float"
    BASE64 = "base64"
    BYTES = "bytes"
    BYTES_ONLY = "bytes_only"


class EmbedDType(str, Enum):
    """``embed_dtype``: the element type of base64 and bytes answers (floats are always float32 in JSON)."""

    FLOAT32 = "float32"
    FLOAT16 = "float16"
    BFLOAT16 = "bfloat16"
    FP8_E4M3 = "fp8_e4m3"
    FP8_E5M2 = "fp8_e5m2"


class Endianness(str, Enum):
    """``endianness`` of base64 and bytes answers (``native`` is the server's, little-endian on x86 and ARM)."""

    NATIVE = "native"
    BIG = "big"
    LITTLE = "little"


class TruncationSide(str, Enum):
    """``truncation_side`` with ``truncate_prompt_tokens``: ``right`` keeps the first tokens, ``left`` the last."""

    LEFT = "left"
    RIGHT = "right"


# Request fields of EmbeddingCompletionRequest / EmbeddingChatRequest the server reads; others are ignored (as
# vLLM's OpenAIBaseModel does, extra="allow").
COMPLETION_FIELDS = ("model", "input", "encoding_format", "dimensions", "user", "truncate_prompt_tokens",
                     "truncation_side", "add_special_tokens", "use_activation", "embed_dtype", "endianness",
                     "padding", "priority", "request_id", "cache_salt", "mm_processor_kwargs")
CHAT_FIELDS = ("messages", "add_generation_prompt", "continue_final_message", "chat_template",
               "chat_template_kwargs")
LEGACY_FIELDS = {"normalize": "use_activation"}  # 0.10.1 spelling -> 0.33.0 spelling

# Error bodies: {"error": {"message", "type", "param", "code"}} (vLLM >= 0.10.1). A request-validation error's
# `param` (0.33.0 and 0.34.0: serve/exception_handling/handlers/validation.py) is the VLLMValidationError's parameter
# when a validator raised one, else the first error's location joined with dots ("body.embed_dtype"; "body" for a
# whole-model check; "body.<pos>" for malformed JSON), pydantic's schema-kind segments (bracketed ones, and the words
# below) left out; an error that is a plain string (the unsupported media type) has none.
PYDANTIC_LOC_KINDS = frozenset((
    "function-wrap", "function-after", "function-before", "function-plain", "json-or-python", "lax-or-strict",
    "chain", "default", "nullable", "tagged-union", "union", "call", "arguments", "is-instance", "is-subclass",
    "callable", "str", "int", "float", "bool", "bytes", "bytearray", "list", "tuple", "dict", "set", "frozenset",
    "complex", "none", "nonetype"))
VALIDATION_ERROR_TYPE = "Bad Request"  # FastAPI RequestValidationError: bad JSON, bad field, wrong content type
BAD_REQUEST_TYPE = "BadRequestError"  # the engine refused the request (too long, dimensions, chat template)
NOT_FOUND_TYPE = "NotFoundError"  # unknown model
ERROR_TYPES = {400: BAD_REQUEST_TYPE, 404: NOT_FOUND_TYPE, 408: "Request Timeout", 500: "InternalServerError",
               503: "ServiceUnavailableError"}
UNAUTHORIZED_BODY = {"error": "Unauthorized"}  # vLLM's auth middleware answer (401)
NOT_FOUND_BODY = {"detail": "Not Found"}  # FastAPI's answer for an unknown route
UNSUPPORTED_MEDIA_TYPE = "Unsupported Media Type: Only 'application/json' is allowed"
# vLLM (>= 0.11; PoolingIOProcessor._validate_chat_template in 0.33/0.34) refuses a template sent in the request,
# top-level or in chat_template_kwargs, unless the server runs with --trust-request-chat-template (off by default).
UNTRUSTED_CHAT_TEMPLATE = ("Chat template is passed with request, but --trust-request-chat-template is not set. "
                           "Refused request with untrusted chat template.")
# vLLM's bound on one render (env VLLM_CHAT_TEMPLATE_RENDER_TIMEOUT, 30 s; it answers a timeout with 500 on its
# chat path and has no bound on its pooling path). Here every render is bounded, trusted template or not, and a
# timeout is the client's 400: its messages or template are what took too long.
CHAT_TEMPLATE_TIMEOUT_ENV = "VLLM_CHAT_TEMPLATE_RENDER_TIMEOUT"
CHAT_TEMPLATE_TIMEOUT_S = 30.0

# The API key guards these path prefixes (0.33.0; 0.10.x guarded only /v1); the scheme word is case-insensitive.
AUTH_PREFIXES = ("/v1", "/v2", "/inference", "/cohere")
OPEN_PATHS = ("/health", "/ping", "/version", "/metrics")

# Limits. vLLM has none per request besides max_model_len per input; these follow OpenAI's embeddings API
# (2,048 inputs and 300,000 tokens per request) and are refused with a 400 that states them.
MAX_INPUTS_PER_REQUEST = 2048
MAX_TOKENS_PER_REQUEST = 300_000
MAX_BODY_BYTES = 4 * 1024 * 1024  # a JSON body of that size parses in a few tens of milliseconds
# Slow clients: a request's headers must arrive within HEADER_TIMEOUT_S of the connection opening or going idle
# (also the idle keep-alive; vLLM's uvicorn keeps idle connections 5 s), its body within BODY_TIMEOUT_S (else 408,
# as nginx's client_body_timeout answers).
HEADER_TIMEOUT_S = 5.0
BODY_TIMEOUT_S = 60.0


# What differs between the releases, behaviour by behaviour (everything else on the pooling routes is the same in
# 0.33.0 and 0.34.0: vllm/entrypoints/pooling/* of both wheels):
# - usage: 0.34.0's UsageInfo excludes prompt_tokens_details when it is None (0.33.0 dumps it as null).
USAGE_DETAILS_UNTIL = "0.33.0"

# The pooling routes vLLM 0.34.0 serves for an embedding model, and the tasks /pooling takes for one.
POOLING_ROUTES = ("/v1/embeddings", "/v2/embed", "/pooling", "/classify", "/score", "/v1/score", "/rerank",
                  "/v1/rerank", "/v2/rerank")
EMBED_MODEL_TASKS = ("embed",)
# --pooler-config keys the local server takes (vLLM's PoolerConfig has more; they do not apply to it).
POOLER_CONFIG_KEYS = ("enable_chunked_processing", "max_embed_len")
HF_OVERRIDE_KEYS = ("matryoshka_dimensions", "is_matryoshka")


def check_version(version: str) -> str:
    if version not in VLLM_VERSIONS:
        raise ValueError(f"vLLM version {version!r} is not one the local server follows: give one of "
                         f"{', '.join(VLLM_VERSIONS)}")
    return version


def usage_has_prompt_tokens_details(version: str) -> bool:
    return tuple(map(int, version.split("."))) <= tuple(map(int, USAGE_DETAILS_UNTIL.split(".")))


def validation_param(loc) -> str:
    """The ``param`` of a request-validation error at pydantic location ``loc`` (inside the body)."""
    parts = ["body"] + [str(p) for p in loc]
    kept = [p for p in parts if not any(c in p for c in "[]{}()") and p.lower() not in PYDANTIC_LOC_KINDS]
    return ".".join(kept) if kept else ".".join(parts)


def requires_key(path: str) -> bool:
    """True when ``path`` needs ``Authorization: Bearer <key>`` (once a key is set)."""
    return path.startswith(AUTH_PREFIXES)  # a plain prefix test, as vLLM's middleware does
