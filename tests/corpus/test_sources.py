"""Reading documents: every supported kind, and bad input skipped with one line each while the rest loads."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tke_playbook.corpus import ReadOptions, load_corpus
from tke_playbook.errors import InvalidSpecError


def _reasons(corpus) -> dict[str, str]:
    return dict(zip(corpus.skipped["source"], corpus.skipped["reason"]))


def _pdf(path, text: str | None) -> None:
    """A one-page PDF written with pypdf (with text when given: a content stream drawing it)."""
    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    writer = PdfWriter()
    page = writer.add_blank_page(width=300, height=200)
    if text is not None:
        font = DictionaryObject({NameObject("/Type"): NameObject("/Font"), NameObject("/Subtype"): NameObject("/Type1"),
                                 NameObject("/BaseFont"): NameObject("/Helvetica")})
        page[NameObject("/Resources")] = DictionaryObject({NameObject("/Font"): DictionaryObject(
            {NameObject("/F1"): writer._add_object(font)})})
        stream = DecodedStreamObject()
        stream.set_data(f"BT /F1 12 Tf 20 100 Td ({text}) Tj ET".encode())
        page[NameObject("/Contents")] = writer._add_object(stream)
    with open(path, "wb") as fh:
        writer.write(fh)


def test_a_folder_of_every_kind_loads_and_bad_files_are_skipped_with_a_reason(tmp_path):
    docs = tmp_path / "docs"
    (docs / "guide").mkdir(parents=True)
    (docs / "a.txt").write_text("Pods are scheduled onto nodes by the scheduler.", encoding="utf-8")
    (docs / "guide" / "b.md").write_text("# Volumes\n\nA PersistentVolumeClaim asks for storage.", encoding="utf-8")
    (docs / "c.html").write_text("<html><head><title>Services</title><script>var x=1;</script></head><body><p>A "
                                 "Service routes traffic.</p></body></html>", encoding="utf-8")
    _pdf(docs / "d.pdf", "GPUs are requested as nvidia.com/gpu")
    _pdf(docs / "scan.pdf", None)
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    (docs / "junk.txt").write_bytes(b"\x00\x01\x02binary" * 100)
    (docs / "latin1.txt").write_bytes(("caf\xe9 " * 200).encode("latin-1"))
    (docs / "empty.txt").write_bytes(b"")
    (docs / "image.png").write_bytes(b"\x89PNG")
    (docs / ".hidden.txt").write_text("never read", encoding="utf-8")
    corpus = load_corpus(docs, progress=False)
    assert sorted(corpus.documents["doc_id"]) == ["a.txt", "c.html", "d.pdf", "guide/b.md"]
    html = corpus.chunks[corpus.chunks["doc_id"] == "c.html"]["text"].iloc[0]
    assert "Service routes traffic" in html and "var x" not in html
    assert corpus.documents.set_index("doc_id").loc["c.html", "title"] == "Services"
    assert "nvidia.com/gpu" in corpus.chunks[corpus.chunks["doc_id"] == "d.pdf"]["text"].iloc[0]
    reasons = _reasons(corpus)
    assert set(reasons) == {"scan.pdf", "broken.pdf", "junk.txt", "latin1.txt", "empty.txt", "image.png"}
    assert "OCR" in reasons["scan.pdf"] and "pypdf cannot read it" in reasons["broken.pdf"]
    assert "binary" in reasons["junk.txt"] and "UTF-8" in reasons["latin1.txt"]
    assert "unsupported file type '.png'" in reasons["image.png"] and "empty" in reasons["empty.txt"]
    assert all("\n" not in r for r in reasons.values())


def test_chunks_keep_their_source_and_character_offsets(tmp_path):
    text = " ".join(f"word{i}" for i in range(2000))
    (tmp_path / "long.txt").write_text(text, encoding="utf-8")
    corpus = load_corpus(tmp_path, progress=False)
    assert len(corpus) > 3
    for row in corpus.chunks.itertuples():
        assert text[row.start:row.end] == row.text and row.source == "long.txt"
        assert row.tokens <= corpus.settings.chunk_tokens
    assert corpus.chunks["chunk_id"].tolist() == [f"long.txt#{i}" for i in range(len(corpus))]


def test_jsonl_with_bad_lines_duplicates_and_an_over_long_line_streams_past_them(tmp_path):
    path = tmp_path / "corpus.jsonl"
    limit = 4096
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(json.dumps({"_id": "d1", "title": "One", "text": "first document"}) + "\n")
        fh.write("{not json\n")
        fh.write(json.dumps({"_id": "d1", "text": "a second d1"}) + "\n")
        fh.write(json.dumps({"_id": "big", "text": "x " * (5 * limit)}) + "\n")  # over the limit: streamed past
        fh.write(json.dumps(["a", "list"]) + "\n")
        fh.write(json.dumps({"_id": "d3", "text": 7}) + "\n")
        fh.write(json.dumps({"_id": "d4", "text": "last document"}))  # no final newline
    corpus = load_corpus(path, options=ReadOptions(max_doc_bytes=limit), progress=False)
    assert corpus.documents["doc_id"].tolist() == ["d1", "d4"]
    reasons = _reasons(corpus)
    assert "not valid JSON" in reasons["corpus.jsonl:2"]
    assert "duplicate id 'd1'" in reasons["corpus.jsonl:3"] and "corpus.jsonl:1" in reasons["corpus.jsonl:3"]
    assert "40.0 KiB is over the 4.0 KiB limit for one document" in reasons["corpus.jsonl:4"]
    assert "not an object" in reasons["corpus.jsonl:5"] and "not text" in reasons["corpus.jsonl:6"]


def test_a_huge_file_is_skipped_from_its_size_without_reading_it(tmp_path, monkeypatch):
    (tmp_path / "ok.txt").write_text("fine", encoding="utf-8")
    with open(tmp_path / "huge.txt", "wb") as fh:  # sparse: 3 GiB on paper, nothing on disk
        fh.truncate(3 * 2 ** 30)
    opened = []
    real_open = open

    def spy(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", spy)
    corpus = load_corpus(tmp_path, progress=False)
    assert corpus.documents["doc_id"].tolist() == ["ok.txt"]
    assert "3.0 GiB is over the 32.0 MiB limit" in _reasons(corpus)["huge.txt"]
    assert not any(p.endswith("huge.txt") for p in opened)


def test_csv_tsv_and_parquet_with_named_columns(tmp_path):
    pd.DataFrame({"key": ["a", "b", "b"], "body": ["alpha text", "beta text", "again b"]}).to_csv(
        tmp_path / "c.csv", index=False)
    corpus = load_corpus(tmp_path / "c.csv", options=ReadOptions(id_field="key", text_field="body"), progress=False)
    assert corpus.documents["doc_id"].tolist() == ["a", "b"] and len(corpus.skipped) == 1
    pd.DataFrame({"doc_id": ["p1", "p2"], "contents": ["parquet one", ""]}).to_parquet(tmp_path / "t.parquet")
    corpus = load_corpus(tmp_path / "t.parquet", progress=False)
    assert corpus.documents["doc_id"].tolist() == ["p1"] and "empty text" in corpus.skipped["reason"].iloc[0]
    (tmp_path / "t.tsv").write_text("id\ttext\nt1\ttab separated\nt2\t" + "y" * 9000 + "\nt3\tafter it\n",
                                    encoding="utf-8")
    corpus = load_corpus(tmp_path / "t.tsv", options=ReadOptions(max_doc_bytes=4096), progress=False)
    assert corpus.documents["doc_id"].tolist() == ["t1", "t3"]  # the over-long line is streamed past, not read
    assert "8.8 KiB is over the 4.0 KiB limit" in _reasons(corpus)["t.tsv:3"]


def test_a_table_without_a_text_column_is_skipped_naming_the_columns(tmp_path):
    (tmp_path / "x.csv").write_text("id,words\n1,hello\n", encoding="utf-8")
    (tmp_path / "y.txt").write_text("still loads", encoding="utf-8")
    corpus = load_corpus(tmp_path, progress=False)
    assert corpus.documents["doc_id"].tolist() == ["y.txt"]
    assert "has no text column" in _reasons(corpus)["x.csv"] and "words" in _reasons(corpus)["x.csv"]


@pytest.mark.parametrize("make, message", [
    (lambda p: p.mkdir(), "is an empty folder"),
    (lambda p: (p.mkdir(), (p / "a.bin").write_bytes(b"x")), "has no usable document: 1 skipped"),
    (lambda p: None, "does not exist"),
])
def test_nothing_usable_is_one_clear_error(tmp_path, make, message):
    where = tmp_path / "docs"
    make(where)
    with pytest.raises(InvalidSpecError, match=message) as info:
        load_corpus(where, progress=False)
    assert "\n" not in str(info.value)
