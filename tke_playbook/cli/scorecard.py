"""``tke-playbook scorecard``: the whole flow on your own documents, from the command line.

    tke-playbook scorecard --docs ~/contracts --queries queries.tsv [--qrels qrels.txt] \\
        --system http://127.0.0.1:60000 --system bm25 --system hybrid --html report.html --json scores.json

Reads and chunks the documents (with the tokenizer of the first endpoint's served model, sized by its
``max_model_len``; otherwise the packaged all-MiniLM-L6-v2's), runs every system, scores them against the qrels
when given, and writes the self-contained HTML report and the JSON. An endpoint's API key comes from the
environment variable named by ``--api-key-env`` (default ``VLLM_API_KEY``), never the command line. Bad input
prints one line and exits 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from ..specs.prices import LOCAL_PRICE_NODE

API_KEY_ENV = "VLLM_API_KEY"


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "scorecard", help="compare systems on your own documents: quality, agreement, speed, cost; HTML + JSON",
        description="Load a folder (or JSONL/CSV/Parquet file) of documents, chunk it, run every system on your "
                    "queries, and write a shareable report.")
    parser.add_argument("--docs", required=True, help="folder of .txt/.md/.html/.pdf, or a .jsonl/.csv/.parquet file")
    parser.add_argument("--queries", required=True, help="queries: .jsonl, .tsv, .csv or .txt (one per line)")
    parser.add_argument("--qrels", help="relevance labels, TREC qrels ('query_id 0 doc_id grade')")
    parser.add_argument("--system", action="append", required=True, metavar="URL_OR_NAME",
                        help="an endpoint URL, 'local' (packaged MiniLM in-process), a model folder, 'bm25', 'tfidf' "
                             "or 'hybrid' (the first dense system + BM25); repeat for each system")
    parser.add_argument("--html", help="write the self-contained HTML report here")
    parser.add_argument("--json", help="write the scores as JSON here")
    parser.add_argument("--api-key-env", default=API_KEY_ENV, help=f"variable holding the endpoints' API key "
                                                                   f"(default {API_KEY_ENV})")
    parser.add_argument("--chunk-tokens", type=int, help="tokens per chunk (default: from the model's max_model_len)")
    parser.add_argument("--overlap", type=int, help="overlap in tokens (default: an eighth of the chunk)")
    parser.add_argument("--tokenizer", help="folder with the model's tokenizer.json (default: the served model's)")
    parser.add_argument("--id-field", help="id column of a table corpus (default: id, _id, doc_id, ...)")
    parser.add_argument("--text-field", help="text column of a table corpus (default: text, contents, ...)")
    parser.add_argument("--depth", type=int, default=100, help="chunks kept per query and system (default 100)")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight per endpoint (default 4)")
    parser.add_argument("--batch-size", type=int, default=64, help="texts per request (default 64)")
    parser.add_argument("--cache-dir", help="embedding cache (default: under the toolkit's state folder, "
                                            "$TKE_PLAYBOOK_HOME)")
    parser.add_argument("--node-type", default=LOCAL_PRICE_NODE,
                        help=f"node type to price embedding on (default {LOCAL_PRICE_NODE})")
    parser.add_argument("--parity", action="store_true",
                        help="check served vectors against sentence-transformers (endpoints serving the packaged model)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)
    return parser


def _inputs(args):
    from ..corpus.queries import read_qrels, read_queries
    from ..corpus.sources import ReadOptions, check_path

    check_path(args.docs)
    queries = read_queries(args.queries)
    qrels = read_qrels(args.qrels) if args.qrels else {}
    return queries, qrels, ReadOptions(id_field=args.id_field, text_field=args.text_field)


@dataclass(frozen=True)
class ParityNote:
    """A parity check that could not run to the end (the same three fields the report reads)."""

    embedder: str
    why: str
    passed: bool = False

    def sentence(self) -> str:
        return f"{self.embedder}: parity not checked - {self.why}"


def _serves(model, get_model, wanted: str) -> bool:
    from ..errors import UnknownNameError

    try:
        return bool(model) and get_model(model).hf_id == wanted
    except UnknownNameError:
        return False


def _parity(systems, api_key):
    from ..embed.http import EmbeddingClient
    from ..errors import PlaybookError
    from ..hostenv import offline_model_dir
    from ..scorecard.corpusrun import corpus_systems
    from ..scorecard.parity import ReferenceEncoder, check_parity
    from ..specs.catalog import OFFLINE_MODEL, get_model

    reports = []
    for system in corpus_systems([s for s in systems if s.startswith(("http://", "https://"))], api_key=api_key):
        client = system.embedder
        if isinstance(client, EmbeddingClient) and _serves(client.model, get_model, OFFLINE_MODEL):
            try:
                reports.append(check_parity(client, ReferenceEncoder(offline_model_dir(), OFFLINE_MODEL)))
            except PlaybookError as exc:  # e.g. another model behind the name: say so, keep the report
                reports.append(ParityNote(system.name, str(exc)))
    return reports


def _summary(result) -> str:
    table = result.table()
    lines = [f"{result.card['documents']} documents, {result.card['chunks']} chunks, {len(result.queries)} queries, "
             f"{result.card['skipped']} skipped; labels: {len(result.judged())} judged queries ({result.unit}s)"]
    for name, row in table.iterrows():
        quality = "no labels" if row["judged queries"] == 0 else \
            f"nDCG@10 {row['ndcg@10']:.3f} [{row['ndcg@10 low']:.3f}, {row['ndcg@10 high']:.3f}]"
        lines.append(f"  {name:<40} {quality}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from ..corpus.chunking import served_chunker
    from ..corpus.loading import load_corpus
    from ..playbook.settings import Settings
    from ..scorecard.corpusrun import RunOptions, run_corpus
    from ..scorecard.htmlreport import cost_rows, write_report
    from ..specs.target import Target

    settings = Settings.from_env(target=Target.LOCAL)  # read once: the state folder (the cache) and the prices file
    prices = settings.node_prices()
    api_key = os.environ.get(args.api_key_env) or None
    queries, qrels, options = _inputs(args)
    urls = [s for s in args.system if s.startswith(("http://", "https://"))]
    chunker = served_chunker(urls[0] if urls else None, api_key, tokenizer_dir=args.tokenizer,
                             chunk_tokens=args.chunk_tokens, overlap_tokens=args.overlap)
    corpus = load_corpus(args.docs, chunker, options=options, progress=not args.quiet)
    result = run_corpus(corpus, queries, args.system, qrels=qrels, api_key=api_key, home=settings.home,
                        options=RunOptions(depth=args.depth, cache_dir=args.cache_dir, batch_size=args.batch_size,
                                           concurrency=args.concurrency, progress=not args.quiet))
    parity = _parity(args.system, api_key) if args.parity else []
    secrets = [api_key] if api_key else []
    if args.json:
        data = result.to_dict()
        costs = cost_rows(result.table(), args.node_type, prices)
        data["cost"] = json.loads(costs.reset_index().to_json(orient="records"))
        data["parity"] = [{"system": p.embedder, "passed": p.passed, "sentence": p.sentence()} for p in parity]
        Path(args.json).expanduser().write_text(json.dumps(data, indent=1, default=str), encoding="utf-8")
    if args.html:
        write_report(args.html, result, parity=parity, node_type=args.node_type, prices=prices, roots=[args.docs],
                     secrets=secrets)
    print(_summary(result))
    for skipped in result.corpus.skipped.head(20).itertuples():
        print(f"  skipped {skipped.source}: {skipped.reason}", file=sys.stderr)
    return 0
