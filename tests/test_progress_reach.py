"""Every counting loop of the library draws through the one reporter (tke_playbook/reporting.py), never tqdm.

A reviewer of the executed notebooks found 05 and 07 saved with tqdm widgets frozen mid-way ("documents: 89%
32/36", "queries: 0% 0/22", "chunking: 0/?"; the text fallback "0%| | 0/22"), while 06's loops, which draw through
the reporter, left one summary line each ("closed loop: 4 levels, 180 requests in 0:04"). Issue 22 asks for one
reporter used by CLI and notebooks alike. So: no module of the package imports tqdm, and each loop that took
``progress=True`` draws its bar on the reporter it is given, closing it with its summary.
"""

from __future__ import annotations

import ast
import io
from pathlib import Path

import pytest

from corpus.conftest import HashingEmbedder
from tke_playbook.corpus import Chunker
from tke_playbook.corpus.loading import chunk_documents
from tke_playbook.corpus.sources import Document
from tke_playbook.corpus.vectors import VectorCache, embed_texts
from tke_playbook.embed.api import Reranked
from tke_playbook.reporting import Bar, PlainReporter, QuietReporter, progress_bar
from tke_playbook.scorecard.cache import CachedEmbedder
from tke_playbook.scorecard.pipelines import rerank_run

PACKAGE = Path(__file__).resolve().parents[1] / "tke_playbook"


def _tqdm_imports(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module or ""] if isinstance(node, ast.ImportFrom) else []
        found += [name for name in names if name == "tqdm" or name.startswith("tqdm.")]
    return found


def test_the_scan_sees_each_way_of_importing_tqdm():
    assert _tqdm_imports("from tqdm.auto import tqdm") == ["tqdm.auto"]
    assert _tqdm_imports("import tqdm") == ["tqdm"] and _tqdm_imports("import tqdm.notebook as t") == ["tqdm.notebook"]
    assert _tqdm_imports("def f():\n    from tqdm import tqdm\n") == ["tqdm"]
    assert _tqdm_imports("import tqdmx\nfrom .tqdm_like import bar") == []


def test_no_module_of_the_package_draws_with_tqdm():
    offenders = {str(path.relative_to(PACKAGE.parent)): found for path in sorted(PACKAGE.rglob("*.py"))
                 if (found := _tqdm_imports(path.read_text(encoding="utf-8")))}
    assert not offenders, f"draw through tke_playbook.reporting.progress_bar instead: {offenders}"


class _Surface:
    """Records what a bar draws; ``finals`` holds the lines it closed with."""

    shows_lines = False

    def __init__(self):
        self.draws, self.finals = [], []

    def draw(self, text: str, fraction, final: bool = False) -> None:
        (self.finals if final else self.draws).append(text)


class RecordingReporter:
    def __init__(self):
        self.bars: list[Bar] = []

    def event(self, event) -> None:
        pass

    def bar(self, total=None, desc="", unit="it") -> Bar:
        self.bars.append(Bar(_Surface(), total, desc, unit))
        return self.bars[-1]


def _closed(reporter: RecordingReporter, desc: str) -> Bar:
    bars = [b for b in reporter.bars if desc in b.desc]
    assert len(bars) == 1, [b.desc for b in reporter.bars]
    bar = bars[0]
    assert bar.closed and bar.surface.finals, f"{desc}: not closed with a summary line"
    return bar


class _Reranker:
    def rerank(self, query, documents):
        return Reranked(query, tuple(documents), list(range(len(documents)))[::-1], [1.0] * len(documents))


@pytest.fixture
def reporter():
    return RecordingReporter()


def test_chunking_draws_on_the_reporter_it_is_given(reporter):
    docs = [Document(f"d{i}", f"d{i}.txt", "text", f"document number {i} " * 20) for i in range(5)]
    chunks, rows = chunk_documents(docs, Chunker.for_model(chunk_tokens=32), progress=reporter)
    assert len(rows) == 5 and _closed(reporter, "chunking").n == 5


def test_embedding_a_corpus_draws_on_the_reporter_it_is_given(reporter, tmp_path):
    texts = [f"text {i} about clusters" for i in range(10)]
    _, stats = embed_texts(HashingEmbedder(), texts, VectorCache(tmp_path, "hashing|1"), batch_size=4,
                           progress=reporter, desc="chunks")
    assert stats.embedded == 10 and _closed(reporter, "chunks").n == 10


def test_the_scorecards_cache_draws_on_the_reporter_it_is_given(reporter, tmp_path):
    cached = CachedEmbedder(HashingEmbedder(), "demo", cache_dir=tmp_path, batch_size=3, progress=reporter)
    assert cached.embed_documents([f"doc {i}" for i in range(7)]).shape == (7, 64)
    assert _closed(reporter, "documents").n == 7


def test_reranking_draws_on_the_reporter_it_is_given(reporter):
    run = {"q1": {"a": 2.0, "b": 1.0}, "q2": {"a": 1.0, "b": 2.0}}
    out = rerank_run(run, {"a": "A", "b": "B"}, {"q1": "one", "q2": "two"}, _Reranker(), depth=2,
                     progress=reporter)
    assert set(out) == {"q1", "q2"} and _closed(reporter, "reranking").n == 2


def test_progress_true_is_the_default_reporter_and_false_shows_nothing(capsys):
    with progress_bar(True, 10, "counting", "it") as bar:
        bar.update(10)
    assert "counting" in capsys.readouterr().err  # outside a kernel: plain lines on stderr
    with progress_bar(False, 10, "silent") as bar:
        bar.update(10)
    assert capsys.readouterr() == ("", "")
    assert isinstance(progress_bar(None).surface, type(QuietReporter().bar().surface))
    out = io.StringIO()
    with progress_bar(PlainReporter(err=out), 2, "given") as bar:
        bar.update(2)
    assert out.getvalue().splitlines()[-1].startswith("given")
