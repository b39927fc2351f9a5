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
# # 05 · Compare embedding models: the research scorecard
#
# **Goal:** which retrieval pipeline to deploy - which model, with or without a reranker, at what dimension and
# vector precision: how well each retrieves, how sure we can be, whether the served vectors are right, and what a
# million tokens and a million documents cost.
#
# Any number of systems side by side: the endpoints deployed with 03 (on a cluster, e.g. BGE-M3 and e5-mistral;
# locally, all-MiniLM-L6-v2 served by the local server), BM25, a hybrid of the first model with BM25 (reciprocal
# rank fusion), a TF-IDF baseline, and two-stage pipelines: BM25 or the hybrid keep each query's top documents and a
# reranker orders them through vLLM's `/rerank`. They are evaluated through `mteb`, the field's evaluation library: on the
# shipped Chinese/English set (a local mteb task, works offline) or on an MTEB / C-MTEB retrieval task by name when
# the Hugging Face hub is reachable. Embeddings are cached on disk, so a rerun costs nothing.

# %% tags=["parameters"]
from tke_playbook.playbook.settings import environ, quick_mode  # QUICK: the library's one rule

TARGET = environ.get("TKE_PLAYBOOK_TARGET", "")  # local | cluster | empty: cluster if kubeconfig found
MODELS = environ.get("TKE_PLAYBOOK_MODELS", "")  # comma-separated deployed models; empty: the served model
TASK = environ.get("TKE_PLAYBOOK_TASK", "")  # empty: the shipped set; or T2Retrieval, SciFact, ... (needs a hub)
MAX_QUERIES = int(environ.get("TKE_PLAYBOOK_MAX_QUERIES", "200"))  # subset of a named task, for speed
NODE_TYPE = environ.get("TKE_PLAYBOOK_NODE_TYPE", "")  # node type to price on; empty: 00's (locally a CPU node)
QUICK = quick_mode(environ.get("TKE_PLAYBOOK_QUICK", ""))  # True: shallower reranking, a small frontier
RERANKER = environ.get("TKE_PLAYBOOK_RERANKER", "")  # a deployed reranker's model; empty: the first model reranks
STORAGE = environ.get("TKE_PLAYBOOK_STORAGE", "cfs-standard")  # where vectors are kept, priced per GiB-month

# %%
# %matplotlib inline
from tke_playbook.evaluate import load_bilingual
from tke_playbook.plots import (plot_frontier, plot_heatmap_grid, plot_metric_intervals, plot_projections,
                                plot_quality_vs_cost)
from tke_playbook.playbook import open_target

# %%
from tke_playbook.scorecard import (check_output_parity, check_parity, choose_task, cost_summary, cost_table,
                                    dataset_card, pipeline_table, price_table, projections, reranker_for,
                                    results_table, run_scorecard, scorecard_throughputs, storage_price_table,
                                    target_systems, two_stage_systems, wrong_pooling_demo)

# %% tags=["nbval-ignore-output"]
pb = open_target(TARGET)
systems = target_systems(pb.serving, [m for m in MODELS.split(",") if m.strip()])
systems += two_stage_systems(systems, reranker_for(pb.serving, RERANKER), depth=10 if QUICK else 20)
task = choose_task(TASK, max_queries=MAX_QUERIES)

# %% [markdown]
# The data set: what it holds, in which languages, how relevance was judged, and what a query's kind means.

# %% tags=["nbval-ignore-output"]
dataset_card(task)

# %% [markdown]
# Run every system through mteb, then score each one's rankings: nDCG@10, recall@10 and MRR@10, each with a 95 %
# bootstrap interval over the queries (resampling queries with replacement), best first. `kind` is what the system
# is: **dense** an embedding model (an endpoint), **lexical** word overlap with no model (BM25, TF-IDF), **hybrid**
# a dense model and BM25 merged by reciprocal rank fusion, **two-stage** a first stage's top 20 documents (10
# in `QUICK` mode) reordered by a reranker (`bm25→all-MiniLM-L6-v2`: BM25, then the model's `/rerank`). mteb's own
# nDCG@10 agrees with ours (`result.table` keeps both, and every number).

# %% tags=["nbval-ignore-output"]
result = run_scorecard(systems, task, home=pb.settings.home)  # the embedding cache in the state folder
results_table(result)

# %% [markdown]
# How to read it: with 22 queries the intervals are wide - two systems whose intervals overlap may well be equally
# good. Word overlap is a strong signal within one language, so the lexical baselines are hard to beat on a small
# set: a model has to beat them to earn its GPU. Locally, all-MiniLM-L6-v2 is an English model, weak on Chinese.

# %%
plot_metric_intervals(result.table)

# %% [markdown]
# Is a difference real? Every pair of systems, a paired randomisation test on the per-query nDCG@10: the p-value is
# the chance of a difference this large if the two systems were interchangeable. Testing many pairs finds a "winner"
# by luck, so the p-values are Holm-corrected over all the pairs; a difference counts when its corrected p-value
# is below 0.05.

# %% tags=["nbval-ignore-output"]
pairs = result.pairwise()
pairs.table()

# %% [markdown]
# The verdict, in one sentence:

# %% tags=["nbval-ignore-output"]
print(pairs.verdict())

# %% [markdown]
# Where the leader and the runner-up disagree: the queries where one ranks a relevant document in its top 3 and
# the other does not (`kind`: the query's kind, from the data-set card).

# %% tags=["nbval-ignore-output"]
result.disagreements(*pairs.ranking[:2])

