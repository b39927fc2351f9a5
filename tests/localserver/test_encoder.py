"""The encoder: length-aware chunking (pure) and equality with sentence-transformers on mixed lengths."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tke_playbook.errors import ServerError
from tke_playbook.hostenv import offline_model_dir
from tke_playbook.localserver.encoder import Encoder, length_chunks


def padded_cost(lengths, chunks):
    return sum(max(lengths[i] for i in chunk) * len(chunk) for chunk in chunks)


@pytest.mark.parametrize("lengths, limit", [
    pytest.param(sorted([10, 12, 13, 30, 31, 33, 60, 61, 62, 64, 120, 128]), 32, id="clusters"),
    pytest.param(list(range(1, 200)), 32, id="spread"),
    pytest.param([7] * 100, 32, id="all-equal"),
    pytest.param([5], 32, id="one-row"),
    pytest.param([], 32, id="empty"),
])
def test_chunks_cover_every_row_once_in_order_within_the_limit(lengths, limit):
    chunks = length_chunks(lengths, limit)
    assert [i for chunk in chunks for i in chunk] == list(range(len(lengths)))
    assert all(0 < len(chunk) <= limit for chunk in chunks)


def test_chunks_waste_little_padding_on_mixed_lengths():
    rng = np.random.default_rng(3)
    lengths = sorted(int(x) for x in rng.integers(8, 60, size=128))
    chunks = length_chunks(lengths, 32)
    naive = [range(i, min(i + 32, len(lengths))) for i in range(0, len(lengths), 32)]
    assert padded_cost(lengths, chunks) <= 1.15 * sum(lengths)
    assert padded_cost(lengths, chunks) < padded_cost(lengths, naive)  # sorted chunks of 32 pad more


def test_equal_lengths_fill_chunks_to_the_limit():
    assert [len(c) for c in length_chunks([9] * 70, 32)] == [32, 32, 6]


def test_a_short_tail_joins_the_chunk_before_it():
    assert [len(c) for c in length_chunks([10, 10, 10, 10, 10, 40], 32)] == [6]


@pytest.fixture(scope="module")
def encoder():
    return Encoder(offline_model_dir(), threads=1, chunk=8)


def test_encoder_matches_sentence_transformers_on_mixed_lengths(encoder):
    texts = [("word " * n).strip() + f" {n}" for n in (1, 50, 3, 200, 7, 7, 120, 2, 30, 250, 5, 90)]
    expected = encoder.model.encode(texts)
    assert np.abs(encoder.encode_texts(texts) - expected).max() < 1e-5
    facts = encoder.facts
    assert (facts.dim, facts.max_model_len, facts.vocab_size) == (384, 256, 30522)


def test_tokenize_truncates_keeping_the_start(encoder):
    full = encoder.tokenize(["one two three four five"])[0]
    cut = encoder.tokenize(["one two three four five"], max_length=4)[0]
    assert cut[:3] == full[:3] and cut[-1] == full[-1] and len(cut) == 4  # [CLS] one two [SEP]


def test_a_folder_that_is_not_a_model_raises_server_error(tmp_path):
    (tmp_path / "config.json").write_text("not json", encoding="utf-8")
    with pytest.raises(ServerError, match="Could not load the sentence-transformers model"):
        Encoder(tmp_path)


TEMPLATE = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"


@pytest.fixture(scope="module")
def chat_encoder(tmp_path_factory):
    """The offline model with a chat template added to its tokenizer config."""
    folder = tmp_path_factory.mktemp("chat-model") / "minilm-chat"
    shutil.copytree(offline_model_dir(), folder)
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["chat_template"] = TEMPLATE
    config_path.write_text(json.dumps(config), encoding="utf-8")
    return Encoder(folder, threads=1)


def chat_and_plain(encoder, chat: dict, prompt: str, config=None):
    """The answers to a chat request and to an `input` request of ``prompt`` (the in-process app, real model)."""
    import asyncio

    from aiohttp import ClientSession
    from aiohttp.test_utils import TestServer

    from tke_playbook.localserver.app import ServerConfig, build_app

    async def main():
        server = TestServer(build_app(encoder, config or ServerConfig("minilm-chat")))
        await server.start_server()
        try:
            async with ClientSession() as session:
                url = server.make_url("/v1/embeddings")
                async with session.post(url, json=chat) as answer:
                    chat_answer = answer.status, await answer.json()
                async with session.post(url, json={"input": prompt, "add_special_tokens": False}) as plain:
                    plain_body = await plain.json()
            return chat_answer, plain_body
        finally:
            await server.close()

    return asyncio.run(main())


MESSAGES = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "What is TKE?"}]
PROMPT = "system: Answer briefly.\nuser: What is TKE?\n"


def test_chat_messages_are_embedded_through_the_models_template(chat_encoder):
    """A chat request equals an `input` request of the prompt the template renders (vLLM's EmbeddingChatRequest)."""
    assert chat_encoder.facts.has_chat_template and chat_encoder.chat_template() == TEMPLATE
    (status, chat_body), plain_body = chat_and_plain(chat_encoder, {"messages": MESSAGES}, PROMPT)
    assert status == 200
    assert chat_body["usage"]["prompt_tokens"] == plain_body["usage"]["prompt_tokens"]
    assert np.abs(np.array(chat_body["data"][0]["embedding"]) - plain_body["data"][0]["embedding"]).max() < 1e-6


@pytest.mark.parametrize("kwargs", [
    pytest.param({"tokenize": True}, id="tokenize"),
    pytest.param({"add_generation_prompt": True}, id="add-generation-prompt"),
    pytest.param({"continue_final_message": True}, id="continue-final-message"),
    pytest.param({"tokenize": True, "add_generation_prompt": True, "return_dict": True}, id="all"),
])
def test_chat_template_kwargs_that_name_the_call_s_own_arguments_are_not_a_500(chat_encoder, kwargs):
    """vLLM 0.33/0.34 (build_chat_params, safe_apply_chat_template): the request's own add_generation_prompt and
    continue_final_message win over the same keys in chat_template_kwargs, and tokenize=True tokenises inside the
    template call (no special tokens added), so each answers 200 with the plain prompt's embedding."""
    (status, chat_body), plain_body = chat_and_plain(
        chat_encoder, {"messages": MESSAGES, "chat_template_kwargs": kwargs}, PROMPT)
    assert status == 200, chat_body
    assert chat_body["usage"]["prompt_tokens"] == plain_body["usage"]["prompt_tokens"]
    assert np.abs(np.array(chat_body["data"][0]["embedding"]) - plain_body["data"][0]["embedding"]).max() < 1e-6


def test_the_requests_own_add_generation_prompt_reaches_the_template(chat_encoder):
    from tke_playbook.localserver.app import ServerConfig

    template = "{% for m in messages %}{{ m['content'] }} {% endfor %}{% if add_generation_prompt %}answer:{% endif %}"
    chat = {"messages": MESSAGES[1:], "chat_template": template, "add_generation_prompt": True,
            "chat_template_kwargs": {"add_generation_prompt": False}}
    (status, chat_body), plain_body = chat_and_plain(chat_encoder, chat, "What is TKE? answer:",
                                                     ServerConfig("minilm-chat", trust_request_chat_template=True))
    assert status == 200
    assert np.abs(np.array(chat_body["data"][0]["embedding"]) - plain_body["data"][0]["embedding"]).max() < 1e-6


def test_left_truncation_keeps_the_special_tokens_around_the_end(encoder):
    full = encoder.tokenize(["one two three four five"])[0]
    cut = encoder.tokenize(["one two three four five"], max_length=4, truncation_side="left")[0]
    assert cut == [full[0]] + full[-3:-1] + [full[-1]]  # [CLS] four five [SEP]
    plain = encoder.tokenize(["one two three"], add_special_tokens=False, max_length=2, truncation_side="left")[0]
    assert plain == full[2:4]


def test_encoder_leaves_normalising_to_the_request(encoder):
    raw = encoder.encode_ids(encoder.tokenize(["some text"]))
    assert encoder.facts.normalize and abs(np.linalg.norm(raw) - 1) > 1e-3
    assert np.abs(encoder.encode_texts(["some text"]) - encoder.model.encode(["some text"])).max() < 1e-5


def test_a_checkpoint_runs_before_each_chunk_and_layer_and_can_stop_the_encoding(encoder):
    """The batcher pauses or stops a step between sub-steps: the checkpoint runs before each chunk (8 rows here)
    and each of the model's transformer layers (config.json's num_hidden_layers), and what it raises stops it."""
    layers = encoder.model[0].auto_model.config.num_hidden_layers
    ids = encoder.tokenize([f"text number {i}" for i in range(10)])
    calls = []
    plain = encoder.encode_ids(ids)
    assert np.array_equal(encoder.encode_ids(ids, checkpoint=lambda: calls.append(1)), plain)
    assert len(calls) == 2 * (1 + layers)  # 10 rows of equal length: chunks of 8 and 2

    class Stop(Exception):
        pass

    def stop_at_third_layer():
        calls.append(1)
        if len(calls) == 4:
            raise Stop()

    calls.clear()
    with pytest.raises(Stop):
        encoder.encode_ids(ids, checkpoint=stop_at_third_layer)
    assert len(calls) == 4
    assert np.array_equal(encoder.encode_ids(ids), plain)  # a later encoding is not affected
