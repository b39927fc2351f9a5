"""The retrieval stack on a cluster (issue 24, item 3): rerankers, bge-m3's sparse and multi-vector modes and
Matryoshka embedders as serving choices, and the vLLM flags each gets for its release.

What each line must carry is what vLLM documents, written out by hand: Qwen3-Reranker's ``--hf-overrides``
(vLLM's qwen3_reranker example: Qwen3ForSequenceClassification, classifier_from_token ["no", "yes"],
is_original_qwen3_reranker, loaded with runner "pooling"); bge-m3's modes (vLLM's pooling docs, "BAAI/bge-m3":
``--runner pooling --hf-overrides '{"architectures": ["BgeM3EmbeddingModel"]}'`` with the pooler task
``token_classify`` for lexical weights, ``token_embed`` for ColBERT vectors); Matryoshka (vLLM accepts
``dimensions`` only for a model whose config, or ``--hf-overrides '{"is_matryoshka": true}'``, says so; Qwen3-Embedding's
config does not, its model card says it is MRL-trained). Which releases take these flags: the parsers of 0.33.0
and 0.34.0 (tests/test_vllm_parsers.py); older releases were not checked with them, so the toolkit refuses there."""

from __future__ import annotations

import json

import pytest

from tke_playbook.errors import InvalidSpecError, UnknownNameError
from tke_playbook.specs.catalog import PoolingMode, get_model
from tke_playbook.specs.fit import check_fit
from tke_playbook.specs.serving import ServingChoices, ServingSpec, resolve
from tke_playbook.specs.vllm_args import build_vllm_args

QWEN3_RERANKER = {"architectures": ["Qwen3ForSequenceClassification"], "classifier_from_token": ["no", "yes"],
                  "is_original_qwen3_reranker": True}
BGE_M3_MODEL = {"architectures": ["BgeM3EmbeddingModel"]}


def _argv(**choices) -> list[str]:
    return build_vllm_args(resolve(ServingChoices(**{"max_model_len": 2048, **choices})))


def _value(argv: list[str], flag: str):
    assert argv.count(flag) == 1, (flag, argv)
    return argv[argv.index(flag) + 1]


@pytest.mark.parametrize("version", ["0.33.0", "0.34.0"])
def test_qwen3_reranker_gets_the_overrides_vllm_documents(version):
    argv = _argv(model="Qwen/Qwen3-Reranker-0.6B", vllm_version=version)
    assert json.loads(_value(argv, "--hf-overrides")) == QWEN3_RERANKER
    assert _value(argv, "--runner") == "pooling"


@pytest.mark.parametrize("version", ["0.10.1", "0.33.0", "0.34.0"])
def test_bge_reranker_is_served_as_it_is(version):
    # XLMRobertaForSequenceClassification is a cross-encoder to vLLM: no conversion, no overrides
    argv = _argv(model="BAAI/bge-reranker-v2-m3", vllm_version=version)
    assert not {"--hf-overrides", "--runner", "--task", "--convert"} & set(argv)
    assert "--max-num-batched-tokens" in argv  # an encoder, as bge-m3


def test_a_reranker_forced_into_pooling_before_0_10_1_is_scored_not_embedded():
    # vLLM 0.9's pooling tasks: a cross-encoder is the "score" task; "embed" would serve vectors
    argv = _argv(model="BAAI/bge-reranker-v2-m3", vllm_version="0.9.2", embedding_flag=True)
    assert _value(argv, "--task") == "score"


@pytest.mark.parametrize("mode, task", [("sparse", "token_classify"), ("multi-vector", "token_embed")])
@pytest.mark.parametrize("version", ["0.33.0", "0.34.0"])
def test_bge_m3_modes_load_bge_m3_embedding_model_with_the_pooler_task(mode, task, version):
    argv = _argv(model="BAAI/bge-m3", pooling_mode=mode, vllm_version=version)
    assert _value(argv, "--runner") == "pooling"
    assert json.loads(_value(argv, "--hf-overrides")) == BGE_M3_MODEL
    assert json.loads(_value(argv, "--pooler-config")) == {"task": task}


def test_bge_m3_dense_stays_as_it_was():
    argv = _argv(model="BAAI/bge-m3", vllm_version="0.34.0")
    assert not {"--hf-overrides", "--pooler-config", "--runner"} & set(argv)
    assert resolve(ServingChoices(model="BAAI/bge-m3")).pooling_mode is PoolingMode.DENSE


@pytest.mark.parametrize("model", ["Qwen/Qwen3-Embedding-0.6B", "Qwen/Qwen3-Embedding-4B", "Qwen/Qwen3-Embedding-8B"])
def test_matryoshka_embedders_get_dimensions_on_checked_releases(model):
    argv = _argv(model=model, vllm_version="0.34.0")
    assert json.loads(_value(argv, "--hf-overrides")) == {"is_matryoshka": True}
    assert _value(argv, "--runner") == "pooling"
    off = _argv(model=model, vllm_version="0.34.0", matryoshka=False)
    assert "--hf-overrides" not in off


