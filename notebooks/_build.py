"""Write the notebooks from this one script, so they stay thin, uniform and free of outputs.

    python notebooks/_build.py            # rewrite notebooks/*.ipynb (no outputs)
    python notebooks/_build.py --check    # exit 1 if a committed notebook differs from what this writes
    python notebooks/_build.py --store-checked build/notebooks   # keep the outputs of checked cells only

Style (docs/DESIGN.md): a markdown goal, a cell tagged ``parameters`` (UPPER_CASE, defaults from environment
variables, empty = the target's default), the imports, then one action per cell. ``# NBVAL_IGNORE_OUTPUT``
marks cells whose output changes between runs (ports, timings, paths); ``# NBVAL_CHECK_OUTPUT`` marks the
deterministic ones that nbval compares: ``--store-checked`` copies their outputs from notebooks executed by
``python -m tke_playbook.demo`` (every other cell is committed without output).
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
IGNORE = "# NBVAL_IGNORE_OUTPUT\n"
CHECK = "# NBVAL_CHECK_OUTPUT\n"
TARGET_PARAM = 'TARGET = os.environ.get("TKE_PLAYBOOK_TARGET", "")  # local | cluster | "" = cluster if kubeconfig found'


def md(text: str):
    return nbformat.v4.new_markdown_cell(text.strip())


def code(text: str, *tags: str):
    cell = nbformat.v4.new_code_cell(text.strip())
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def params(*lines: str):
    return code("import os\n\n" + "\n".join((TARGET_PARAM,) + lines), "parameters")


NOTEBOOKS: dict[str, list] = {}

NOTEBOOKS["00_prerequisites"] = [
    md("""
# 00 · Prerequisites

**Goal:** check that the target can run the tutorial, and choose the GPU node type to serve on.

The tutorial starts with a TKE standard cluster (VPC-CNI, the CFS storage add-on), a download node pool
(3 × SA5.LARGE8 with public IPs) and one GPU node (PNV5b.8XLARGE96, one 48 GB L20). Here the same steps run on one
of two targets: **cluster** (your TKE cluster, from kubeconfig) or **local** (this machine: a folder plays the PVC
and a CPU server plays vLLM). Set `TKE_PLAYBOOK_TARGET=local|cluster`; without it the cluster is used when a
kubeconfig is found, else this machine.
"""),
    params('KUBE_CONTEXT = os.environ.get("TKE_PLAYBOOK_CONTEXT", "")  # "" = the kubeconfig\'s current context',
           'MODEL = os.environ.get("TKE_PLAYBOOK_MODEL", "")  # "" = the target\'s default model',
           'NODE_TYPE = os.environ.get("TKE_PLAYBOOK_NODE_TYPE", "")  # "" = PNV5b.8XLARGE96 when available'),
    code("from tke_playbook.widgets import NodeTypePicker\nfrom tke_playbook.workflow import open_target"),
    md("Open the target. On a cluster this connects with your kubeconfig context; locally it needs nothing."),
    code(IGNORE + "pb = open_target(TARGET, context=KUBE_CONTEXT)\npb"),
    md("""
## Preflight

Each row is one check; a failed row says what to do. On a cluster: reachable API, Ready nodes, GPU nodes, the
model's fit on their GPU, a CFS StorageClass. Locally: Python, torch, the offline model, disk and the port.
"""),
    code(IGNORE + "pb.preflight(MODEL).to_frame()"),
    md("## Node types\n\nThe cluster's nodes (locally: the catalog of TKE instance types the toolkit knows)."),
    code(IGNORE + "pb.nodes_table()"),
    md("Pick the GPU node type the model will be served on; the fit checks of the next notebooks use it."),
    code("node_picker = NodeTypePicker(pb.node_types(), default=NODE_TYPE)\nnode_picker"),
    code(CHECK + "node_type = pb.choose_node_type(node_picker.node_type)\nprint(node_type.name)"),
]

NOTEBOOKS["01_storage"] = [
    md("""
# 01 · Storage: StorageClass and PVC `ai-model`

**Goal:** a shared volume that the download Job writes the model into and vLLM reads it from.

