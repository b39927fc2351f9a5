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
# # 06 · Benchmark and capacity
#
# **Goal:** how much embedding traffic the endpoint takes, shaped like real embedding traffic (input length ×
# inputs per request × concurrency, bulk ingestion beside single queries), how far that is from what the hardware
# can do, the highest rate that keeps a p99 target, what a stated load needs, a replay that checks the plan
# holds, tuning advice, and the scale-out objects (PodDisruptionBudget, autoscaler).
#
# Everything here is measured on the server that answered: on a cluster the GPUs of the deployment (MFU, GPUs,
# nodes, cost per day); on the local target the CPU server on this machine, so the plan is in copies of that
# server, each priced as the CPU node type 05 prices it as. What a GPU node type would need appears only in a block
# titled **Projection, not a measurement**.
# Every long cell shows a bar with an upper bound on the time left and stops cleanly when interrupted (■): one
# line says what was kept, and the next cell runs normally.

# %% tags=["parameters"]
from tke_playbook.playbook.settings import environ, quick_mode  # QUICK: the library's one rule
TARGET = environ.get("TKE_PLAYBOOK_TARGET", "")  # local | cluster | empty: cluster if kubeconfig found
QUICK = quick_mode(environ.get("TKE_PLAYBOOK_QUICK", ""))  # True: short sweeps (make demo, tests)
CONCURRENCY = [int(c) for c in environ.get("TKE_PLAYBOOK_CONCURRENCY", "1,4" if QUICK else "1,4,16").split(",")]
INPUT_LENGTHS = [int(t) for t in environ.get("TKE_PLAYBOOK_INPUT_TOKENS", "32" if QUICK else "32,200").split(",")]
BATCH_SIZES = [int(b) for b in environ.get("TKE_PLAYBOOK_BATCH_SIZES", "1,4" if QUICK else "1,8").split(",")]
LEVEL_S = float(environ.get("TKE_PLAYBOOK_LEVEL_S", "1" if QUICK else "2.5"))  # each load level's time budget
P99_TARGET_MS = float(environ.get("TKE_PLAYBOOK_P99_TARGET_MS", "200"))  # the queries' latency target
LOAD_QPS, DOCS_PER_DAY = 200.0, 5_000_000  # the load to plan for: queries/s and documents/day
AUTOSCALER = environ.get("TKE_PLAYBOOK_AUTOSCALER", "hpa")  # none | hpa | keda (see Scale-out)

# %%
# %matplotlib inline
from tke_playbook.capacity import (DocumentLoad, QueryLoad, find_sustainable_rate, mfu_note, plan_capacity,
                                   project_gpu, replay, sustainable_rate, with_mfu)
from tke_playbook.loadgen import (compact_table, default_streams, measure_ceiling, run_closed_loop, run_mixed,
                                  write_vllm_bench_json)
from tke_playbook.manifests import ScaleOutSpec, render_scale_out
from tke_playbook.plots import (plot_capacity_table, plot_latency_knee, plot_mixed_latency, plot_sweep,
                                plot_tokens_vs_batch)
from tke_playbook.playbook import headroom_note, open_target

# %% tags=["nbval-ignore-output"]
pb = open_target(TARGET)
endpoint = pb.serving.endpoint()
spec = pb.serving.require_deployed()
hardware = pb.serving.hardware()  # what answers: the local CPU, or the deployment's GPUs
print(hardware)
endpoint

# %% [markdown]
# ## Sweep: input length × inputs per request × concurrency (closed loop)
#
# Each level keeps that many requests in flight for `LEVEL_S` seconds; a request carries `inputs` texts of
# `input_tokens` tokens. Embeddings/s counts texts, tokens/s comes from the server's `usage.prompt_tokens`.
# Every latency column is in milliseconds. *p50 / p99 ms* are the client's: from sending a request to its whole
# answer. The server's own view, scraped from `/metrics` before and after each level, is the mean per request of
# two parts of that time: *server queue mean ms* waiting for the first batch, *server inference mean ms* from
# the first batch to the last (vLLM's RUNNING phase) - so the two never add up to more than the client's time.
# A level cut short or with errors says why in the last column. `closed.table()` has every column.

# %% tags=["nbval-ignore-output"]
closed = run_closed_loop(endpoint.url, endpoint.model, CONCURRENCY, requests_per_level=None,
                         input_tokens=INPUT_LENGTHS, batch_size=BATCH_SIZES, max_duration_s=LEVEL_S,
                         api_key=endpoint.api_key, progress=True, home=pb.settings.home)
compact_table(closed.table())

# %%
plot_sweep(closed.summary, hardware=hardware)

# %%
plot_tokens_vs_batch(closed.summary, hardware=hardware)

