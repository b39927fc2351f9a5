# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 07 · Your own documents
#
# **Goal:** answer the customer's question - *how does it do on our documents?* Load a folder of documents, cut it
# into chunks with the served model's tokenizer, rank them for your queries with every system, score the systems
# against your labels (or label in the notebook), see where they agree without any label, embed the corpus in bulk
# the way a cluster would, and share one HTML report.
#
# With no folder given, the corpus is the Python documentation's topic texts that ship with the interpreter
# (`help("assert")`), and the queries and labels are derived from their headings - so this runs anywhere, offline.
# Set `TKE_PLAYBOOK_DOCS` (a folder of .txt/.md/.html/.pdf, or a JSONL/CSV/Parquet file with id and text columns),
# `TKE_PLAYBOOK_QUERIES` and optionally `TKE_PLAYBOOK_QRELS` (TREC qrels) for your own.

# %% tags=["parameters"]
from tke_playbook.playbook.settings import environ, quick_mode  # QUICK: the library's one rule
TARGET = environ.get("TKE_PLAYBOOK_TARGET", "")  # local | cluster | empty: cluster if kubeconfig found
QUICK = quick_mode(environ.get("TKE_PLAYBOOK_QUICK", ""))  # True: a subset (make demo)
DOCS = environ.get("TKE_PLAYBOOK_DOCS", "")  # folder or table file; empty: the Python documentation topics
QUERIES = environ.get("TKE_PLAYBOOK_QUERIES", "")  # .jsonl/.tsv/.csv/.txt; empty: the demo's heading queries
QRELS = environ.get("TKE_PLAYBOOK_QRELS", "")  # TREC qrels (optional)
SYSTEMS = environ.get("TKE_PLAYBOOK_SYSTEMS", "bm25,hybrid")  # beside the served model: bm25, tfidf, hybrid, URLs
TOPICS = int(environ.get("TKE_PLAYBOOK_TOPICS", "30" if QUICK else "0")) or None  # demo topics; 0: all 79
SHARDS = int(environ.get("TKE_PLAYBOOK_SHARDS", "2" if QUICK else "4"))  # bulk embedding: one Job index (or local worker) per shard
STAGE_ROOT = environ.get("TKE_PLAYBOOK_STAGE_ROOT", "")  # cluster: where the PVC is mounted on this machine

# %%
# %matplotlib inline
from tke_playbook.corpus import load_corpus
from tke_playbook.playbook import open_target
from tke_playbook.playbook.labeling import Labeler, QueryBox
from tke_playbook.playbook.yourdocs import corpus_folder, labels_path, queries_and_labels, report_path
from tke_playbook.scorecard.corpusrun import run_corpus

# %%
from tke_playbook.plots import plot_metric_intervals
from tke_playbook.plots.corpus import plot_agreement, plot_chunk_tokens
from tke_playbook.scorecard.htmlreport import write_report

# %% [markdown]
# The systems: the model 03 deployed (locally, all-MiniLM-L6-v2 on the local server), then BM25 and their hybrid.
# The chunker takes the served model's tokenizer and its `max_model_len` from the endpoint.

# %% tags=["nbval-ignore-output"]
pb = open_target(TARGET)
systems, chunker, note = pb.evaluation.document_systems(SYSTEMS)
print(note)
chunker.settings

# %% [markdown]
# Load the documents. Anything that cannot be used - an empty or binary file, a PDF without text, a repeated id,
# a record over the size limit - is skipped with one line saying why, and the rest loads.

# %% tags=["nbval-ignore-output"]
corpus = load_corpus(corpus_folder(DOCS, TOPICS, pb.settings.home), chunker)
corpus

# %% tags=["nbval-ignore-output"]
corpus.skipped

# %% tags=["nbval-ignore-output"]
corpus.chunks.head()

# %%
plot_chunk_tokens(corpus.chunks["tokens"], limit=corpus.settings.chunk_tokens)

