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
# # 99 · Clean up
#
# **Goal:** remove what the playbook created. The PVC holding the downloaded models is kept unless you say so,
# because downloading again takes time.

# %% tags=["parameters"]
import os

TARGET = os.environ.get("TKE_PLAYBOOK_TARGET", "")  # local | cluster | empty: cluster if kubeconfig found
KEEP_PVC = os.environ.get("TKE_PLAYBOOK_KEEP_PVC", "1") not in ("0", "false", "no")

# %%
from tke_playbook.playbook import nothing_note, open_target

# %% tags=["nbval-ignore-output"]
pb = open_target(TARGET)
pb

# %% [markdown]
# What runs now, whichever notebook or kernel started it (servers with their process and port, downloads):

# %% tags=["nbval-ignore-output"]
nothing_note(pb.running(), "Nothing runs: no server or download of the playbook is left.")

# %% [markdown]
# Delete what the playbook made. On a cluster that is every object labelled
# `app.kubernetes.io/managed-by=tke-playbook` in the namespace: the vLLM Deployments and Services, the download Jobs
# and their ConfigMaps, the API-key and hub-token Secrets; the PVC only with `TKE_PLAYBOOK_KEEP_PVC=0`. Locally: every
# recorded server and download still running, the API key files and, with `TKE_PLAYBOOK_KEEP_PVC=0`, the folders
# playing PVCs. Afterwards the other notebooks say "nothing is deployed: run 03" rather than start anything. (A local
# server outlives the notebook that started it, as a Deployment outlives `kubectl`: this is what stops it.)

# %% tags=["nbval-ignore-output"]
nothing_note(pb.teardown(keep_pvc=KEEP_PVC), "Nothing to remove: the playbook has nothing left here.")

# %% tags=["nbval-ignore-output"]
nothing_note(pb.running(), "Nothing runs.")

# %% [markdown]
# The PVCs left (the downloaded models stay on them for the next run):

# %% tags=["nbval-ignore-output"]
pb.storage.names()
