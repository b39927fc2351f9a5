"""Label in the notebook: queries typed into a box, and relevance judged chunk by chunk.

:class:`QueryBox` takes queries one per line. :class:`Labeler` shows, for each query without labels, the pooled
top-k of every system (:meth:`~tke_playbook.scorecard.corpusrun.CorpusScorecard.pool`: the union, shuffled, no
system named, so nobody can favour one), one chunk at a time with its source; **Relevant**, **Not relevant** or
**Skip**. Every judgement is written at once to a TREC qrels file (atomically), which is read back next time, so
labels are kept and reused; after each one the scorecard is scored again - nDCG@10, recall@10 and MRR@10 with
their 95 % intervals - with how many more judgements would halve the interval. Nothing is embedded again.

Both widgets are usable untouched (headless runs) and show a static HTML summary where no widget JavaScript runs.
"""

from __future__ import annotations

import html
import os
from collections.abc import Mapping
from pathlib import Path

import ipywidgets as w

from ..corpus.queries import queries_from_texts, read_qrels, write_qrels
from ..errors import InvalidSpecError
from ..scorecard.corpusrun import HEADLINE, CorpusScorecard

RELEVANT, NOT_RELEVANT = 1.0, 0.0
CHOICES = {"relevant": RELEVANT, "not relevant": NOT_RELEVANT, "yes": RELEVANT, "no": NOT_RELEVANT}


class QueryBox:
    """A text box for queries, one per line: :meth:`queries` gives ``{"q1": ..., "q2": ...}``."""

    def __init__(self, initial: str = ""):
        self.box = w.Textarea(value=initial, placeholder="one query per line", description="Queries",
                              layout=w.Layout(width="720px", height="140px"))

    def queries(self) -> dict[str, str]:
        found = queries_from_texts(self.box.value)
        if not found:
            raise InvalidSpecError("The query box is empty: type one query per line", field="queries", value="")
        return found

    def _repr_mimebundle_(self, **kwargs):
        bundle = self.box._repr_mimebundle_(**kwargs) or {}
        items = "".join(f"<li>{html.escape(t)}</li>" for t in queries_from_texts(self.box.value).values())
        return {**bundle, "text/html": f"<ul>{items}</ul>" if items else "<i>no queries yet</i>"}


class Labeler:
    """Judge the pooled chunks of ``result``'s queries; labels go to ``qrels_path`` as they are given."""

    def __init__(self, result: CorpusScorecard, qrels_path, *, k: int = 10, seed: int = 0):
        self.path = Path(os.fspath(qrels_path)).expanduser()
        self.labels: dict[str, dict[str, float]] = read_qrels(self.path) if self.path.is_file() else {}
        self.result = result.with_qrels(self._merged(result.qrels))
        self.todo = self.result.pool(k, seed=seed).to_dict("records")
        self.position = 0
        self._build()
        self._show()

    def _merged(self, given: Mapping) -> dict[str, dict[str, float]]:
        merged = {q: dict(j) for q, j in given.items()}
        for qid, judged in self.labels.items():
            merged.setdefault(qid, {}).update(judged)
        return merged

    # --- the widget ---------------------------------------------------------------------------------------------

    def _build(self) -> None:
        self.header = w.HTML()
        self.chunk = w.HTML(layout=w.Layout(width="860px", max_height="260px", overflow="auto",
                                            border="1px solid #ddd", padding="6px"))
        buttons = [w.Button(description=label, button_style=style, layout=w.Layout(width="140px"))
                   for label, style in (("Relevant", "success"), ("Not relevant", "danger"), ("Skip", ""))]
        buttons[0].on_click(lambda _: self.label("relevant"))
        buttons[1].on_click(lambda _: self.label("not relevant"))
        buttons[2].on_click(lambda _: self.skip())
        self.scores = w.HTML()
        self.widget = w.VBox([self.header, self.chunk, w.HBox(buttons), self.scores])

    @property
    def current(self) -> dict | None:
        return self.todo[self.position] if self.position < len(self.todo) else None

    def _show(self) -> None:
        item = self.current
        if item is None:
            self.header.value = f"<b>Done</b>: {self._count()} judgements saved to {html.escape(self.path.name)}"
            self.chunk.value = ""
        else:
            self.header.value = (f"<b>{self.position + 1} of {len(self.todo)}</b> &nbsp; query: "
                                 f"<b>{html.escape(item['query'])}</b> &nbsp; <small>({html.escape(item['chunk_id'])})"
                                 "</small>")
            self.chunk.value = f"<pre style='white-space:pre-wrap'>{html.escape(item.get('text', ''))}</pre>"
        self.scores.value = self.summary_html()

    def _count(self) -> int:
        return sum(len(j) for j in self.labels.values())

    # --- actions ------------------------------------------------------------------------------------------------

    def label(self, choice) -> None:
        """Judge the current chunk: ``"relevant"``/``"not relevant"`` (or a grade >= 0); saved at once."""
        item = self.current
        if item is None:
            return
        grade = CHOICES.get(choice) if isinstance(choice, str) else float(choice)
        if grade is None or grade < 0:
            raise InvalidSpecError(f"label {choice!r}: use 'relevant', 'not relevant' or a grade >= 0",
                                   field="label", value=choice)
        self.labels.setdefault(item["query_id"], {})[item["chunk_id"]] = grade
        write_qrels(self.path, self.labels)
        self.result = self.result.with_qrels(self._merged(self.result.qrels))
        self.position += 1
        self._show()

    def skip(self) -> None:
        """Leave the current chunk unlabelled (it comes back next time)."""
        if self.current is not None:
            self.position += 1
            self._show()

    def answer_from(self, oracle: Mapping[str, Mapping[str, float]], n: int) -> "Labeler":
        """Judge the next ``n`` chunks as ``oracle`` (qrels of chunks or documents) says - a stand-in for a person,
        to show the scores converging; chunks the oracle does not name count as not relevant."""
        doc_of = self.result.doc_of()
        for _ in range(n):
            item = self.current
            if item is None:
                break
            judged = oracle.get(item["query_id"], {})
            grade = judged.get(item["chunk_id"], judged.get(doc_of.get(item["chunk_id"], ""), NOT_RELEVANT))
            self.label(grade)
        return self

    # --- what it shows ------------------------------------------------------------------------------------------

    def table(self):
        columns = [c for m in HEADLINE for c in (m, f"{m} low", f"{m} high")] + ["judged queries"]
        return self.result.table()[columns]

    def summary_html(self) -> str:
        halve = self.result.labels_to_halve()
        if halve["more_judgements"] is None:
            note = "Label at least two queries with a relevant chunk to get intervals."
        else:
            note = (f"{halve['judged_queries']} judged queries: about {halve['more_judgements']} more judgements "
                    f"would halve the intervals ({halve['method']}).")
        return self.table().round(3).to_html(na_rep="") + f"<p>{html.escape(note)}</p>"

    def _repr_mimebundle_(self, **kwargs):
        bundle = self.widget._repr_mimebundle_(**kwargs) or {}
        return {**bundle, "text/html": self.header.value + self.scores.value}