The tutorial creates a StorageClass of type CFS (file storage) in the GPU node's zone, then a PVC named
`ai-model` on it. Locally, a folder under the state directory plays the PVC; the manifests are the same.
"""),
    params('PVC_NAME = os.environ.get("TKE_PLAYBOOK_PVC", "ai-model")'),
    code("from tke_playbook.widgets import PvcPicker\nfrom tke_playbook.workflow import open_target, spec_table"),
    code(IGNORE + "pb = open_target(TARGET)\npb"),
    md("Choose the PVC: an existing one, or type a new name (`ai-model` matches the download script's default)."),
    code("pvc_picker = PvcPicker(pb.pvcs(), default=PVC_NAME)\npvc_picker"),
    code(CHECK + "storage_spec = pb.storage_defaults(pvc_picker.pvc_name)\nspec_table(storage_spec)"),
    md("The StorageClass and the PVC as they are applied to the cluster:"),
    code(CHECK + "print(pb.render_storage(storage_spec))"),
    md("Create them and wait until the PVC is `Bound` (locally: create the folder)."),
    code(IGNORE + "pb.create_storage(storage_spec)"),
    code(CHECK + "print(pb.pvcs())"),
]

NOTEBOOKS["02_download_model"] = [
    md("""
# 02 · Download the model onto the PVC

**Goal:** the model's files on the PVC, verified, with a completion marker that serving checks.

The tutorial runs `tke-llm-downloader.sh --pvc ai-model --completions 3 --parallelism 3 --model …`: an Indexed Job
whose pods each download a share of the files. Here the files are split by **size**, each file is checked against
the hub's size and sha256, and the download resumes if a pod dies. Locally, worker processes do the same.
"""),
    params('MODEL = os.environ.get("TKE_PLAYBOOK_MODEL", "")  # "" = the target\'s default model',
           'SOURCE = os.environ.get("TKE_PLAYBOOK_SOURCE", "")  # modelscope | huggingface | "" = target default',
           'COMPLETIONS = int(os.environ.get("TKE_PLAYBOOK_COMPLETIONS", "3"))',
           'PARALLELISM = int(os.environ.get("TKE_PLAYBOOK_PARALLELISM", "3"))'),
    code("%matplotlib inline\nfrom tke_playbook.widgets import DownloadForm\nfrom tke_playbook.workflow import open_target, spec_table\n"
         "from tke_playbook.workflow.charts import plot_bytes_per_pod"),
    code(IGNORE + "pb = open_target(TARGET)\npb"),
    md("Pick the model (the verdict says whether it fits the GPU node type chosen in 00), the hub, and how many "
       "shards (`completions`) and pods at once (`parallelism`)."),
    code("form = DownloadForm(pb.download_defaults(MODEL, SOURCE, COMPLETIONS, PARALLELISM), pb.node_type())\nform"),
    code(CHECK + "download_spec = form.spec()\nspec_table(download_spec)"),
    md("The plan: which files each pod downloads, and the bytes per pod (balanced by size, not by count)."),
    code(CHECK + "plan = pb.plan_download(download_spec)\nplan.to_frame()"),
    code("plot_bytes_per_pod(plan)"),
    md("Launch. On the cluster this applies the worker ConfigMap and the Job; locally it starts worker processes."),
    code(IGNORE + "pb.start_download(download_spec, plan)"),
    code(IGNORE + "pb.download_progress()"),
    md("Wait until every shard has finished (progress is printed as it moves)."),
    code(IGNORE + "pb.wait_for_download()"),
    md("Verify: every file has the hub's size and sha256, and the completion marker is written."),
    code(CHECK + "pb.verify_download()"),
]

NOTEBOOKS["03_deploy_vllm"] = [
    md("""
# 03 · Deploy vLLM

**Goal:** an OpenAI-compatible embeddings endpoint serving the model from the PVC.

The tutorial edits the `vllm-inference-tke` chart's `values.yaml` and runs `helm install`. The form below is
prefilled with those values (the seed profile), except that an API key is **generated** and kept in a Secret
rather than left empty. Locally, the CPU server plays vLLM on the same port (60000) and API.
"""),
    params('MODEL = os.environ.get("TKE_PLAYBOOK_MODEL", "")  # "" = the target\'s default model'),
    code("from tke_playbook.widgets import ServingForm\nfrom tke_playbook.workflow import open_target, spec_table"),
    code(IGNORE + "pb = open_target(TARGET)\npb"),
    md("The chart's main values. The verdict says whether the model, at this `max_model_len`, memory share and "
       "`tpSize`, fits the GPU node type chosen in 00 (the tutorial's FAQ: *CUDA out of memory* means it does not)."),
    code("form = ServingForm(pb.serving_defaults(MODEL), pb.pvcs(), pb.node_type())\nform"),
    md("The form read into a spec (the settings that differ most between deployments; the YAML below has all):"),
    code(CHECK + "serving_spec = form.spec()\n"
         "spec_table(serving_spec, [\"name\", \"model\", \"pvc_name\", \"max_model_len\", \"max_batch_size\", \"gpu_count\",\n"
         "                          \"service_type\", \"service_port\", \"api_key_secret\"])"),
    md("The API key: generated once, kept in Secret `vllm-<model>-api-key` (locally a 0600 file). Only a masked "
       "form is ever shown."),
    code(IGNORE + "print(pb.masked_api_key(serving_spec))"),
    md("What is applied (the Secret's value is not shown):"),
    code(CHECK + "print(pb.render_serving(serving_spec))"),
    md("The same deployment as Helm values for the tutorial's chart (`helm install vllm-service . -f values.yaml`):"),
    code(CHECK + "print(pb.helm_values(serving_spec))"),
    md("Deploy and wait until ready. The log tail is followed; if it fails, the diagnosis says why in plain words "
       "(e.g. *model not found*: the download has not finished; *CUDA out of memory*: the GPU is too small)."),
    code(IGNORE + "endpoint = pb.deploy(serving_spec)\nendpoint"),
    code(IGNORE + "print(pb.deployment_logs(10))"),
    code(IGNORE + "pb.diagnose()"),
]

NOTEBOOKS["04_embeddings"] = [
    md("""
