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
# # 04 · Embeddings
#
# **Goal:** send the tutorial's request, then see what the vectors mean: a similarity heatmap of Chinese and
# English sentences, the sentences nearest to yours, and how long requests take.

# %% tags=["parameters"]
from tke_playbook.playbook.settings import environ, quick_mode  # QUICK: the library's one rule

TARGET = environ.get("TKE_PLAYBOOK_TARGET", "")  # local | cluster | empty: cluster if kubeconfig found
TEXT = environ.get("TKE_PLAYBOOK_TEXT", "用Python实现快速排序算法")
QUICK = quick_mode(environ.get("TKE_PLAYBOOK_QUICK", ""))  # True: a short latency run (make demo, tests)
REQUESTS = int(environ.get("TKE_PLAYBOOK_REQUESTS", "20" if QUICK else "100"))
DOCUMENTS = environ.get("TKE_PLAYBOOK_RERANK_DOCUMENTS", "快速排序是一种分治的排序算法|Quicksort sorts a list by "
                           "partitioning it around a pivot|红烧肉要用小火慢炖一个小时|A PersistentVolumeClaim asks the "
                           "cluster for storage").split("|")  # documents the /rerank request ranks for your sentence

# %%
# %matplotlib inline
import pandas as pd
from tke_playbook.evaluate import sentence_set
from tke_playbook.loadgen import run_closed_loop
from tke_playbook.plots import plot_latency_cdf, plot_latency_histogram, plot_similarity_heatmap
from tke_playbook.evaluate import cosine_matrix
from tke_playbook.playbook.widgets import TextForm
from tke_playbook.playbook import describe_embedding_answer, open_target, tidy

# %% [markdown]
# The endpoint deployed in 03. If nothing is deployed (a fresh start, or after 99) this says so: run 03 first.

# %% tags=["nbval-ignore-output"]
pb = open_target(TARGET)
endpoint = pb.serving.endpoint()
endpoint

# %% [markdown]
# Type a sentence (any language), then run the cells below: the request shows it, and its nearest sentences follow.

# %%
text_form = TextForm("Sentence to embed", TEXT)
text_form

# %% [markdown]
# The tutorial's request for your sentence, ready to paste into a shell. The key is never shown: the first line reads
# it into `$VLLM_API_KEY` from where 03 keeps it (on a cluster its Secret, locally its key file), and the request
# sends `$VLLM_API_KEY`.

# %% tags=["nbval-ignore-output"]
print(endpoint.curl_text(text_form.text, key_from=pb.serving.key_source()))

# %% [markdown]
# The same request sent from here, and what came back: the served model, one vector of the model's dimension (its
# length is 1 when the model normalises), its first values, and the tokens the server counted.

# %% tags=["nbval-ignore-output"]
answer = endpoint.curl(text_form.text)
describe_embedding_answer(answer)

# %% [markdown]
# The same server reranks: vLLM's `/rerank` takes a query and documents and answers them best first, each with a
# relevance score. For an embedding model vLLM scores a pair by the cosine of the two vectors (a cross-encoder such
# as bge-reranker-v2-m3 reads both texts together). On the local target the model is the English-only
# all-MiniLM-L6-v2: it reads Chinese as unfamiliar tokens, so its order of the Chinese documents says little about
# their meaning (a multilingual model such as bge-m3 or Qwen3 ranks them by meaning). The request beside the
# tutorial's, ready to paste:

# %% tags=["nbval-ignore-output"]
print(endpoint.rerank_curl_text(text_form.text, DOCUMENTS, key_from=pb.serving.key_source()))

# %% [markdown]
# Sent from here: the documents ranked for your sentence.

# %% tags=["nbval-ignore-output"]
endpoint.client().rerank(text_form.text, DOCUMENTS)

# %% [markdown]
# ## Similarity heatmap
#
# Sentences ordered by topic, English with their Chinese translations. A multilingual model lights up the topic
# blocks, translation pairs included; an English-only model (the local all-MiniLM-L6-v2) shows the Chinese
# sentences apart.

# %% tags=["nbval-check-output"]
sentences = sentence_set()
print(len(sentences), 'sentences,', len(set(sentences.topics)), 'topics')

# %%
vectors = endpoint.client().embed_documents(list(sentences.texts))
similarity = cosine_matrix(vectors)

# %%
plot_similarity_heatmap(similarity, sentences.labels(), sentences.topics, label_fallbacks=sentences.ids,
                        title=f"Cosine similarity: {endpoint.model}")

# %% [markdown]
# Your sentence among them: the five nearest by cosine similarity (1 is the same direction; the default sentence is
# one of the set, so it comes first at 1, and its Chinese or English twin should follow on a multilingual model).

# %% tags=["nbval-ignore-output"]
typed = endpoint.client().embed_documents([text_form.text])
nearest = pd.DataFrame({"sentence": sentences.texts, "language": sentences.langs, "topic": sentences.topics,
                        "cosine": cosine_matrix(typed, vectors)[0].round(3)})
nearest.nlargest(5, "cosine").set_index("sentence")

# %% [markdown]
# ## Latency
#
# A short closed-loop run: first one request in flight at a time, then four, each request one text of
# `input_tokens` tokens. The table gives requests per second and latency percentiles (p50: half the requests were
# faster; p99: all but one in a hundred). `QUICK` (see the parameters) sends fewer requests. Locally the server runs
# on this machine's CPU, so these are CPU numbers; the plots below name the hardware.

# %% tags=["nbval-ignore-output"]
load = run_closed_loop(endpoint.url, endpoint.model, concurrency_levels=(1, 4),
                       requests_per_level=REQUESTS, api_key=endpoint.api_key, home=pb.settings.home)
tidy(load.summary)[["concurrency", "input_tokens", "requests", "errors", "req_per_s", "tokens_per_s",
                    "latency_mean_ms", "p50_ms", "p90_ms", "p99_ms"]]

# %% [markdown]
# One histogram per level, on one latency axis: each level has its own peak, and its p50, p90 and p99 lines are
# the numbers in the table above.

# %%
plot_latency_histogram(load.records, summary=load.summary, title="Request latency by requests in flight",
                       hardware=pb.serving.measured_on())

# %% [markdown]
# The same requests by level: each line is the share of requests answered within a time. With four in flight they
# queue, so the line moves right.

# %%
plot_latency_cdf(load.records, title=f"Latency by requests in flight\nmeasured on {pb.serving.measured_on()}")
