"""vLLM's embeddings API (0.33.0, keeping 0.10.1 clients working) as pure functions: request checks, truncation,
response and error shapes. Expectations come from ``surface`` and recorded vLLM bodies (``vllm_examples``)."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from tke_playbook.errors import BadRequestError, EmbeddingAPIError
from tke_playbook.localserver import surface
from tke_playbook.localserver.protocol import (build_error, build_models_response, check_dimensions, finish_embeddings,
                                               parse_embedding_request, render_bytes_response,
                                               render_embedding_response, resolve_token_ids)

from . import vllm_examples as vllm

NAMES = ("sentence-transformers/all-MiniLM-L6-v2",)


def parse(body) -> object:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_embedding_request(raw, served_names=NAMES)


def fake_tokenize(texts, *, add_special_tokens=True, max_length=None):
    """One token per word, with [CLS]=101/[SEP]=102 around it; cut at max_length keeping the start (right side)."""
    out = []
    for text in texts:
        ids = [1000 + len(word) for word in text.split()]
        if add_special_tokens:
            ids = [101] + ids + [102]
        if max_length is not None and len(ids) > max_length:
            ids = ids[:max_length - 1] + [102] if add_special_tokens else ids[:max_length]
        out.append(ids)
    return out


def resolve(body, max_model_len=8, vocab_size=30522):
    return resolve_token_ids(parse(body), fake_tokenize, max_model_len=max_model_len, vocab_size=vocab_size)


@pytest.mark.parametrize("value, texts, ids", [
    pytest.param("hello", ("hello",), None, id="string"),
    pytest.param(["a", "b"], ("a", "b"), None, id="list-of-strings"),
    pytest.param([101, 7592, 102], None, ((101, 7592, 102),), id="token-ids"),
    pytest.param([[101, 102], [101, 7, 102]], None, ((101, 102), (101, 7, 102)), id="list-of-token-id-lists"),
])
def test_every_input_form_is_accepted(value, texts, ids):
    request = parse({"input": value})
    assert (request.texts, request.token_ids) == (texts, ids)
    assert request.model == NAMES[0]  # model may be left out, as in vLLM
    assert request.encoding_format == "float"


V, B, N = surface.VALIDATION_ERROR_TYPE, surface.BAD_REQUEST_TYPE, surface.NOT_FOUND_TYPE


@pytest.mark.parametrize("body, status, err_type, phrase", [
    pytest.param(b"{not json", 400, V, "JSON decode error", id="bad-json"),
    pytest.param(b"[1, 2]", 400, V, "JSON object", id="body-not-an-object"),
    pytest.param(b"[" * 100_000 + b"]" * 100_000, 400, V, "nested too deeply", id="deep-nesting"),
    pytest.param(b"\xff\xfe{", 400, V, "JSON decode error", id="not-utf8"),
    pytest.param({"model": NAMES[0]}, 400, V, "input", id="input-missing"),
    pytest.param({"input": []}, 400, B, "must not be empty", id="input-empty-list"),
    pytest.param({"input": ["a", 1]}, 400, V, "input", id="input-mixed-list"),
    pytest.param({"input": [1.5, 2]}, 400, V, "fractional part", id="input-float-tokens"),
    pytest.param({"input": "x", "encoding_format": "int8"}, 400, V, "encoding_format", id="encoding-format"),
    pytest.param({"input": "x", "encoding_format": None}, 400, V, "encoding_format", id="encoding-format-null"),
    pytest.param({"input": "x", "encoding_format": []}, 400, V, "encoding_format", id="encoding-format-list"),
    pytest.param({"input": "x", "encoding_format": {}}, 400, V, "encoding_format", id="encoding-format-object"),
    pytest.param({"input": "x", "embed_dtype": "int4"}, 400, V, "embed_dtype", id="embed-dtype"),
    pytest.param({"input": "x", "endianness": "middle"}, 400, V, "endianness", id="endianness"),
    pytest.param({"input": "x", "truncation_side": "middle"}, 400, V, "truncation_side", id="truncation-side"),
    pytest.param({"input": "x", "truncate_prompt_tokens": 0}, 400, B, "truncate_prompt_tokens", id="truncate-zero"),
    pytest.param({"input": "x", "truncate_prompt_tokens": -2}, 400, V, "truncate_prompt_tokens",
                 id="truncate-negative"),
    pytest.param({"input": "x", "truncate_prompt_tokens": "three"}, 400, V, "truncate_prompt_tokens",
                 id="truncate-not-a-number"),
    pytest.param({"input": "x", "add_special_tokens": "maybe"}, 400, V, "add_special_tokens", id="special-not-bool"),
    pytest.param({"input": "x", "use_activation": True, "normalize": False}, 400, B, "use_activation",
                 id="normalize-disagrees"),
    pytest.param({"input": "\ud800"}, 400, B, "not valid Unicode", id="lone-surrogate"),
    pytest.param({"input": ["ok", "bad \udfff"]}, 400, B, "input[1] is not valid Unicode", id="lone-surrogate-list"),
    pytest.param({"messages": [{"role": "user", "content": "\ud800"}]}, 400, B, "not valid Unicode",
                 id="lone-surrogate-chat"),
    pytest.param({"messages": [{"role": "user", "content": "x"}], "chat_template": "{{ 1 }}"}, 400, B,
                 "untrusted chat template", id="chat-template-in-request"),
    pytest.param({"messages": [{"role": "user", "content": "x"}], "add_generation_prompt": True,
                  "continue_final_message": True}, 400, V, "Cannot set both", id="chat-both-flags"),
    pytest.param({"messages": [{"content": "x"}]}, 400, V, "role", id="chat-without-role"),
    pytest.param({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "u"}}]}]},
                 400, B, "Only text content", id="chat-image"),
    pytest.param({"input": "x", "model": "BAAI/bge-m3"}, 404, N, "The model `BAAI/bge-m3` does not exist.",
                 id="unknown-model"),
])
def test_bad_requests_get_vllm_status_and_error_body(body, status, err_type, phrase):
    with pytest.raises(EmbeddingAPIError) as caught:
        parse(body)
    assert caught.value.status == status
    error = caught.value.body
    # a validation error carries its location as param (vLLM 0.33/0.34's handler); the engine's errors carry none
    assert vllm.same_shape(error, vllm.VALIDATION_ERROR if err_type == V else vllm.UNKNOWN_MODEL)
    assert error["error"]["type"] == err_type and error["error"]["code"] == status
    assert phrase in error["error"]["message"]


def test_error_body_has_vllm_fields():
    assert build_error("bad", 400) == {"error": {"message": "bad", "type": "BadRequestError", "param": None,
                                                 "code": 400}}
    assert vllm.same_shape(build_error("x", 404), vllm.UNKNOWN_MODEL)


def test_lax_types_are_coerced_as_pydantic_does_for_vllm():
    request = parse({"input": "x", "truncate_prompt_tokens": "3", "add_special_tokens": "false",
                     "dimensions": "64", "use_activation": 0})
    assert (request.truncate_prompt_tokens, request.add_special_tokens, request.dimensions,
            request.use_activation) == (3, False, 64, False)


def test_a_033_request_dump_and_a_0101_request_are_both_accepted():
    new = parse(vllm.COMPLETION_REQUEST_033)
    assert new.texts == (vllm.COMPLETION_REQUEST_033["input"],) and new.model == NAMES[0]
    assert new.request_id == vllm.COMPLETION_REQUEST_033["request_id"]
    old = parse(vllm.COMPLETION_REQUEST_0101)
    assert old.texts == ("a", "b") and old.use_activation is None
    assert parse({"input": "x", "normalize": False}).use_activation is False  # 0.10.1's name still works
    chat = parse(vllm.CHAT_REQUEST_033)
    assert chat.conversations == (({"role": "user", "content": "What is a GPU node?"},),)
    assert chat.add_special_tokens is False  # the chat request's default


def test_new_033_fields_are_read():
    request = parse({"input": "x", "encoding_format": "bytes", "embed_dtype": "bfloat16", "endianness": "big",
                     "truncation_side": "left", "use_activation": False, "model": ""})
    assert request.encoding_format is surface.EncodingFormat.BYTES
    assert request.embed_dtype is surface.EmbedDType.BFLOAT16 and request.endianness is surface.Endianness.BIG
    assert request.truncation_side is surface.TruncationSide.LEFT and request.use_activation is False
    assert request.model == NAMES[0]  # a falsy model means the served one


def test_the_request_id_header_wins_over_the_body():
    raw = json.dumps({"input": "x", "request_id": "body-id"}).encode()
    assert parse_embedding_request(raw, served_names=NAMES).request_id == "body-id"
    assert parse_embedding_request(raw, served_names=NAMES, request_id="header-id").request_id == "header-id"


def test_chat_messages_in_input_and_batched_conversations():
    turn = {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
    assert parse({"input": [turn]}).conversations == (({"role": "user", "content": "ab"},),)
    batched = parse({"messages": [[turn], [{"role": "system", "content": "s"}, turn]]})
    assert len(batched.conversations) == 2 and batched.size == 2


def test_too_many_inputs_are_refused_before_validation_with_the_limit():
    with pytest.raises(BadRequestError, match="at most 3 inputs per request; the request has 4"):
        parse_embedding_request(json.dumps({"input": ["a", "b", "c", {}]}).encode(), served_names=NAMES,
                                max_inputs=3)  # refused by count, before the bad fourth item is looked at
    assert parse_embedding_request(json.dumps({"input": list(range(10))}).encode(), served_names=NAMES,
                                   max_inputs=3).token_ids == (tuple(range(10)),)  # one input of 10 tokens
    assert surface.MAX_INPUTS_PER_REQUEST == 2048  # OpenAI's limit (vLLM has none)


def test_too_many_tokens_are_refused_with_the_limit():
    request = parse({"input": ["one two three", "four five six"]})  # 5 tokens each with [CLS]/[SEP]
    assert len(resolve_token_ids(request, fake_tokenize, max_model_len=8, vocab_size=30522, max_tokens=10)) == 2
    with pytest.raises(BadRequestError, match="at most 9 tokens per request; the request has 10"):
        resolve_token_ids(request, fake_tokenize, max_model_len=8, vocab_size=30522, max_tokens=9)


@pytest.mark.parametrize("matryoshka, dims, dimensions, phrase", [
    pytest.param(False, None, 64, "does not support Matryoshka embeddings; dimensions must be unset (received "
                 "dimensions=64)", id="not-matryoshka"),
    pytest.param(True, (256, 512), 64, "only supports Matryoshka dimensions [256, 512], got 64", id="not-listed"),
    pytest.param(True, None, 0, "only supports dimensions in range [1, 1024], got 0", id="zero"),
    pytest.param(True, (256, 512), 2048, "only supports dimensions in range [1, 1024], got 2048", id="too-large"),
])
def test_dimensions_follow_vllms_rules(matryoshka, dims, dimensions, phrase):
    """vLLM 0.33.0 and 0.34.0's PoolingParams._set_default_parameters (the same in both)."""
    request = parse({"input": "x", "dimensions": dimensions})
    with pytest.raises(BadRequestError) as caught:
        check_dimensions(request, is_matryoshka=matryoshka, matryoshka_dimensions=dims, embedding_size=1024)
    assert phrase in caught.value.message and caught.value.body["error"]["type"] == surface.BAD_REQUEST_TYPE
    check_dimensions(parse({"input": "x", "dimensions": 256}), is_matryoshka=True, matryoshka_dimensions=dims or (256,))


