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
# **Goal:** which model to deploy - how well each one retrieves, how sure we can be, whether the served vectors are
# right, and what a million tokens costs.
#
# Any number of systems side by side: the endpoints deployed with 03 (on a cluster, e.g. BGE-M3 and e5-mistral;
# locally, all-MiniLM-L6-v2 served by the local server), BM25, a hybrid of the first model with BM25 (reciprocal
# rank fusion) and a TF-IDF baseline. They are evaluated through `mteb`, the field's evaluation library: on the
# shipped Chinese/English set (a local mteb task, works offline) or on an MTEB / C-MTEB retrieval task by name when
# the Hugging Face hub is reachable. Embeddings are cached on disk, so a rerun costs nothing.

# %% tags=["parameters"]
import os

TARGET = os.environ.get("TKE_PLAYBOOK_TARGET", "")  # local | cluster | empty: cluster if kubeconfig found
MODELS = os.environ.get("TKE_PLAYBOOK_MODELS", "")  # comma-separated deployed models; empty: the served model
TASK = os.environ.get("TKE_PLAYBOOK_TASK", "")  # empty: the shipped set; or T2Retrieval, SciFact, ... (needs a hub)
MAX_QUERIES = int(os.environ.get("TKE_PLAYBOOK_MAX_QUERIES", "200"))  # subset of a named task, for speed
NODE_TYPE = os.environ.get("TKE_PLAYBOOK_NODE_TYPE", "")  # node type to price on; empty: 00's (locally a CPU node)

# %%
# %matplotlib inline
from tke_playbook.evaluate import load_bilingual
from tke_playbook.plots import plot_heatmap_grid, plot_metric_intervals, plot_projections, plot_quality_vs_cost
from tke_playbook.scorecard import (check_parity, choose_task, cost_summary, cost_table, dataset_card, price_table,
                                    projections, results_table, run_scorecard, scorecard_throughputs, target_systems,
                                    wrong_pooling_demo)
from tke_playbook.playbook import open_target

# %% tags=["nbval-ignore-output"]
pb = open_target(TARGET)
systems = target_systems(pb.serving, [m for m in MODELS.split(",") if m.strip()])
task = choose_task(TASK, max_queries=MAX_QUERIES)

# %% [markdown]
# The data set: what it holds, in which languages, how relevance was judged, and what a query's kind means.

# %% tags=["nbval-ignore-output"]
dataset_card(task)

# %% [markdown]
# Run every system through mteb, then score each one's rankings: nDCG@10, recall@10 and MRR@10, each with a 95 %
# bootstrap interval over the queries (resampling queries with replacement), best first. `kind` is what the system
# is: **dense** an embedding model (an endpoint), **lexical** word overlap with no model (BM25, TF-IDF), **hybrid**
# a dense model and BM25 merged by reciprocal rank fusion. mteb's own nDCG@10 agrees with ours (`result.table`
# keeps both, and every number).

# %% tags=["nbval-ignore-output"]
result = run_scorecard(systems, task)
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
# Served-vector parity: the first endpoint embeds a fixed probe set; a reference computes the same texts from the
# same weights with sentence-transformers (locally in-process; on a cluster a CPU Job reading the PVC). Cosine
# must reach 0.999 on every probe, with the same norm, the same vectors at batch 1 and 32, and the catalog's prompts.

# %% tags=["nbval-ignore-output"]
parity = check_parity(systems[0], pb.evaluation.parity_reference())
print(parity.sentence())
parity.table()

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
# region's price before showing the numbers. BM25 and TF-IDF need no model server.

# %% tags=["nbval-ignore-output"]
prices = price_table(pb.settings.prices_file)  # $TKE_PLAYBOOK_NODE_PRICES, read once by open_target
throughputs = scorecard_throughputs(result, pb.evaluation.price_node(NODE_TYPE), pb.serving.measured_on())
costs = cost_table(result.table, throughputs, prices)
cost_summary(costs)

# %%
plot_quality_vs_cost(costs, hardware=pb.serving.measured_on())

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
