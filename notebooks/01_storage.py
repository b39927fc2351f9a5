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
# # 01 · Storage: StorageClass and PVC `ai-model`
#
# **Goal:** a shared volume that the download Job writes the model into and vLLM reads it from.
#
# The tutorial creates a StorageClass of type CFS (file storage) in the GPU node's zone, then a PVC named
# `ai-model` on it. Locally, a folder under the state directory plays the PVC; the manifests are the same.

# %% tags=["parameters"]
import os

TARGET = os.environ.get("TKE_PLAYBOOK_TARGET", "")  # local | cluster | empty: cluster if kubeconfig found
PVC_NAME = os.environ.get("TKE_PLAYBOOK_PVC", "ai-model")
VPC_ID = os.environ.get("TKE_PLAYBOOK_VPC_ID", "")  # the GPU node's VPC, vpc-…; empty: use an existing StorageClass
SUBNET_ID = os.environ.get("TKE_PLAYBOOK_SUBNET_ID", "")  # a subnet of that VPC, subnet-…
ZONE = os.environ.get("TKE_PLAYBOOK_ZONE", "")  # the GPU node's zone, e.g. ap-guangzhou-3

# %%
from tke_playbook.playbook.widgets import StorageForm
from tke_playbook.playbook import open_target, spec_table

# %% tags=["nbval-ignore-output"]
pb = open_target(TARGET)
pb

# %% [markdown]
# Choose the PVC (an existing one, or type a new name: `ai-model` matches the download script's default). For the
# playbook to create the CFS StorageClass as well, give the GPU node's VPC, a subnet of it and its zone (TKE
# console: the node's details) - all three, the zone too; left empty, StorageClass `cfs` must already exist (created
# in the console, as the tutorial does). A red line under the form says what to change; the cells below refuse a
# form that was refused.

# %%
storage_form = StorageForm(pb.storage.defaults(PVC_NAME, VPC_ID, SUBNET_ID, ZONE), pb.storage.names())
storage_form

# %% tags=["nbval-check-output"]
storage_spec = pb.read_form(storage_form)
spec_table(storage_spec)

# %% [markdown]
# The StorageClass of type CFS the tutorial creates in the console: provisioner `com.tencent.cloud.csi.cfs`, NFS
# version 3, in the GPU node's VPC, subnet and zone (`<…>` marks a value the form above does not have yet):

# %% tags=["nbval-check-output"]
print(storage_form.storage_class_preview())

# %% [markdown]
# What is applied to the cluster: the PVC, and the StorageClass too when the form has the VPC, subnet and zone
# (otherwise StorageClass `cfs` must already exist):

# %% tags=["nbval-check-output"]
print(pb.storage.render(storage_spec))

# %% [markdown]
# Create them and wait until the PVC is `Bound` (locally: create the folder).

# %% tags=["nbval-ignore-output"]
pb.storage.create(storage_spec)

# %% tags=["nbval-check-output"]
print(pb.storage.names())
