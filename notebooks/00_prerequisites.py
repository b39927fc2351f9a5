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
# # 00 · Prerequisites
#
# **Goal:** check that the target can run the tutorial, and choose the GPU node type to serve on.
#
# The tutorial starts with a TKE standard cluster (VPC-CNI, the CFS storage add-on), a download node pool
# (3 × SA5.LARGE8 with public IPs) and one GPU node (PNV5b.8XLARGE96, one 48 GB L20). Here the same steps run on one
# of two targets: **cluster** (your TKE cluster, from kubeconfig) or **local** (this machine: a folder plays the PVC
# and a CPU server plays vLLM). Set `TKE_PLAYBOOK_TARGET=local|cluster`; without it the cluster is used when a
# kubeconfig is found, else this machine.
#
# Every notebook starts with a `parameters` cell (values from environment variables; papermill can override them).
# `TKE_PLAYBOOK_QUICK=1` (the `QUICK` parameter of 04 and 06) trims request counts and sweeps to a quick run;
# `make demo` and the tests use it. The notebooks can be run in any order: one that needs an earlier step says
# which notebook to run, in one red line, and never starts anything behind your back.

# %% tags=["parameters"]
import os

TARGET = os.environ.get("TKE_PLAYBOOK_TARGET", "")  # local | cluster | empty: cluster if kubeconfig found
KUBE_CONTEXT = os.environ.get("TKE_PLAYBOOK_CONTEXT", "")  # empty: the kubeconfig's current context
MODEL = os.environ.get("TKE_PLAYBOOK_MODEL", "")  # empty: the target's default model
NODE_TYPE = os.environ.get("TKE_PLAYBOOK_NODE_TYPE", "")  # empty: PNV5b.8XLARGE96 when available

# %%
from tke_playbook.playbook.widgets import NodeTypePicker
from tke_playbook.playbook import open_target

# %% [markdown]
# Open the target. On a cluster this connects with your kubeconfig context; locally it needs nothing.

# %% tags=["nbval-ignore-output"]
pb = open_target(TARGET, context=KUBE_CONTEXT)
pb

# %% [markdown]
# ## Preflight
#
# Each row is one check; a failed row says what to do. On a cluster: reachable API, Ready nodes, GPU nodes, the
# model's fit on their GPU, a CFS StorageClass. Locally: Python, torch, the offline model, disk and the port.

# %% tags=["nbval-ignore-output"]
pb.site.preflight(MODEL).to_frame()

# %% [markdown]
# ## Node types
#
# The cluster's nodes (locally: the catalog of TKE instance types the toolkit knows).

# %% tags=["nbval-ignore-output"]
pb.site.nodes_table()

# %% [markdown]
# Pick the GPU node type the model will be served on. The choice is recorded for every later notebook: the fit
# checks of 02 and 03, the serving spec's GPU and node affinity (03 pins vLLM to this instance type and refuses a
# layout it cannot hold), and the node type 05 and 06 price and plan on for a cluster. Locally, nothing runs on it:
# the CPU server plays vLLM, and the GPU figures are what a cluster deployment would get.

# %%
node_picker = NodeTypePicker(pb.site.node_types(), default=NODE_TYPE)
node_picker

# %% tags=["nbval-check-output"]
node_type = pb.site.choose_node_type(node_picker.node_type)
print(node_type.name)
