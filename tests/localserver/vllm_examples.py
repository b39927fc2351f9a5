"""Recorded vLLM bodies (reference facts, sections 4 and 10; vLLM 0.33.0's pooling/embed protocol), the yardstick
for the local server. Nothing here comes from the local server's own output.

``same_shape(got, example)`` compares key sets and value types recursively (not values), as "the same body
shape" in the acceptance criteria means.
"""

from __future__ import annotations

# A 0.33.0 EmbeddingCompletionRequest as its pydantic model dumps it with the defaults (every field it declares).
COMPLETION_REQUEST_033 = {
    "model": None, "user": None, "truncate_prompt_tokens": None, "padding": None, "truncation_side": None,
    "request_id": "8c3f0b1e2d4a4b6c9e7f1a2b3c4d5e6f", "priority": 0, "mm_processor_kwargs": None,
    "cache_salt": None, "input": "The cluster serves embeddings.", "add_special_tokens": True,
    "encoding_format": "float", "embed_dtype": "float32", "endianness": "native", "dimensions": None,
    "use_activation": None,
}

# A 0.33.0 EmbeddingChatRequest with its defaults.
CHAT_REQUEST_033 = {
    "model": None, "user": None, "truncate_prompt_tokens": None, "padding": None, "truncation_side": None,
    "request_id": "0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a", "priority": 0, "mm_processor_kwargs": None,
    "cache_salt": None, "messages": [{"role": "user", "content": "What is a GPU node?"}],
    "add_generation_prompt": False, "continue_final_message": False, "add_special_tokens": False,
    "chat_template": None, "chat_template_kwargs": None, "media_io_kwargs": None,
    "encoding_format": "float", "embed_dtype": "float32", "endianness": "native", "dimensions": None,
    "use_activation": None,
}

# What a 0.10.1 client sends (the tutorial's image).
COMPLETION_REQUEST_0101 = {"model": None, "input": ["a", "b"], "encoding_format": "float", "dimensions": None,
                           "user": None, "truncate_prompt_tokens": None, "add_special_tokens": True,
                           "normalize": None, "priority": 0, "request_id": "abc"}

EMBEDDING_RESPONSE = {
    "id": "embd-8c3f0b1e2d4a4b6c9e7f1a2b3c4d5e6f", "object": "list", "created": 1764460800,
    "model": "sentence-transformers/all-MiniLM-L6-v2",
    "data": [{"index": 0, "object": "embedding", "embedding": [0.0123, -0.0456]}],
    "usage": {"prompt_tokens": 8, "total_tokens": 8, "completion_tokens": 0, "prompt_tokens_details": None,
              "completion_tokens_details": None},
}
EMBEDDING_RESPONSE_BASE64 = {**EMBEDDING_RESPONSE,
                             "data": [{"index": 0, "object": "embedding", "embedding": "AAAAPwAAgD8="}]}

# vLLM 0.33/0.34's handler (serve/exception_handling/handlers/validation.py) gives a validation error the first
# error's location as `param`: FastAPI locates malformed JSON at ("body", <position>).
VALIDATION_ERROR = {"error": {"message": "1 validation error:\n  {'type': 'json_invalid', 'loc': 'body.1', 'msg': "
                                         "'JSON decode error', 'input': {}, 'ctx': {'error': 'Expecting value'}}",
                              "type": "Bad Request", "param": "body.1", "code": 400}}
UNSUPPORTED_MEDIA_TYPE = {"error": {"message": "[\"Unsupported Media Type: Only 'application/json' is allowed\"]",
                                    "type": "Bad Request", "param": None, "code": 400}}
# vLLM 0.33/0.34 (renderers/params.py TokenizeParams._token_len_check): text is tokenised to at most max+1 tokens,
# so a 302-token text is reported as "at least 257".
TOO_LONG = {"error": {"message": "This model's maximum context length is 256 tokens. However, your prompt contains "
                                 "at least 257 input tokens, which exceeds this limit even without any output "
                                 "tokens. Please reduce the length of the input prompt.", "type": "BadRequestError",
                      "param": "input_tokens", "code": 400}}
UNKNOWN_MODEL = {"error": {"message": "The model `nope` does not exist.", "type": "NotFoundError", "param": None,
                           "code": 404}}
# vLLM 0.33.0 and 0.34.0 (pooling_params.py PoolingParams._set_default_parameters, a VLLMValidationError: 400).
DIMENSIONS = {"error": {"message": "Model 'sentence-transformers/all-MiniLM-L6-v2' does not support Matryoshka "
                                   "embeddings; dimensions must be unset (received dimensions=64).",
                        "type": "BadRequestError", "param": None, "code": 400}}
UNAUTHORIZED = {"error": "Unauthorized"}
NOT_FOUND_ROUTE = {"detail": "Not Found"}
VERSION_033 = {"version": "0.33.0"}

# The bytes answer's metadata header (encoding_format "bytes").
BYTES_METADATA = {"id": "embd-x", "created": 1764460800, "model": "m",
                  "data": [{"index": 0, "embed_dtype": "float32", "endianness": "native", "start": 0, "end": 1536,
                            "shape": [384]}],
                  "usage": {"prompt_tokens": 8, "total_tokens": 8}}


def error_shape(got) -> bool:
    """vLLM's ErrorResponse: ``{"error": {"message": str, "type": str, "param": str | None, "code": int}}`` - the
    param is the location of a request-validation error, a VLLMValidationError's parameter, or None."""
    error = got.get("error") if isinstance(got, dict) else None
    return (isinstance(error, dict) and set(got) == {"error"} and set(error) == {"message", "type", "param", "code"}
            and isinstance(error["message"], str) and isinstance(error["type"], str)
            and isinstance(error["param"], (str, type(None))) and type(error["code"]) is int)