def test_finish_embeddings_cuts_then_normalises_or_not():
    raw = np.array([[3.0, 4.0, 12.0]], dtype=np.float32)
    assert np.allclose(finish_embeddings(raw), raw / 13.0)
    assert np.allclose(finish_embeddings(raw, dimensions=2), [[0.6, 0.8]])
    assert np.array_equal(finish_embeddings(raw, normalize=False), raw)
    assert np.array_equal(finish_embeddings(np.zeros((1, 3), np.float32)), np.zeros((1, 3)))  # no division by 0


def test_unknown_fields_and_user_are_ignored():
    assert parse({"input": "x", "user": "u1", "priority": 3, "something_new": [1]}).texts == ("x",)


def test_text_over_the_context_length_is_refused_with_the_limit():
    with pytest.raises(BadRequestError) as caught:
        resolve({"input": "one two three four five six seven"})  # 9 tokens with [CLS]/[SEP]
    assert caught.value.message == (  # vLLM 0.33/0.34's TokenizeParams._token_len_check (text: "at least max+1")
        "This model's maximum context length is 8 tokens. However, your prompt contains at least 9 input tokens, "
        "which exceeds this limit even without any output tokens. Please reduce the length of the input prompt.")
    assert caught.value.body["error"]["param"] == "input_tokens"


