"""The in-process offline embedder (all-MiniLM-L6-v2 on CPU): shapes, normalisation, prompts, bad folders."""

import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest

from tke_playbook.embed.local import LocalEmbedder
from tke_playbook.errors import InvalidSpecError, PlaybookError


@pytest.fixture(scope="module")
def embedder():
    return LocalEmbedder()


def test_embeds_normalised_float32_rows(embedder):
    vectors = embedder.embed_documents(["Kubernetes schedules pods onto nodes.", "Braise the pork slowly."])
    assert vectors.shape == (2, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert embedder.name == "all-MiniLM-L6-v2" and embedder.dim == 384


def test_queries_land_near_their_topic(embedder):
    docs = embedder.embed_documents(["Quicksort partitions a list around a pivot.",
                                     "Steam the fish for eight minutes."])
    query = embedder.embed_queries(["how does quicksort work"])
    scores = (query @ docs.T)[0]
    assert scores[0] > scores[1]


def test_empty_input_gives_an_empty_matrix(embedder):
    assert embedder.embed_queries([]).shape == (0, 384)


def test_query_prompt_comes_from_the_catalog(embedder, monkeypatch):
    seen = []
    monkeypatch.setattr(embedder, "_encode", lambda texts: seen.extend(texts) or np.zeros((len(texts), 384)))
    monkeypatch.setattr(embedder, "model", dataclasses.replace(embedder.model, query_prompt="Q: {text}"))
    embedder.embed_queries(["hello"])
    embedder.embed_documents(["world"])
    assert seen == ["Q: hello", "world"]


def test_folder_without_a_model_is_refused(tmp_path):
    with pytest.raises(InvalidSpecError, match="not a model folder"):
        LocalEmbedder(tmp_path)


def test_broken_model_folder_fails_on_first_use(tmp_path):
    (tmp_path / "config.json").write_text("{not json", encoding="utf-8")
    embedder = LocalEmbedder(tmp_path)
    with pytest.raises(PlaybookError, match="Could not load the model"):
        embedder.embed_documents(["x"])


def test_non_string_texts_are_refused(embedder):
    with pytest.raises(InvalidSpecError, match=r"texts\[0\] is bytes"):
        embedder.embed_documents([b"raw bytes"])


def test_loading_the_model_draws_no_progress_bar_and_leaves_the_switch_as_it_was():
    """transformers draws a "Loading weights" tqdm bar while a model loads; in a notebook it is a widget the saved
    page keeps at "Loading weights: 0% 0/103" (05's parity cell showed two). The load is quiet, and transformers'
    own progress-bar switch is back on afterwards for whatever the user loads next."""
    script = ("import sys\n"
              "from transformers.utils import logging as hf\n"
              "from tke_playbook.embed.local import load_sentence_transformer\n"
              "from tke_playbook.hostenv import offline_model_dir\n"
              "load_sentence_transformer(offline_model_dir())\n"
              "print('switch', hf.is_progress_bar_enabled())\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Loading weights" not in done.stderr + done.stdout, done.stderr[-500:]
    assert "switch True" in done.stdout
