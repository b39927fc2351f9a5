"""Chunking by the model's tokenizer: sizes from max_model_len, overlap, word edges, offsets."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer

from tke_playbook.corpus import Chunker, load_corpus, write_pydoc_corpus
from tke_playbook.corpus.chunking import windows
from tke_playbook.errors import InvalidSpecError
from tke_playbook.hostenv import offline_model_dir


def _reference_tokenizer() -> Tokenizer:
    """The model's tokenizer as sentence-transformers/vLLM would use it: special tokens added, no truncation."""
    tok = Tokenizer.from_file(str(offline_model_dir() / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    return tok


def test_the_packaged_model_gives_256_token_inputs_with_an_eighth_overlap():
    chunker = Chunker.for_model()
    settings = chunker.settings
    assert settings.max_model_len == 256  # all-MiniLM-L6-v2's max_seq_length
    assert settings.chunk_tokens == 256 - 2 and settings.overlap_tokens == 254 // 8  # [CLS] and [SEP] added


def test_every_chunk_of_the_pydoc_corpus_fits_the_model_when_tokenized_on_its_own(tmp_path):
    corpus = load_corpus(write_pydoc_corpus(tmp_path / "docs", limit=12), progress=False)
    tok = _reference_tokenizer()
    lengths = [len(e.ids) for e in tok.encode_batch(corpus.texts)]  # with the special tokens the server adds
    assert max(lengths) <= 256
    assert sum(1 for n in lengths if n > 200) > len(lengths) // 2  # chunks are full, not timid


def test_windows_overlap_and_end_on_word_edges():
    tok = _reference_tokenizer()
    text = " ".join(["internationalization"] * 40 + ["pod"] * 40)
    enc = tok.encode(text, add_special_tokens=False)
    spans = windows(enc.offsets, enc.word_ids, 30, 6)
    for start, end, count in spans:
        piece = text[start:end]
        assert not piece.startswith(" ") and (end == len(text) or text[end] == " ")  # whole words only
        assert count <= 30
    assert all(b[0] < a[1] for a, b in zip(spans, spans[1:]))  # consecutive chunks overlap
    assert spans[-1][1] == len(text)


def test_a_word_longer_than_a_chunk_is_cut_inside_it():
    tok = _reference_tokenizer()
    text = "zq" * 45  # one 90-character word: many word pieces (past 100 characters BERT gives [UNK])
    enc = tok.encode(text, add_special_tokens=False)
    spans = windows(enc.offsets, enc.word_ids, 20, 2)
    assert len(spans) > 1 and spans[-1][1] == len(text)


@pytest.mark.parametrize("options, message", [
    ({"chunk_tokens": 300}, "over what all-MiniLM-L6-v2 takes"),
    ({"overlap_tokens": 200}, "overlap_tokens=200"),
])
def test_impossible_sizes_are_refused(options, message):
    with pytest.raises(InvalidSpecError, match=message):
        Chunker.for_model(**options)


def test_a_served_max_model_len_sizes_the_chunks():
    assert Chunker.for_model(max_model_len=128).settings.chunk_tokens == 126