def test_token_ids_over_the_context_length_are_refused():
    with pytest.raises(BadRequestError, match="maximum context length is 8 tokens.*contains 9 input tokens"):
        resolve({"input": list(range(1, 10))})


@pytest.mark.parametrize("truncate, expected", [
    pytest.param(-1, [101, 1003, 1003, 1005, 1004, 1004, 1003, 102], id="minus-one-is-max-model-len"),
    pytest.param(4, [101, 1003, 1003, 102], id="k-keeps-the-start-of-a-text"),
])
def test_truncating_text_keeps_its_start(truncate, expected):
    ids = resolve({"input": "one two three four five six seven", "truncate_prompt_tokens": truncate})
    assert ids == [expected]


def test_truncating_token_ids_keeps_their_end():
    assert resolve({"input": [5, 6, 7, 8, 9], "truncate_prompt_tokens": 2}) == [[8, 9]]
    assert resolve({"input": list(range(1, 13)), "truncate_prompt_tokens": -1}) == [list(range(5, 13))]


def test_truncation_side_chooses_which_end_is_kept():
    assert resolve({"input": [5, 6, 7, 8, 9], "truncate_prompt_tokens": 2, "truncation_side": "right"}) == [[5, 6]]
    seen = {}

    def tokenize(texts, **kwargs):
        seen.update(kwargs)
        return fake_tokenize(texts, add_special_tokens=kwargs["add_special_tokens"], max_length=kwargs["max_length"])

    resolve_token_ids(parse({"input": "a b c", "truncate_prompt_tokens": 3, "truncation_side": "left"}), tokenize,
                      max_model_len=8, vocab_size=30522)
    assert seen["truncation_side"] == "left" and seen["max_length"] == 3