# 04 · Embeddings

**Goal:** send the tutorial's request, then see what the vectors mean: a similarity heatmap of Chinese and
English sentences, and how long requests take.
"""),
    params('TEXT = os.environ.get("TKE_PLAYBOOK_TEXT", "用Python实现快速排序算法")',
           'QUICK = os.environ.get("TKE_PLAYBOOK_QUICK", "") not in ("", "0")',
           'REQUESTS = int(os.environ.get("TKE_PLAYBOOK_REQUESTS", "20" if QUICK else "100"))'),
    code("%matplotlib inline\nfrom tke_playbook.datasets import sentence_set\nfrom tke_playbook.loadgen import run_closed_loop\n"
         "from tke_playbook.plots import plot_latency_cdf, plot_latency_histogram, plot_similarity_heatmap\n"
         "from tke_playbook.similarity import cosine_matrix\nfrom tke_playbook.widgets import TextForm\n"
         "from tke_playbook.workflow import describe_embedding_answer, open_target, tidy"),
    md("The endpoint deployed in 03 (locally it is restarted if this kernel did not start it)."),
    code(IGNORE + "pb = open_target(TARGET)\nendpoint = pb.endpoint()\nendpoint"),
    md("The tutorial's request (the key is read from the Secret and shown as `$VLLM_API_KEY`):"),
    code(IGNORE + "print(endpoint.curl_text(TEXT))"),
    code("text_form = TextForm(\"Sentence to embed\", TEXT)\ntext_form"),
    code(IGNORE + "answer = endpoint.curl(text_form.text)\ndescribe_embedding_answer(answer)"),
    md("""
## Similarity heatmap

Sentences ordered by topic, English with their Chinese translations. A multilingual model lights up the
topic blocks, translation pairs included; an English-only model (the local all-MiniLM-L6-v2) shows the
Chinese sentences apart.
"""),
    code(CHECK + "sentences = sentence_set()\nprint(len(sentences), 'sentences,', len(set(sentences.topics)), 'topics')"),
    code("vectors = endpoint.client().embed_documents(list(sentences.texts))\nsimilarity = cosine_matrix(vectors)"),
    code("plot_similarity_heatmap(similarity, sentences.labels(), sentences.topics, label_fallbacks=sentences.ids,\n"
         "                        title=f\"Cosine similarity: {endpoint.model}\")"),
    md("""
## Latency

A short closed-loop run: first one request in flight at a time, then four. The table gives requests per second
and latency percentiles (p50: half the requests were faster; p99: all but one in a hundred).
"""),
    code(IGNORE + "load = run_closed_loop(endpoint.url, endpoint.model, concurrency_levels=(1, 4),\n"
         "                       requests_per_level=REQUESTS, api_key=endpoint.api_key)\ntidy(load.summary)"),
    code("plot_latency_histogram(load.records, title=\"Request latency, both levels\")"),
    md("The same requests by level: each line is the share of requests answered within a time. With four in "
       "flight they queue, so the line moves right."),
    code("plot_latency_cdf(load.records, title=\"Latency by requests in flight\")"),
]

NOTEBOOKS["05_compare_models"] = [
    md("""
# 05 · Compare two embedding models

**Goal:** which model retrieves better on a bilingual set, and at what cost?