# %% [markdown]
# ## Against the physical limit: model FLOPs utilisation
#
# One embedded token costs about 2 × parameters FLOPs, so the TFLOP/s column is what the server delivered. MFU
# divides it by the dense bf16 peak of the GPU that served (spec-sheet values in
# `tke_playbook.specs.hardware.PEAK_BF16_TFLOPS`): 0.5–0.6 is good for prefill-only embedding; a few percent means
# the GPU mostly waits - for batches, for the API server, for the client (facts: e5-mistral reached ~61% of a
# measured H200 peak). On the local CPU server there is no MFU: no CPU peak is measured or cited here.

# %% tags=["nbval-ignore-output"]
print(mfu_note(spec.model, hardware))
compact_table(with_mfu(closed.summary, spec.model, hardware))

# %% [markdown]
# ## The sustainable rate at a p99 target (open loop)
#
# An open loop sends requests at a fixed average rate (Poisson arrivals) whatever the server does, as users do.
# Below capacity a request waits only for the few ahead of it, and p99 creeps up. Once the offered rate passes
# what the server completes per second, the backlog grows by (offered − capacity) requests every second: p99
# then measures how long the test ran, not the server - it **jumps** by orders of magnitude (the knee below, on a
# log scale). The search offers growing fractions of the closed-loop peak measured above for the same request
# shape (so it can never exceed it), until a level breaks the target. **The sustainable rate** - one definition,
# used by the plan and the replay - is the highest level with no errors, p99 within the target minus a 20% margin
# (so a replay holds despite noise) and at least 85% of the offered rate answered; never more than was answered.
# A level offered at the closed-loop peak where the server answered less than offered is *saturating* - a queue
# was building that a short level does not show in p99 - so the search steps back to the level below and says so.
# When every level held, the search never found the knee: the note says the rate is a lower bound.
# When no level holds the target (a loaded machine, a tight target), the cells below start from the best level
# measured instead, and say that it did not hold (`search.planning_rate`).

# %% tags=["nbval-ignore-output"]
search = find_sustainable_rate(endpoint.url, endpoint.model, P99_TARGET_MS, input_tokens=min(INPUT_LENGTHS),
                               ceiling_from=closed.summary, level_s=LEVEL_S, api_key=endpoint.api_key,
                               progress=True, home=pb.settings.home)
print(search.planning_rate, *search.notes, sep="\n")
compact_table(search.table())

# %%
plot_latency_knee(search.opened.summary, P99_TARGET_MS, getattr(search.sustainable, "rate", None),
                  hardware=hardware)

# %% [markdown]
# ## Mixed workload: bulk ingestion beside queries
#
# Both streams at once, each a Poisson stream with its own latency target and reported apart: bulk requests
# carry 16 documents, queries one short text, sized from the sustainable rate above (queries at half of it, bulk
# at a twentieth of the query rate). Long bulk batches in front of a query are what hurt its tail. A stream with
# few requests is drawn one point per request.

# %% tags=["nbval-ignore-output"]
streams = default_streams(getattr(search.planning_rate, "rate", 10.0) / 20, bulk_target_ms=10_000,
                          query_target_ms=P99_TARGET_MS)  # queries at half the sustainable rate, bulk beside
mixed = run_mixed(endpoint.url, endpoint.model, streams, duration_s=3 if QUICK else 8, drain_s=5,
                  api_key=endpoint.api_key, progress=True)
mixed.targets()

# %%
plot_mixed_latency(mixed.records, mixed.targets(), hardware=hardware)

# %% [markdown]
# ## Capacity plan
#
# Replicas = the load ÷ what one replica sustains (rounded up), in replicas of the server measured above. On a
# cluster a replica is the deployment's GPUs: nodes hold as many replicas as they have GPUs, and the cost per day
# comes from the node price table (illustrative defaults: put yours in a YAML/JSON/CSV file named by
# `$TKE_PLAYBOOK_NODE_PRICES`, see `tke_playbook.specs.prices`). Locally a replica is a copy of the CPU server on a
# machine like this one, priced as one node of the CPU node type it stands in for (`SA5.LARGE8`, as in 05's cost
# table; an illustrative price until you set yours). Queries plan from the sustainable rate; bulk documents from
# tokens/s at the longest input and largest batch of the sweep (closed loop: optimistic).

# %% tags=["nbval-ignore-output"]
query_plan = plan_capacity(QueryLoad(LOAD_QPS, P99_TARGET_MS), search.planning_rate, served_on=hardware,
                           prices=pb.settings.node_prices())
plot_capacity_table(query_plan, title=f"Capacity plan: {LOAD_QPS:g} queries/s")

# %% tags=["nbval-ignore-output"]
bulk = sustainable_rate(closed.summary, 10_000, input_tokens=max(INPUT_LENGTHS), inputs=max(BATCH_SIZES))
doc_plan = plan_capacity(DocumentLoad(DOCS_PER_DAY, max(INPUT_LENGTHS)), bulk, served_on=hardware,
                         prices=pb.settings.node_prices())