def test_truncation_beyond_the_model_length_is_refused():
    with pytest.raises(BadRequestError, match=r"truncate_prompt_tokens value \(9\) is greater than max_model_len "
                                              r"\(8\)\. Please, select a smaller truncation size\."):
        resolve({"input": "x", "truncate_prompt_tokens": 9})


def test_add_special_tokens_false_is_passed_to_the_tokenizer():
    assert resolve({"input": "ab c", "add_special_tokens": False}) == [[1002, 1001]]


@pytest.mark.parametrize("ids, phrase", [
    pytest.param([[]], "cannot be empty", id="empty-token-list"),
    pytest.param([[1, 30522]], "out of vocabulary", id="token-beyond-vocab"),
    pytest.param([[-1, 5]], "out of vocabulary", id="negative-token"),
])
def test_bad_token_ids_are_refused(ids, phrase):
    with pytest.raises(BadRequestError, match=phrase):
        resolve({"input": ids})


def test_float_response_has_vllm_shape_and_exact_float32_values():
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((3, 384)).astype(np.float32)
    body = json.loads(render_embedding_response(vectors, model="m", prompt_tokens=17, request_id="embd-x",
                                                created=123))
    assert vllm.same_shape(body, vllm.EMBEDDING_RESPONSE)
    assert {k: v for k, v in body.items() if k != "data"} == {
        "id": "embd-x", "object": "list", "created": 123, "model": "m",
        "usage": {"prompt_tokens": 17, "total_tokens": 17, "completion_tokens": 0, "prompt_tokens_details": None,
                  "completion_tokens_details": None}}
    assert [(d["index"], d["object"]) for d in body["data"]] == [(0, "embedding"), (1, "embedding"),
                                                                (2, "embedding")]
    got = np.array([d["embedding"] for d in body["data"]], dtype=np.float32)
    assert np.array_equal(got, vectors)  # 9 significant digits round-trip float32 exactly