On a cluster: BGE (`BAAI/bge-m3`) against E5 (`intfloat/e5-mistral-7b-instruct`), both deployed with 03.
Locally: the offline pair, all-MiniLM-L6-v2 served by the local server against a lexical TF-IDF baseline.
Both are evaluated with nDCG, recall and MRR, same-language and cross-lingual, plus latency.
"""),
    params('MODEL_A = os.environ.get("TKE_PLAYBOOK_MODEL_A", "")  # "" = bge-m3 (cluster) / all-MiniLM-L6-v2 (local)',
           'MODEL_B = os.environ.get("TKE_PLAYBOOK_MODEL_B", "")  # "" = e5-mistral (cluster) / lexical (local)'),
    code("%matplotlib inline\nfrom tke_playbook.compare import compare_embedders\n"
         "from tke_playbook.plots import (plot_comparison_panel, plot_heatmaps_side_by_side,\n"
         "                                plot_score_distributions)\n"
         "from tke_playbook.workflow import open_target"),
    code(IGNORE + "pb = open_target(TARGET)\nembedder_a, embedder_b = pb.comparison_pair(MODEL_A, MODEL_B)\n"
         "embedder_a.name, embedder_b.name"),
    md("Evaluate both on the shipped bilingual retrieval set (the same queries, documents and judgements)."),
    code("comparison = compare_embedders(embedder_a, embedder_b)"),
    code(IGNORE + "comparison.table.round(3)"),
    md("""
How to read it: *same-language* pairs a query with documents in its own language, *cross-lingual* with their
translation. Word overlap is a strong signal within one language, so the lexical baseline is hard to beat there
on a small set - that is why it is here: a model has to beat it to earn its GPU. Across languages no words are
shared and the baseline collapses; that is where a multilingual model (bge-m3, e5-mistral) must win. Locally,
all-MiniLM-L6-v2 is an English model, so expect it to be weak on Chinese queries.
"""),
    code("plot_comparison_panel(comparison)"),
    md("Side by side: how each model sees the sentence set."),
    code("plot_heatmaps_side_by_side(comparison.a.sentence_sim, comparison.b.sentence_sim,\n"
         "                           comparison.sentence_labels, comparison.sentence_topics,\n"
         "                           names=comparison.names)"),
    md("Scores of relevant against irrelevant query-document pairs: the further apart, the easier retrieval is."),
    code("plot_score_distributions(comparison.a.distributions,\n"
         "                         title=f\"{comparison.a.name}: relevant vs irrelevant\")"),
    code("plot_score_distributions(comparison.b.distributions,\n"
         "                         title=f\"{comparison.b.name}: relevant vs irrelevant\")"),
]

NOTEBOOKS["06_benchmark"] = [
    md("""
# 06 · Benchmark

**Goal:** how much load the endpoint takes: a closed-loop concurrency sweep (fixed requests in flight) and an
open-loop rate sweep (Poisson arrivals), with the server's own metrics beside the client's.
"""),
    params('QUICK = os.environ.get("TKE_PLAYBOOK_QUICK", "") not in ("", "0")',
           'CONCURRENCY = [int(c) for c in os.environ.get("TKE_PLAYBOOK_CONCURRENCY", "1,4" if QUICK else "1,4,16,32").split(",")]',
           'RATES = [float(r) for r in os.environ.get("TKE_PLAYBOOK_RATES", "5,10" if QUICK else "5,20,50").split(",")]',
           'REQUESTS = int(os.environ.get("TKE_PLAYBOOK_REQUESTS", "30" if QUICK else "200"))',
           'INPUT_TOKENS = int(os.environ.get("TKE_PLAYBOOK_INPUT_TOKENS", "128"))',
           'CEILING_REQUESTS = int(os.environ.get("TKE_PLAYBOOK_CEILING_REQUESTS", "2000" if QUICK else "5000"))'),
    code("%matplotlib inline\nfrom tke_playbook.loadgen import measure_ceiling, run_closed_loop, run_open_loop\n"
         "from tke_playbook.plots import plot_latency_cdf, plot_throughput_vs_concurrency\n"
         "from tke_playbook.workflow import headroom_note, open_target, tidy"),
    code(IGNORE + "pb = open_target(TARGET)\nendpoint = pb.endpoint()\nendpoint"),
    md("Closed loop: each level keeps that many requests in flight."),
    code(IGNORE + "closed = run_closed_loop(endpoint.url, endpoint.model, CONCURRENCY, REQUESTS, (INPUT_TOKENS,),\n"
         "                         api_key=endpoint.api_key)\ntidy(closed.summary)"),
    code("plot_throughput_vs_concurrency(closed.summary)"),
    md("Open loop: requests arrive at a fixed average rate whatever the answers do, so queueing shows as latency."),
    code(IGNORE + "opened = run_open_loop(endpoint.url, endpoint.model, RATES, requests=REQUESTS,\n"
         "                       input_tokens=(INPUT_TOKENS,), api_key=endpoint.api_key)\ntidy(opened.summary)"),
    code("plot_latency_cdf(opened.records)"),
    md("""
