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
# # 02 · Download the model onto the PVC
#
# **Goal:** the model's files on the PVC, verified, with a completion marker that serving checks.
#
# The tutorial runs `tke-llm-downloader.sh --pvc ai-model --completions 3 --parallelism 3 --model …`: an Indexed Job
# whose pods each download a share of the files. Here the files are split by **size**, each file is checked against
# what the hub publishes, and the download resumes if a pod dies. Locally, worker processes do the same.

# %% tags=["parameters"]
import os

TARGET = os.environ.get("TKE_PLAYBOOK_TARGET", "")  # local | cluster | empty: cluster if kubeconfig found
MODEL = os.environ.get("TKE_PLAYBOOK_MODEL", "")  # empty: the target's default model
SOURCE = os.environ.get("TKE_PLAYBOOK_SOURCE", "")  # modelscope | huggingface | empty: target default
COMPLETIONS = int(os.environ.get("TKE_PLAYBOOK_COMPLETIONS", "3"))
PARALLELISM = int(os.environ.get("TKE_PLAYBOOK_PARALLELISM", "3"))

# %%
# %matplotlib inline
from tke_playbook.playbook.widgets import DownloadForm
from tke_playbook.playbook import open_target, spec_table
from tke_playbook.plots import plot_bytes_per_pod

# %% tags=["nbval-ignore-output"]
pb = open_target(TARGET)
pb

# %% [markdown]
# Pick the model (the verdict says whether it fits the GPU node type chosen in 00; a model this machine cannot
# fetch says "needs a hub"), the hub, and how many shards (`completions`, 1 to 64) and pods at once (`parallelism`,
# at most `completions`). A value out of range is refused in one red line, never changed behind your back.

# %%
form = DownloadForm(pb.download.defaults(MODEL, SOURCE, COMPLETIONS, PARALLELISM), pb.site.node_type(),
                    pb.download.unavailable_models(), pb.download.source_note())
form

# %% tags=["nbval-check-output"]
download_spec = pb.read_form(form)
spec_table(download_spec)

# %% [markdown]
# The plan: which files each pod downloads, and the bytes per pod (balanced by size, not by count).

# %% tags=["nbval-check-output"]
plan = pb.download.plan(download_spec)
plan.to_frame()

# %% [markdown]
# Ours beside the tutorial's split of the same files (its script cuts the sorted weight files by count and leaves
# the rest to index 0): the dashed line is an even share. Ours never gives a pod less than one file or 8 MiB, so a
# small model gets fewer pods than `completions` asks for: the extra pods would only start, find nothing, and stop.

# %%
plot_bytes_per_pod(plan, tutorial=pb.download.tutorial_plan(download_spec, plan))

# %% [markdown]
# The Indexed Job as the tutorial's script makes it: `completions` pods in all, `parallelism` at once, each
# downloading the files of its index (`JOB_COMPLETION_INDEX`), with the plan and the worker in a ConfigMap.

# %% tags=["nbval-check-output"]
pb.download.job_table(download_spec, plan)

# %% tags=["nbval-ignore-output"]
print(pb.download.render(download_spec, plan))

# %% [markdown]
# Launch. On the cluster this applies the worker ConfigMap and the Job; locally it starts worker processes. The
# launch uses the plan above, made for this very form: a changed form needs the plan cell run again.

# %% tags=["nbval-ignore-output"]
pb.download.start(download_spec, plan)

# %% tags=["nbval-ignore-output"]
pb.download.progress()

# %% [markdown]
# Wait until every shard has finished (a progress bar follows the bytes).

# %% tags=["nbval-ignore-output"]
pb.download.wait()

# %% [markdown]
# Verify: every file matches what the hub publishes, and the `check` column says what was compared for each file
# (a sha256 only where one was really computed). The completion marker is written last.

# %% tags=["nbval-check-output"]
pb.download.verify()
