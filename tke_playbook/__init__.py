"""tke-playbook: from an empty TKE cluster to a running vLLM embedding service - and the same steps on this machine.

Public names are re-exported here and imported on first use, so ``import tke_playbook`` stays fast and does
not load torch, matplotlib or the Kubernetes client until a notebook needs them.
"""

from __future__ import annotations

import importlib

from .errors import *  # noqa: F401,F403 - the exception hierarchy is public
from .errors import PlaybookError

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "specs.catalog": "Architecture ModelInfo Pooling get_model list_models OFFLINE_MODEL TUTORIAL_MODEL",
    "podworker.modelfolder": "is_complete require_complete read_manifest",
    "specs.target": "Target",
    "hostenv": "resolve_target state_dir local_pvc_dir offline_model_dir load_prices",
    "specs.hardware": "GpuType NodeType NodeRole GPUS NODE_TYPES get_gpu get_node_type node_type_from_labels",
    "specs.fit": "check_fit FitVerdict",
    "specs.storage": "StorageSpec CfsStorageType ReclaimPolicy",
    "manifests.storage": "build_storage_class build_pvc",
    "specs.serving": "ServingSpec ServiceType PullPolicy seed_profile",
    "specs.vllm_args": "build_vllm_args build_command",
    "manifests.serving": "build_secret build_deployment build_service build_leader_worker_set build_workload "
                         "build_serving_objects build_proxy_configmap",
    "manifests.plan": "build_plan plan_notes build_helm_values",
    "manifests.yamldoc": "plan_to_yaml",
    "manifests.profiles": "get_profile with_overrides render_profile",
    "specs.download": "DownloadSpec Source DownloadMode",
    "specs.tokens": "HubToken",
    "podworker.planner": "DownloadPlan RepoFile Piece make_plan tutorial_plan check_plan_matches",
    "podworker.progress": "read_progress",
    "manifests.download": "build_download_job build_worker_configmap build_token_secret build_download_objects",
    "download": "plan_download list_repo_files run_local_download download_local progress_frame HubMirror "
                "offline_mirror require_finished verify_model adopt_model",
    "embed": "EmbeddingClient AsyncEmbeddingClient LexicalEmbedder LocalEmbedder",
    "loadgen": "run_closed_loop run_open_loop summarize headroom_warning measure_ceiling LoadResult HttpEngine "
               "run_mixed Stream write_vllm_bench_json",
    "capacity": "find_sustainable_rate sustainable_rate plan_capacity replay recommend_vllm tune_local "
                "DocumentLoad QueryLoad LocalSettings with_mfu model_flops_utilisation",
    "manifests.scaleout": "ScaleOutSpec Autoscaler build_scale_out build_pdb build_hpa build_scaled_object render_scale_out",
    "playbook.scaleout": "autoscaler_checks",
    "specs.prices": "NodePrice",
    "evaluate": "ndcg_at_k recall_at_k mrr evaluate per_query_table cosine_matrix retrieve score_distributions pca_2d "
                "load_bilingual sentence_set RetrievalDataset SentenceSet evaluate_embedder compare_embedders "
                "EvaluationResult Comparison",
    "localserver": "start_server LocalServer",
    "plots": "plot_similarity_heatmap plot_heatmaps_side_by_side plot_comparison_heatmaps plot_comparison_panel "
             "plot_comparison_pca plot_pca plot_score_distributions plot_latency_histogram plot_latency_cdf "
             "plot_throughput_vs_concurrency plot_sweep plot_tokens_vs_batch "
             "plot_mixed_latency plot_latency_knee plot_capacity_table plot_bytes_per_pod",
    "playbook": "open_target Playbook ServiceEndpoint Note Level spec_table tidy headroom_note",
    "playbook.widgets": "NodeTypePicker PvcPicker ModelPicker DownloadForm ServingForm TextForm",
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names.split()}

__all__ = sorted(_WHERE) + sorted(n for n in dir() if n.endswith("Error") and not n.startswith("_"))


def __getattr__(name: str):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'tke_playbook' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # cache: the next lookup skips this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