# %% [markdown]
# Does the reranker earn its keep? Each pipeline against its own first stage, query by query: both nDCG@10, the gain
# with its 95 % interval, and the paired test's p-value Holm-corrected over the pipelines. Locally the reranker is
# all-MiniLM-L6-v2 itself, which vLLM's `/rerank` scores as a bi-encoder (the cosine of the two vectors); on a
# cluster, set `RERANKER` to a deployed cross-encoder such as BAAI/bge-reranker-v2-m3.

# %% tags=["nbval-ignore-output"]
pipeline_table(result)

# %% [markdown]
# Served-vector parity: the first endpoint embeds a fixed probe set; a reference computes the same texts from the
# same weights with sentence-transformers (locally in-process; on a cluster a CPU Job reading the PVC). Cosine
# must reach 0.999 on every probe, with the same norm, the same vectors at batch 1 and 32, and the catalog's prompts.

# %% tags=["nbval-ignore-output"]
reference = pb.evaluation.parity_reference()

# %% tags=["nbval-ignore-output"]
parity = check_parity(systems[0], reference)
print(parity.sentence())
parity.table()

# %% [markdown]
# The other outputs the endpoint serves, against sentence-transformers on the same inputs: Cohere's `/v2/embed`
# binary and ubinary bits against its own `quantize_embeddings`, `/score` and `/rerank` against its `cos_sim`. A
# difference names its likely cause (bit order, inverted bits, Cohere's int8 offset, the score function, a prompt).

# %% tags=["nbval-ignore-output"]
outputs = check_output_parity(systems[0], reference)
print(outputs.sentence())
outputs.table()

# %% [markdown]
# A deliberately wrong server: the offline model pooled on its first token (CLS) instead of the mean. Parity fails
# and names the cause - the failure users hit when a server's pooling differs from sentence-transformers.

# %% tags=["nbval-ignore-output"]
wrong = wrong_pooling_demo("cls")
print(wrong.sentence())
wrong.table()

# %% [markdown]
# Quality against cost. Throughput here is one stream measured during the scorecard's first run, priced on the node
# type chosen in 00 - locally on this machine's CPU, priced as a small CPU node (no GPU served anything here; GPU
# costs come from a cluster run, or from 06's labelled projection). Replace it with 06's load-test numbers
# (`Throughput(system, tokens_per_s, node_type)`). Prices are illustrative, marked "verify": edit `prices` with your
# region's price before showing the numbers. BM25 and TF-IDF need no model server. The two-stage pipelines call the
# model's `/rerank`, whose calls are not timed: their cost says "not priced" (they are not free).

# %% tags=["nbval-ignore-output"]
prices = price_table(prices=pb.settings.node_prices())  # $TKE_PLAYBOOK_NODE_PRICES, read once by open_target
throughputs = scorecard_throughputs(result, pb.evaluation.price_node(NODE_TYPE), pb.serving.measured_on())
costs = cost_table(result.table, throughputs, prices)
cost_summary(costs)

# %%
plot_quality_vs_cost(costs, hardware=pb.serving.measured_on())

# %% [markdown]
# ## Dimension and precision: the frontier
#
# The same model answers smaller vectors: fewer dimensions (vLLM's `dimensions`, for Matryoshka models), narrower
# numbers (vLLM's `embed_dtype`: float16, bfloat16, fp8) or one bit per dimension (Cohere's binary types from
# `/v2/embed`). Each point below is what the server itself sent, scored like any system. Where vectors are kept is
# priced from this table (illustrative, marked "verify": edit it with your price before showing the numbers).

# %%
storage_prices = storage_price_table(prices=pb.settings.storage_prices())  # $TKE_PLAYBOOK_STORAGE_PRICES
storage_prices

# %% [markdown]
# Run the frontier. Locally all-MiniLM-L6-v2 is not Matryoshka-trained, so vLLM refuses `dimensions` for it: a second
# local server is started with `--hf-overrides '{"matryoshka_dimensions": [...]}'`, and its truncated points are
# labelled "not Matryoshka-trained: expect loss". `QUICK` runs three precisions at one smaller dimension. Embedding
# is priced with the throughput measured above (`throughputs`, the cost table's), so the page shows one figure.

# %% tags=["nbval-ignore-output"]
frontier = pb.evaluation.frontier(task, quick=QUICK, storage=STORAGE, storage_prices=storage_prices,
                                  node_type=NODE_TYPE, throughputs=throughputs)
print(frontier.assumptions())
frontier.table()

# %% [markdown]
# Quality against size and against the cost of a million documents embedded and stored: Pareto points (nothing
# else is at least as good for less) are drawn large and joined. With 22 queries the intervals overlap widely:
# read a point's loss against its model's full float32 vector in the table's Δ column (a paired test).

# %%
plot_frontier(frontier.points, hardware=pb.serving.measured_on(), assumption=frontier.cost_assumption())

# %% [markdown]
# Each model's documents projected on two principal components, coloured by topic (English circles, Chinese
# triangles): a model that clusters by language instead of topic shows two clouds. Then the sentence set's
# similarity matrices on one shared colour scale.

# %%
docs = load_bilingual().documents
plot_projections(projections(result), [d.topic for d in docs], [d.lang for d in docs])

# %%
sentences = load_bilingual().sentence_set()
plot_heatmap_grid(result.sentence_sims, sentences.labels(), sentences.topics, label_fallbacks=sentences.ids)