def same_shape(got, example) -> bool:
    """True when ``got`` has ``example``'s keys and value types, recursively (lists: every item like the first)."""
    if isinstance(example, dict):
        return isinstance(got, dict) and set(got) == set(example) and all(
            same_shape(got[k], v) for k, v in example.items())
    if isinstance(example, list):
        return isinstance(got, list) and all(same_shape(item, example[0]) for item in got) if example else \
            isinstance(got, list)
    if example is None:
        return got is None
    if isinstance(example, float):
        return isinstance(got, (int, float)) and not isinstance(got, bool)
    return type(got) is type(example)

# vLLM 0.33/0.34 (PoolingIOProcessor._validate_chat_template -> VLLMValidationError -> 400 BadRequestError) for a
# template in the request when the server runs without --trust-request-chat-template.
UNTRUSTED_CHAT_TEMPLATE = {"error": {"message": "Chat template is passed with request, but "
                                                "--trust-request-chat-template is not set. Refused request with "
                                                "untrusted chat template.",
                                     "type": "BadRequestError", "param": None, "code": 400}}

# --- vLLM 0.34.0's other pooling routes for an embedding model (vllm/entrypoints/pooling/*/protocol.py; the same
# models in 0.33.0). Bodies as their pydantic models dump them.
SCORE_REQUEST_FORMS = [  # ScoreQueriesDocumentsRequest, ScoreQueriesItemsRequest, ScoreDataRequest, ScoreTextRequest
    {"queries": "What is the capital of France?", "documents": ["Paris is the capital of France.", "Bananas."]},
    {"queries": "What is the capital of France?", "items": ["Paris is the capital of France.", "Bananas."]},
    {"data_1": "What is the capital of France?", "data_2": ["Paris is the capital of France.", "Bananas."]},
    {"text_1": "What is the capital of France?", "text_2": ["Paris is the capital of France.", "Bananas."]},
]
SCORE_RESPONSE = {"id": "score-0d1e2f3a", "object": "list", "created": 1764460800,
                  "model": "sentence-transformers/all-MiniLM-L6-v2",
                  "data": [{"index": 0, "object": "score", "score": 0.71}],
                  "usage": {"prompt_tokens": 24, "total_tokens": 24, "completion_tokens": 0,
                            "prompt_tokens_details": None, "completion_tokens_details": None}}
RERANK_REQUEST = {"model": "sentence-transformers/all-MiniLM-L6-v2", "query": "What is the capital of France?",
                  "documents": ["The capital of Brazil is Brasilia.", "The capital of France is Paris.",
                                "Horses and cows are both animals"], "top_n": 2, "return_documents": True}
RERANK_RESPONSE = {"id": "score-0d1e2f3a", "model": "sentence-transformers/all-MiniLM-L6-v2",
                   "usage": {"prompt_tokens": 38, "total_tokens": 38},
                   "results": [{"index": 1, "document": {"text": "The capital of France is Paris.",
                                                         "multi_modal": None}, "relevance_score": 0.8}]}
POOLING_RESPONSE = {"id": "pool-0d1e2f3a", "object": "list", "created": 1764460800,
                    "model": "sentence-transformers/all-MiniLM-L6-v2",
                    "data": [{"index": 0, "object": "pooling", "data": [0.0123, -0.0456]}],
                    "usage": {"prompt_tokens": 8, "total_tokens": 8, "completion_tokens": 0,
                              "prompt_tokens_details": None, "completion_tokens_details": None}}
COHERE_REQUEST = {"model": "sentence-transformers/all-MiniLM-L6-v2", "texts": ["hello", "goodbye"],
                  "embedding_types": ["float", "binary", "ubinary", "base64"]}
COHERE_RESPONSE = {"id": "embd-0d1e2f3a",
                   "embeddings": {"float": [[0.1, -0.2]], "binary": [[-71]], "ubinary": [[57]],
                                  "base64": ["AAAAPwAAgD8="]},
                   "texts": ["hello"], "meta": {"api_version": {"version": "2"},
                                                "billed_units": {"input_tokens": 3, "image_tokens": 0}},
                   "response_type": "embeddings_by_type"}
CLASSIFY_EMBEDDING_MODEL = {"error": {"message": "The model does not support Classification API",
                                      "type": "NotImplementedError", "param": None, "code": 501}}
SCORE_LENGTHS = {"error": {"message": "Input lengths must be either 1:1, 1:N or N:N", "type": "BadRequestError",
                           "param": None, "code": 400}}
POOLING_DIMENSIONS = {"error": {"message": "dimensions is currently not supported", "type": "BadRequestError",
                                "param": "dimensions", "code": 400}}
COHERE_INPUT_TYPE = {"error": {"message": "Unsupported input_type 'search_query'. This model does not define any "
                                          "input_type task instructions.", "type": "BadRequestError", "param": None,
                               "code": 400}}
MATRYOSHKA_ONLY = ("Model 'sentence-transformers/all-MiniLM-L6-v2' only supports Matryoshka dimensions [128, 256], "
                   "got 100.")
DIMENSIONS_RANGE = ("Model 'sentence-transformers/all-MiniLM-L6-v2' only supports dimensions in range [1, 384], got "
                    "1000.")
# 0.34.0's UsageInfo excludes prompt_tokens_details when it is None.
USAGE_034 = {"prompt_tokens": 8, "total_tokens": 8, "completion_tokens": 0, "completion_tokens_details": None}
# vLLM 0.34.0's routes for an embedding model (api_router.py of embed, pooling, classify, scoring).
POOLING_ROUTES_034 = ("/v1/embeddings", "/v2/embed", "/pooling", "/classify", "/score", "/v1/score", "/rerank",
                      "/v1/rerank", "/v2/rerank")