# %% [markdown]
# Every system ranks the chunks for every query. Dense systems embed the corpus once through the endpoint (a few
# requests in flight, a progress bar, an on-disk cache: a rerun embeds nothing) and search it exactly in blocks.
# With labels, the table has nDCG@10, recall@10 and MRR@10 with 95 % bootstrap intervals over the queries; the
# demo's labels name documents, so a document scores its best chunk. The last two columns time the bulk embedding:
# the p99 of one request of many chunks (not a query's latency: 04 and 06 measure those) and chunks per second.
# The demo's queries are the documents' own headings, an easy task: every system finds the right document in its
# top 10 (recall near 1) and the intervals overlap, so the demo cannot rank the systems - your queries and labels can.

# %% tags=["nbval-ignore-output"]
queries, qrels = queries_and_labels(QUERIES, QRELS, TOPICS)
result = run_corpus(corpus, queries, systems, qrels=qrels, home=pb.settings.home)
result.summary()

# %%
plot_metric_intervals(result.table())

# %% [markdown]
# How sure are we? The interval shrinks like 1/√(judged queries): halving it takes four times the judged queries.

# %% tags=["nbval-ignore-output"]
result.labels_to_halve()

# %% [markdown]
# Without any label: how much the systems agree (shared chunks in the top 10, Kendall's tau over the two lists),
# and the chunks where they disagree most - the first ones to read.

# %% tags=["nbval-ignore-output"]
result.agreement().round(3)

# %%
plot_agreement(result.overlap())

# %% tags=["nbval-ignore-output"]
result.disagreements().head(5)

# %% [markdown]
# Label in the notebook. Type queries (one per line), run them, then judge the pooled chunks: the union of every
# system's top 10, shuffled, no system named. Each click is saved to a TREC qrels file and reused next time; the
# table below the buttons is scored again after every judgement.

# %%
box = QueryBox("how do I catch an exception\nwhat does the with statement do\nhow are class attributes looked up")
box

# %% tags=["nbval-ignore-output"]
typed = run_corpus(corpus, box.queries(), systems, home=pb.settings.home)
labeler = Labeler(typed, labels_path(f"{corpus.name}-typed", pb.settings.home))
labeler.widget

# %% [markdown]
# To show the scores converging without a person at the keyboard, the demo's heading labels answer for one: the
# scorecard restarts unlabelled and judgements arrive one by one. It scores only the queries judged so far, so its
# numbers (and their order) differ from the full table above until the labels catch up.

# %% tags=["nbval-ignore-output"]
oracle = Labeler(result.with_qrels({}), labels_path(f"{corpus.name}-demo", pb.settings.home), k=5)
oracle.answer_from(qrels, 60 if QUICK else 400).table().round(3)

# %% [markdown]
# Bulk embedding, the way the cluster does it: the corpus is staged on the volume in token-balanced shards and the
# same standard-library worker as the cluster's Indexed Job embeds each shard through the endpoint into `.npy`
# files, verified by sha256 in a manifest (locally: worker processes into the folder that plays the PVC; on a
# cluster set `STAGE_ROOT` to where the PVC is mounted). A rerun embeds nothing; a killed worker resumes.

# %% tags=["nbval-ignore-output"]
manifest = pb.evaluation.embed_corpus(corpus, shards=SHARDS, stage_root=STAGE_ROOT or None)
{key: manifest[key] for key in ("model", "rows", "dim")} | {"shards": len(manifest["shards"])}

# %% [markdown]
# Share it: one self-contained HTML page (the plots inside, no key and no absolute path in it).

# %% tags=["nbval-ignore-output"]
report = write_report(report_path(corpus.name, pb.settings.home), result, prices=pb.settings.node_prices(),
                      roots=[corpus_folder(DOCS, TOPICS, pb.settings.home)])
report.name, f"{report.stat().st_size / 1e6:.1f} MB"
