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
# # 03 · Deploy vLLM
#
# **Goal:** an OpenAI-compatible embeddings endpoint serving the model from the PVC.
#
# The tutorial edits the `vllm-inference-tke` chart's `values.yaml` and runs `helm install`. The form below is
# prefilled with those values (the seed profile) and with the model and PVC that 02 downloaded, except that an API
# key is **generated** and kept in a Secret rather than left empty. Locally, the CPU server plays vLLM on the same
# port (60000) and API.

# %% tags=["parameters"]
import os

TARGET = os.environ.get("TKE_PLAYBOOK_TARGET", "")  # local | cluster | empty: cluster if kubeconfig found
MODEL = os.environ.get("TKE_PLAYBOOK_MODEL", "")  # empty: the model 02 downloaded, else the target's default
RERANKER = os.environ.get("TKE_PLAYBOOK_RERANKER", "")  # empty: the target's reranker (see the last section)

# %%
from tke_playbook.playbook.display import install
from tke_playbook.playbook.widgets import ServingForm
from tke_playbook.playbook import open_target, spec_table

install();  # the toolkit's errors show as one short red block: what happened, what to do

# %% tags=["nbval-ignore-output"]
pb = open_target(TARGET)
pb

# %% [markdown]
# The chart's main values. The verdict says whether the model, at this `max_model_len`, memory share and `tpSize`,
# fits the GPU node type chosen in 00 (the tutorial's FAQ: *CUDA out of memory* means it does not). Each pod gets
# `tpSize × ppSize ÷ nodes` GPUs, pinned to that node type: a layout or model the node cannot hold is refused in one
# red line, and so is a number out of range (a port outside 1–65535, 0 replicas, a memory share outside (0, 1]). A
# new model starts from its own `max_model_len` (2048, or less when the model allows less).

# %%
form = ServingForm(pb.serving_defaults(MODEL), pb.pvcs(), pb.node_type(), pb.unavailable_models("serve"))
form

# %% [markdown]
# The form read into a spec (the settings that differ most between deployments; the YAML below has all):

# %% tags=["nbval-check-output"]
serving_spec = pb.read_form(form)
spec_table(serving_spec, ["name", "model", "pvc_name", "max_model_len", "max_batch_size", "gpu_count",
                          "service_type", "service_port", "api_key_secret"])

# %% [markdown]
# The API key: generated once, kept in Secret `vllm-<model>-api-key` (locally a 0600 file). Only a masked form is
# ever shown.

# %% tags=["nbval-ignore-output"]
print(pb.masked_api_key(serving_spec))

# %% [markdown]
# What is applied (the Secret's value is not shown):

# %% tags=["nbval-ignore-output"]
print(pb.render_serving(serving_spec))

# %% [markdown]
# The same deployment as Helm values for the tutorial's chart (`helm install vllm-service . -f values.yaml`). The
# chart cannot put the authenticating proxy in front of a public LoadBalancer, so for the tutorial's own settings the
# values are those of a ClusterIP Service, and the comment on top says which form field gives the same here:

# %% tags=["nbval-check-output"]
print(pb.helm_values(serving_spec))

# %% [markdown]
# Deploy and wait until ready. Deploying again replaces the running server (same port, 60000). If it fails, the
# diagnosis says why in plain words (e.g. *model not found*: the download has not finished; *CUDA out of memory*:
# the GPU is too small).

# %% tags=["nbval-ignore-output"]
endpoint = pb.deploy(serving_spec)
endpoint

# %% tags=["nbval-ignore-output"]
print(pb.deployment_logs(10))

# %% tags=["nbval-ignore-output"]
pb.diagnose()

# %% [markdown]
# ## A reranker beside the embedder
#
# Two-stage retrieval (05) lets a reranker re-order the embedder's best hits through vLLM's `/rerank`. On a cluster
# that is a second vLLM Deployment and Service beside the embedder, which stays the endpoint 04-07 use:
# `BAAI/bge-reranker-v2-m3` (a cross-encoder vLLM serves as it is) or `Qwen/Qwen3-Reranker-0.6B` (with the
# `--hf-overrides` vLLM documents for it), on the newest vLLM whose parser was checked. Download it with 02 first
# (`MODEL=BAAI/bge-reranker-v2-m3`). Locally the server above already answers `/rerank` the way vLLM answers it for
# an embedding model (the cosine of the pooled vectors), so nothing else starts.

# %% tags=["nbval-ignore-output"]
reranker_spec = pb.reranker_defaults(RERANKER)
spec_table(reranker_spec, ["name", "model", "image", "max_model_len", "gpu_count", "service_type"])

# %% [markdown]
# Does it fit the node type chosen in 00? A cross-encoder needs its weights and one step of query-document pairs
# (each pair is one sequence); a Qwen3 reranker also a KV cache:

# %% tags=["nbval-ignore-output"]
pb.fit_table(reranker_spec)

# %% [markdown]
# What is applied for it (locally: what the embedder's server runs with):

# %% tags=["nbval-ignore-output"]
print(pb.render_serving(reranker_spec))

# %% tags=["nbval-ignore-output"]
reranker = pb.deploy_reranker(reranker_spec)
reranker

# %% tags=["nbval-ignore-output"]
reranker.client().rerank("用Python实现快速排序算法", ["quicksort in Python", "今天天气很好", "Python 排序算法"], top_n=2)
