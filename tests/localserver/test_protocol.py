"""vLLM v0.10's embeddings API as pure functions: request checks, truncation, response and error shapes."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from tke_playbook.errors import BadRequestError, EmbeddingAPIError
from tke_playbook.localserver.protocol import (build_error, build_models_response, parse_embedding_request,
                                               render_embedding_response, resolve_token_ids)

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


@pytest.mark.parametrize("body, status, phrase", [
    pytest.param(b"{not json", 400, "Invalid JSON", id="bad-json"),
    pytest.param(b"[1, 2]", 400, "JSON object", id="body-not-an-object"),
    pytest.param({"model": NAMES[0]}, 400, "'input'", id="input-missing"),
    pytest.param({"input": []}, 400, "must not be empty", id="input-empty-list"),
    pytest.param({"input": ["a", 1]}, 400, "must be a string", id="input-mixed-list"),
    pytest.param({"input": [1.5, 2]}, 400, "must be a string", id="input-float-tokens"),
    pytest.param({"input": [True]}, 400, "must be a string", id="input-bool-tokens"),
    pytest.param({"input": "x", "encoding_format": "int8"}, 400, "'float' or 'base64'", id="encoding-format"),
    pytest.param({"input": "x", "dimensions": 128}, 400, "does not support matryoshka representation",
                 id="dimensions"),
    pytest.param({"input": "x", "truncate_prompt_tokens": 0}, 400, "truncate_prompt_tokens", id="truncate-zero"),
    pytest.param({"input": "x", "truncate_prompt_tokens": -2}, 400, "truncate_prompt_tokens",
                 id="truncate-negative"),
    pytest.param({"input": "x", "add_special_tokens": "yes"}, 400, "add_special_tokens", id="special-not-bool"),
    pytest.param({"input": "x", "model": "BAAI/bge-m3"}, 404, "The model `BAAI/bge-m3` does not exist.",
                 id="unknown-model"),
])
def test_bad_requests_get_vllm_status_and_error_body(body, status, phrase):
    with pytest.raises(EmbeddingAPIError) as caught:
        parse(body)
    assert caught.value.status == status
    assert caught.value.body == build_error(caught.value.message, status)
    assert caught.value.body["object"] == "error" and caught.value.body["code"] == status
    assert phrase in caught.value.body["message"]


def test_error_body_has_vllm_fields():
    assert build_error("bad", 400) == {"object": "error", "message": "bad", "type": "BadRequestError",
                                       "param": None, "code": 400}


def test_unknown_fields_and_user_are_ignored():
    assert parse({"input": "x", "user": "u1", "priority": 3}).texts == ("x",)


def test_text_over_the_context_length_is_refused_with_the_limit():
    with pytest.raises(BadRequestError) as caught:
        resolve({"input": "one two three four five six seven"})  # 9 tokens with [CLS]/[SEP]
    assert caught.value.message == (
        "This model's maximum context length is 8 tokens. However, you requested 9 tokens in the input for "
        "embedding generation. Please reduce the length of the input.")


def test_token_ids_over_the_context_length_are_refused():
    with pytest.raises(BadRequestError, match="maximum context length is 8 tokens.*requested 9 tokens"):
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
    assert {k: v for k, v in body.items() if k != "data"} == {
        "id": "embd-x", "object": "list", "created": 123, "model": "m",
        "usage": {"prompt_tokens": 17, "total_tokens": 17, "completion_tokens": 0}}
    assert [(d["index"], d["object"]) for d in body["data"]] == [(0, "embedding"), (1, "embedding"),
                                                                (2, "embedding")]
    got = np.array([d["embedding"] for d in body["data"]], dtype=np.float32)
    assert np.array_equal(got, vectors)  # 9 significant digits round-trip float32 exactly


def test_base64_response_is_little_endian_float32():
    vectors = np.arange(6, dtype=np.float32).reshape(2, 3) / 7
    body = json.loads(render_embedding_response(vectors, model="m", prompt_tokens=2, encoding_format="base64"))
    decoded = [np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in body["data"]]
    assert np.array_equal(np.stack(decoded), vectors)
    assert body["id"].startswith("embd-")


def test_models_response_lists_the_served_model():
    body = build_models_response("m", root="/models/m", max_model_len=256, created=5)
    model = body["data"][0]
    assert body["object"] == "list"
    assert (model["id"], model["object"], model["owned_by"], model["root"], model["max_model_len"]) == (
        "m", "model", "vllm", "/models/m", 256)