plot_capacity_table(doc_plan, title=f"Capacity plan: {DOCS_PER_DAY:,.0f} documents/day")

# %% [markdown]
# **Projection (an estimate, not a measurement):** what GPU nodes of the type chosen in 00 would need for both
# loads, from 2 × parameters FLOPs per token and an MFU measured on a GPU (facts.md §9), with its assumptions.

# %% tags=["nbval-ignore-output"]
project_gpu([QueryLoad(LOAD_QPS, P99_TARGET_MS), DocumentLoad(DOCS_PER_DAY, max(INPUT_LENGTHS))], spec.model,
            pb.site.node_type(), per_query=search.planning_rate, prices=pb.settings.node_prices())

# %% [markdown]
# **Replay:** the rate one replica is planned to carry, sent open-loop with the same request shape and judged by
# the same rule against the target itself. When it does not hold, it says what to do.

# %% tags=["nbval-ignore-output"]
report, replayed = replay(endpoint.url, endpoint.model, search.planning_rate, duration_s=3 if QUICK else 8,
                          warmup_requests=20, api_key=endpoint.api_key, progress=True, home=pb.settings.home)
print(report)

# %% [markdown]
# ## Tuning
#
# On a cluster: flags from the sweep - `--max-num-batched-tokens` (encoder models batch only what fits one
# step), `--max-num-seqs` (sequences per step), several API servers when the GPU idles behind one process - applied
# to the serving spec and re-rendered (deploy the tuned spec from 03 to apply it). Locally: the same loop restarts
# the local server with another batch size, wait or worker count (chosen from where the time went above; quick
# mode tries none) and keeps the best sustainable rate; the running server, with the default settings, was
# measured above.

# %% tags=["nbval-ignore-output"]
tuning = pb.serving.tune(closed.table(), P99_TARGET_MS, baseline=search, quick=QUICK, max_candidates=1,
                         input_tokens=min(INPUT_LENGTHS), concurrency=CONCURRENCY, level_s=LEVEL_S, progress=True)
tuning.table()

# %% tags=["nbval-ignore-output"]
print(tuning.rendered())

# %% [markdown]
# ## Scale-out
#
# More than one replica gets a PodDisruptionBudget (drains take one at a time) and a soft topology spread over
# nodes. The autoscaler follows vLLM's queue, `vllm:num_requests_waiting` per pod:
# - **hpa** (default; schema-checked against Kubernetes 1.28 and 1.33): a HorizontalPodAutoscaler on an External
#   metric. Needs prometheus-adapter (or another adapter) serving `v1beta1.external.metrics.k8s.io` with the rule
#   from `build_adapter_rule()`, and Prometheus scraping the pods (`build_pod_monitor()`).
# - **keda**: a KEDA ScaledObject with a Prometheus trigger (TKE managed Prometheus works). Needs KEDA installed
#   (CRD `scaledobjects.keda.sh`); checked for structure only - no KEDA schema is available offline.
#
# New replicas need free GPUs: enable autoscaling on the GPU node pool. The comments list what to install.

# %% tags=["nbval-ignore-output"]
scale = ScaleOutSpec(AUTOSCALER, min_replicas=1, max_replicas=max(4, query_plan.replicas),
                     prometheus_url="http://prometheus-operated.monitoring:9090")  # KEDA: your Prometheus
print(render_scale_out(spec.replace(**query_plan.serving_changes()), scale))

# %% tags=["nbval-ignore-output"]
pb.serving.autoscaler_checks(scale)

# %% [markdown]
# ## Results in `vllm bench serve`'s format
#
# One JSON file per level with the keys `vllm bench serve --backend openai-embeddings --save-result` writes
# (`request_throughput`, `total_token_throughput`, `mean_e2el_ms`, `median_e2el_ms`, `p99_e2el_ms`, …), so these
# numbers sit beside vLLM's own tool. They replace the previous run's files in the state folder (pass a folder to
# keep them elsewhere).

# %% tags=["nbval-ignore-output"]
paths = write_vllm_bench_json(closed.records, endpoint.model, home=pb.settings.home)
print(f"{len(paths)} files (one per level) in {paths[0].parent}")

# %% [markdown]
# ## Is the load generator the bottleneck?
#
# The generator runs on this machine too. Its ceiling is how many requests per second it sends to a server that
# does nothing. When the server measured above comes within half of that, the generator shapes the numbers.

# %% tags=["nbval-ignore-output"]
ceiling = measure_ceiling(max(CONCURRENCY), 2000, input_tokens=32)
print(f"load generator ceiling: {ceiling:,.0f} req/s")

# %% tags=["nbval-ignore-output"]
headroom_note(ceiling, closed.summary, search.opened.summary)