def test_base64_response_is_little_endian_float32():
    vectors = np.arange(6, dtype=np.float32).reshape(2, 3) / 7
    body = json.loads(render_embedding_response(vectors, model="m", prompt_tokens=2, encoding_format="base64"))
    assert vllm.same_shape(body, vllm.EMBEDDING_RESPONSE_BASE64)
    decoded = [np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in body["data"]]
    assert np.array_equal(np.stack(decoded), vectors)
    assert body["id"].startswith("embd-")


@pytest.mark.parametrize("embed_dtype, endianness, numpy_type", [
    pytest.param("float32", "big", ">f4", id="float32-big"),
    pytest.param("float16", "little", "<f2", id="float16-little"),
    pytest.param("float16", "big", ">f2", id="float16-big"),
])
def test_base64_follows_embed_dtype_and_endianness(embed_dtype, endianness, numpy_type):
    vectors = np.array([[0.5, -1.25, 3.0]], dtype=np.float32)
    body = json.loads(render_embedding_response(vectors, model="m", prompt_tokens=1, encoding_format="base64",
                                                embed_dtype=embed_dtype, endianness=endianness))
    assert np.array_equal(np.frombuffer(base64.b64decode(body["data"][0]["embedding"]), dtype=numpy_type), vectors[0])


def test_bfloat16_and_fp8_are_the_top_bits_and_one_byte():
    vectors = np.array([[1.0, -2.0, 0.5]], dtype=np.float32)  # exact in bfloat16 and fp8
    body = json.loads(render_embedding_response(vectors, model="m", prompt_tokens=1, encoding_format="base64",
                                                embed_dtype="bfloat16", endianness="little"))
    halves = np.frombuffer(base64.b64decode(body["data"][0]["embedding"]), dtype="<u2").astype(np.uint32) << 16
    assert np.array_equal(halves.view(np.float32), vectors[0])  # bfloat16 = the upper 16 bits of float32
    fp8, _ = render_bytes_response(vectors, model="m", prompt_tokens=1, encoding_format="bytes_only",
                                   embed_dtype="fp8_e4m3")
    assert fp8 == bytes([0x38, 0xC0, 0x30])  # 1.0, -2.0, 0.5 in E4M3 (bias 7)


def test_bytes_response_has_vllms_metadata_header():
    vectors = np.arange(8, dtype=np.float32).reshape(2, 4)
    body, headers = render_bytes_response(vectors, model="m", prompt_tokens=5, request_id="embd-r", created=9)
    metadata = json.loads(headers["metadata"])
    assert vllm.same_shape(metadata, vllm.BYTES_METADATA)
    assert [(d["start"], d["end"], d["shape"]) for d in metadata["data"]] == [(0, 16, [4]), (16, 32, [4])]
    assert metadata["id"] == "embd-r" and metadata["usage"] == {"prompt_tokens": 5, "total_tokens": 5}
    assert np.array_equal(np.frombuffer(body, dtype=np.float32).reshape(2, 4), vectors)
    assert render_bytes_response(vectors, model="m", prompt_tokens=5, encoding_format="bytes_only")[1] == {}


def test_models_response_lists_the_served_model():
    body = build_models_response("m", root="/models/m", max_model_len=256, created=5)
    model = body["data"][0]
    assert body["object"] == "list"
    assert (model["id"], model["object"], model["owned_by"], model["root"], model["max_model_len"]) == (
        "m", "model", "vllm", "/models/m", 256)