The server's view (from its Prometheus `/metrics`, scraped before and after each level): requests it served, its
own mean latency and queue time, and the prompt tokens it counted. Its means are exact; its percentiles come from
a histogram whose first bucket ends at `server_first_bucket_ms` (300 ms in vLLM), so those below it are left out.
"""),
    code(IGNORE + "tidy(closed.server)"),
    md("""
## Is the load generator the bottleneck?

The generator runs on this machine too. Its ceiling is how many requests per second it sends to a server that
does nothing. When the server measured above comes within half of that, the generator shapes the numbers.
"""),
    code(IGNORE + "ceiling = measure_ceiling(max(CONCURRENCY), CEILING_REQUESTS, input_tokens=INPUT_TOKENS)\n"
         "print(f\"load generator ceiling: {ceiling:,.0f} req/s\")"),
    code(IGNORE + "headroom_note(ceiling, closed.summary, opened.summary)"),
]

NOTEBOOKS["99_cleanup"] = [
    md("""
# 99 · Clean up

**Goal:** remove what the playbook created. The PVC holding the downloaded models is kept unless you say so,
because downloading again takes time.
"""),
    params('KEEP_PVC = os.environ.get("TKE_PLAYBOOK_KEEP_PVC", "1") not in ("0", "false", "no")'),
    code("from tke_playbook.workflow import open_target"),
    code(IGNORE + "pb = open_target(TARGET)\npb"),
    md("""
Delete what the playbook made. On a cluster that is every object labelled
`app.kubernetes.io/managed-by=tke-playbook` in the namespace: the vLLM Deployments and Services, the download Jobs
and their ConfigMaps, the API-key and hub-token Secrets; the PVC only with `TKE_PLAYBOOK_KEEP_PVC=0`. Locally:
the server, the API key file and, with `TKE_PLAYBOOK_KEEP_PVC=0`, the folders playing PVCs.
"""),
    code(IGNORE + "pb.teardown(keep_pvc=KEEP_PVC)"),
    md("The PVCs left (the downloaded models stay on them for the next run):"),
    code(IGNORE + "pb.pvcs()"),
]


def build(name: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = NOTEBOOKS[name]
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{name[:2]}-{i:02d}"
    return nb


def with_checked_outputs(nb: nbformat.NotebookNode, executed: Path) -> nbformat.NotebookNode:
    """``nb`` with the outputs of its ``# NBVAL_CHECK_OUTPUT`` cells taken from the executed copy (same cells)."""
    ran = nbformat.read(executed, as_version=4)
    if [c.source for c in ran.cells] != [c.source for c in nb.cells]:
        raise SystemExit(f"{executed} was executed from other sources: run the demo again first")
    count = 0
    for cell, done in zip(nb.cells, ran.cells):
        if cell.cell_type == "code" and CHECK.strip() in cell.source:
            count += 1
            cell.outputs = [o for o in done.outputs if o.get("output_type") != "error"]
            for output in cell.outputs:
                if "execution_count" in output:
                    output["execution_count"] = count
            cell.execution_count = count
    return nb


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    executed_dir = Path(argv[argv.index("--store-checked") + 1]) if "--store-checked" in argv else None
    stale = []
    for name in NOTEBOOKS:
        path = HERE / f"{name}.ipynb"
        nb = build(name)
        if executed_dir is not None:
            nb = with_checked_outputs(nb, executed_dir / f"{name}.ipynb")
        elif path.is_file():  # keep the stored outputs of checked cells when only rewriting sources
            old = nbformat.read(path, as_version=4)
            if [c.source for c in old.cells] == [c.source for c in nb.cells]:
                for cell, before in zip(nb.cells, old.cells):
                    if cell.cell_type == "code" and CHECK.strip() in cell.source:
                        cell.outputs, cell.execution_count = before.outputs, before.execution_count
        text = nbformat.writes(nb) + "\n"
        if "--check" in argv:
            if not path.is_file() or _strip(path.read_text(encoding="utf-8")) != _strip(text):
                stale.append(path.name)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print("out of date (run python notebooks/_build.py):", ", ".join(stale))
        return 1
    return 0


def _strip(text: str) -> dict:
    """A notebook without outputs, for comparing sources only."""
    nb = nbformat.reads(text, as_version=4)
    return [(c.cell_type, c.source, c.metadata.get("tags", [])) for c in nb.cells]


if __name__ == "__main__":
    raise SystemExit(main())