def test_matryoshka_is_left_out_where_the_release_was_not_checked():
    spec = resolve(ServingChoices(model="Qwen/Qwen3-Embedding-0.6B", max_model_len=2048))  # the tutorial's 0.10.1
    assert spec.vllm_version == "0.10.1" and spec.matryoshka is False
    assert "--hf-overrides" not in build_vllm_args(spec)


@pytest.mark.parametrize("choices, message", [
    ({"model": "BAAI/bge-large-en-v1.5", "pooling_mode": "sparse", "vllm_version": "0.34.0"},
     "serves only dense vectors.*BAAI/bge-m3"),
    ({"model": "BAAI/bge-m3", "pooling_mode": "sparse"}, "vLLM 0.10.1.*0.33.0 or later"),
    ({"model": "Qwen/Qwen3-Reranker-0.6B"}, "vLLM 0.10.1.*0.33.0 or later"),
    ({"model": "Qwen/Qwen3-Embedding-4B", "matryoshka": True}, "vLLM 0.10.1.*0.33.0 or later"),
    ({"model": "BAAI/bge-m3", "matryoshka": True, "vllm_version": "0.34.0"}, "not Matryoshka-trained"),
    ({"model": "BAAI/bge-m3", "pooling_mode": "sparse", "vllm_version": "0.34.0",
      "extra_args": ("--pooler-config '{\"pooling_type\":\"CLS\"}'",)}, "--pooler-config"),
    ({"model": "Qwen/Qwen3-Reranker-0.6B", "vllm_version": "0.34.0",
      "extra_args": ("--hf-overrides '{\"architectures\":[\"X\"]}'",)}, "--hf-overrides"),
])
def test_retrieval_choices_that_cannot_start_are_refused_in_one_line(choices, message):
    with pytest.raises(InvalidSpecError, match=message) as caught:
        resolve(ServingChoices(max_model_len=512, **choices))
    assert "\n" not in str(caught.value)


def test_an_unknown_pooling_mode_lists_the_modes():
    with pytest.raises(UnknownNameError, match="Known: dense, multi-vector, sparse"):
        ServingChoices(model="BAAI/bge-m3", pooling_mode="sideways")


def test_the_modes_survive_plain_json_and_replace():
    spec = resolve(ServingChoices(model="BAAI/bge-m3", pooling_mode="multi-vector", vllm_version="0.34.0",
                                  max_model_len=2048))
    again = ServingSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec and again.pooling_mode is PoolingMode.MULTI_VECTOR
    assert spec.replace(pooling_mode="dense").pooling_mode is PoolingMode.DENSE
    qwen = resolve(ServingChoices(model="Qwen/Qwen3-Embedding-4B", vllm_version="0.10.1", max_model_len=2048))
    assert qwen.matryoshka is False and qwen.replace(vllm_version="0.34.0").matryoshka is True  # derived again


# --- the GPU fit verdict covers rerankers: facts.md section 3 - weights are params × 2 bytes (bf16/fp16); encoders
# (XLM-R: bge-reranker-v2-m3) get no KV cache, decoders (Qwen3) a paged one of 2 × layers × KV heads × head size ×
# 2 bytes per token


def test_the_fit_verdict_of_a_cross_encoder_reranker():
    info = get_model("BAAI/bge-reranker-v2-m3")
    verdict = check_fit(info, "T4", max_model_len=1024)
    assert verdict.fits and verdict.weights_bytes == info.params * 2 and verdict.kv_cache_bytes == 0
    assert verdict.activation_bytes > 0 and verdict.kind == "reranker"
    rows = {row["item"]: row["note"] for row in verdict.as_rows()}
    assert "cross-encoder" in rows["weights"] and "query-document pairs" in rows["activations"]
    assert any("query and the document together" in note for note in verdict.notes)
    assert "(cross-encoder reranker)" in verdict.summary()


def test_the_fit_verdict_of_a_decoder_reranker_counts_its_kv_cache():
    info = get_model("Qwen/Qwen3-Reranker-0.6B")
    verdict = check_fit(info, "L20", max_model_len=8192)
    assert verdict.kv_cache_bytes == 2 * 28 * 8 * 128 * 2 * 8192 and verdict.weights_bytes == info.params * 2
    assert verdict.fits and verdict.kind == "reranker"


def test_an_embedder_and_a_reranker_side_by_side_each_get_a_verdict():
    embedder, reranker = check_fit("BAAI/bge-m3", "T4", 8192), check_fit("BAAI/bge-reranker-v2-m3", "T4", 8192)
    assert embedder.kind == "embedding" and reranker.kind == "reranker"
    assert embedder.fits and reranker.fits
