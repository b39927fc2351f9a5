"""Served-vector parity: the local server passes against sentence-transformers in-process; deliberately wrong
embedders fail, each with its cause named (pooling, normalisation, prompt, truncation, batching)."""

import numpy as np
import pytest

from tke_playbook.embed.http import EmbeddingClient
from tke_playbook.embed.local import LocalEmbedder
from tke_playbook.errors import InvalidSpecError
from tke_playbook.hostenv import offline_model_dir
from tke_playbook.scorecard import Cause, ReferenceEncoder, check_parity, probe_set
from tke_playbook.scorecard.parity import LONG_PROBE

BGE = "BAAI/bge-small-en-v1.5"  # a catalog model with a query prompt, played by MiniLM's weights
SHORT = [t for t in probe_set(10) if t != LONG_PROBE]  # 9 probes, no padding to 256 tokens: quick on a CPU


def test_the_local_server_serves_the_reference_vectors(local_server, reference):
    with EmbeddingClient(local_server.url) as client:
        report = check_parity(client, reference)
    assert report.passed and report.cause is None, report.sentence()
    assert report.min_cos >= 0.999
    np.testing.assert_allclose(report.per_probe["served norm"], 1.0, atol=1e-5)
    # vLLM's behaviour without truncate_prompt_tokens: an over-long probe is refused (400), so it is left out
    assert "refuses them instead of truncating" in report.extra["note"] and len(report.per_probe) == 31


def test_cls_pooling_is_caught_and_named(reference):
    report = check_parity(LocalEmbedder(pooling="cls"), reference, probes=SHORT)
    assert not report.passed and report.cause is Cause.POOLING
    assert "match CLS pooling" in report.explanation and "MEAN" in report.explanation
    assert "likely cause: pooling" in report.sentence()
    shown = report.table().to_string()
    assert "e-0" not in shown and "e+0" not in shown  # issue 20: values read as decimals, not 9.999999e-01


def test_missing_normalisation_is_caught_and_named(reference):
    report = check_parity(LocalEmbedder(normalize=False), reference, probes=SHORT)
    assert report.table().loc["cosine per probe", "passed"]  # directions are right
    assert report.cause is Cause.NORMALISATION and not report.table().loc["same norm", "passed"]


class _NoQueryPrompt(LocalEmbedder):
    def embed_queries(self, texts, task=None):
        return self.embed_documents(texts)  # the catalog's query prompt is never applied


def test_a_missing_query_prompt_is_caught_and_named():
    reference = ReferenceEncoder(offline_model_dir(), BGE)
    assert check_parity(LocalEmbedder(model=BGE), reference, probes=SHORT).passed  # prompt applied: fine
    report = check_parity(_NoQueryPrompt(model=BGE), reference, probes=SHORT)
    assert report.cause is Cause.PROMPT and "WITHOUT the catalog's query prompt" in report.explanation


class _CutsLongTexts(LocalEmbedder):
    def embed_documents(self, texts):
        return super().embed_documents([t[:600] for t in texts])


def test_different_truncation_is_caught_and_named(reference):
    assert len(LONG_PROBE) > 600 and all(len(t) <= 600 for t in probe_set() if t != LONG_PROBE)
    report = check_parity(_CutsLongTexts(), reference, probes=probe_set(8))
    assert report.cause is Cause.TRUNCATION and "longer than 256 tokens" in report.explanation


class _BatchDependent(LocalEmbedder):
    def embed_documents(self, texts):
        vectors = super().embed_documents(texts)
        if len(texts) > 1:  # results move with the batch size (vllm#16815)
            vectors[:, 0] += 0.03
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors


def test_batch_dependent_results_are_caught_and_named(reference):
    report = check_parity(_BatchDependent(), reference, probes=SHORT)
    assert report.table().loc["cosine per probe", "passed"]
    assert report.cause is Cause.BATCH and not report.table().loc["batch 1 = batch 32", "passed"]


def test_unknown_model_and_bad_pooling_are_refused(reference):
    class Anonymous:
        name = "who-knows"

    with pytest.raises(InvalidSpecError, match="pass model="):
        check_parity(Anonymous(), object())
    with pytest.raises(InvalidSpecError, match="pooling="):
        LocalEmbedder(pooling="max")


def test_counting_the_tokens_of_a_text_over_the_limit_writes_nothing_to_stderr(reference, capfd):
    """05's Run All must not write to stderr: transformers warns once per tokenizer ("Token indices sequence
    length is longer than the specified maximum ...") when a text over model_max_length is tokenized untruncated."""
    tokenizer = reference._load().tokenizer
    tokenizer.deprecation_warnings.clear()  # the warning is shown once per tokenizer: make it due again
    long_text = "the quick brown fox jumps over the lazy dog " * 100
    capfd.readouterr()
    counts = reference.token_counts([long_text, "short"])
    assert counts[0] > tokenizer.model_max_length and counts[1] < 10  # untruncated counts
    assert "Token indices" not in capfd.readouterr().err
