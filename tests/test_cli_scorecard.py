"""``tke-playbook scorecard`` end to end. The acceptance check: given a folder and qrels nobody in the project
wrote - derived here, mechanically, from the Python documentation's topic texts (each heading, a line underlined by
a rule of its length, is a query; the topics carrying that heading are its relevant documents) - the CLI's nDCG@10
equals sentence-transformers + ``pytrec_eval`` on the same chunks (documents scored by their best chunk) within
0.005."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # fake_embedding_server (importlib mode)

from tke_playbook.cli.commands import main  # noqa: E402

TOPICS = ("if", "while", "for", "try", "with", "async", "break", "continue", "else", "return")


def _headings(text: str) -> list[str]:
    """Lines underlined (by '*', '=' or '-') with a rule of their own length: the topic's title and sections."""
    lines = [line.rstrip() for line in text.splitlines()]
    return [a.strip() for a, b in zip(lines, lines[1:])
            if a.strip() and len(set(b.strip())) == 1 and b.strip()[0] in "*=-" and len(b.strip()) == len(a.strip())]


def _independent_set(root: Path) -> tuple[Path, Path, Path, dict]:
    from pydoc_data.topics import topics

    docs = root / "docs"
    docs.mkdir()
    relevant: dict[str, set[str]] = {}
    for name in TOPICS:
        (docs / f"{name}.txt").write_text(topics[name], encoding="utf-8")
        for title in _headings(topics[name]):
            relevant.setdefault(title, set()).add(f"{name}.txt")
    qrels = {f"t{i}": {doc: 1 for doc in sorted(found)} for i, found in enumerate(relevant.values())}
    (root / "queries.tsv").write_text("".join(f"t{i}\t{title}\n" for i, title in enumerate(relevant)),
                                      encoding="utf-8")
    (root / "qrels.txt").write_text("".join(f"{q} 0 {d} 1\n" for q, j in qrels.items() for d in j), encoding="utf-8")
    return docs, root / "queries.tsv", root / "qrels.txt", qrels


def _reference_ndcg(docs: Path, queries_file: Path, qrels: dict) -> float:
    import pytrec_eval
    from sentence_transformers import SentenceTransformer

    from tke_playbook.corpus import load_corpus
    from tke_playbook.hostenv import offline_model_dir

    corpus = load_corpus(docs, progress=False)  # the same chunks the CLI made
    model = SentenceTransformer(str(offline_model_dir()), device="cpu")
    chunk_vectors = model.encode(corpus.texts, normalize_embeddings=True, batch_size=32)
    lines = [line.split("\t") for line in queries_file.read_text(encoding="utf-8").splitlines()]
    query_vectors = model.encode([t for _, t in lines], normalize_embeddings=True)
    scores = query_vectors @ chunk_vectors.T
    run = {}
    for (qid, _), row in zip(lines, scores):
        best: dict[str, float] = {}
        for doc, score in zip(corpus.chunks["doc_id"], row):
            best[doc] = max(float(score), best.get(doc, -1.0))
        run[qid] = best
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut"})
    return float(np.mean([m["ndcg_cut_10"] for m in evaluator.evaluate(run).values()]))


def test_cli_ndcg_matches_sentence_transformers_and_pytrec_eval(tmp_path, monkeypatch):
    monkeypatch.setenv("TKE_PLAYBOOK_HOME", str(tmp_path / "home"))
    docs, queries, qrels_file, qrels = _independent_set(tmp_path)
    out = tmp_path / "scores.json"
    code = main(["scorecard", "--docs", str(docs), "--queries", str(queries), "--qrels", str(qrels_file),
                 "--system", "local", "--json", str(out), "--quiet", "--cache-dir", str(tmp_path / "cache")])
    assert code == 0
    scores = {row["system"]: row for row in json.loads(out.read_text())["systems"]}
    ours = scores["all-MiniLM-L6-v2"]["ndcg@10"]
    reference = _reference_ndcg(docs, queries, qrels)
    print(f"ours {ours:.4f} reference {reference:.4f}")
    assert abs(ours - reference) <= 0.005 and 0.2 < reference < 0.99  # a real ranking, not all-perfect


def test_an_endpoint_with_a_key_the_report_never_shows(tmp_path, monkeypatch, capsys):
    from fake_embedding_server import FakeEmbeddingServer

    monkeypatch.setenv("TKE_PLAYBOOK_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("VLLM_API_KEY", "sk-test-secret-key-123")
    docs, queries, qrels_file, _ = _independent_set(tmp_path)
    with FakeEmbeddingServer(api_key="sk-test-secret-key-123", model="sentence-transformers/all-MiniLM-L6-v2",
                             max_tokens=100_000, dim=384) as server:
        code = main(["scorecard", "--docs", str(docs), "--queries", str(queries), "--system", server.url,
                     "--system", "bm25", "--system", "hybrid", "--html", str(tmp_path / "r.html"), "--json",
                     str(tmp_path / "s.json"), "--quiet", "--cache-dir", str(tmp_path / "cache")])
    assert code == 0, capsys.readouterr().err
    for name in ("r.html", "s.json"):
        text = (tmp_path / name).read_text()
        assert "sk-test-secret-key-123" not in text and str(tmp_path) not in text and str(Path.home()) not in text
    assert (tmp_path / "r.html").read_text().count("data:image/png;base64,") >= 3

    assert "no labels" in capsys.readouterr().out


def test_parity_that_cannot_run_is_reported_not_fatal(monkeypatch):
    """Another model behind the offline model's name (other dimensions): the report says so and goes on."""
    from tke_playbook.cli import scorecard as cli
    from tke_playbook.errors import PlaybookError

    def refuse(client, reference):
        raise PlaybookError("returns 8-dim vectors, the reference 384-dim: these are not the same model")

    monkeypatch.setattr("tke_playbook.scorecard.parity.check_parity", refuse)
    monkeypatch.setattr("tke_playbook.scorecard.parity.ReferenceEncoder", lambda *a: None)
    monkeypatch.setattr("tke_playbook.embed.http.EmbeddingClient.models", lambda self: [
        "sentence-transformers/all-MiniLM-L6-v2"])
    notes = cli._parity(["http://127.0.0.1:9", "bm25"], None)
    assert len(notes) == 1 and not notes[0].passed and "parity not checked - returns 8-dim" in notes[0].sentence()


@pytest.mark.parametrize("args, message", [
    (["--docs", "/nonexistent/folder"], "does not exist"),
    (["--system", "bm52"], "Did you mean 'bm25'"),
    (["--queries", "/nonexistent/q.tsv"], "query file"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.setenv("TKE_PLAYBOOK_HOME", str(tmp_path / "home"))
    docs, queries, _, _ = _independent_set(tmp_path)
    base = {"--docs": str(docs), "--queries": str(queries), "--system": "bm25"}
    base.update(dict(zip(args[::2], args[1::2])))
    code = main(["scorecard", *[x for kv in base.items() for x in kv], "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1
