"""The research scorecard: any number of embedders (endpoints, in-process models, BM25, hybrids) and two-stage
pipelines (a first stage, then a reranker on ``/rerank``) on real retrieval benchmarks through ``mteb``, with
bootstrap intervals, paired tests and disagreement tables; served-vector and served-output parity against a
sentence-transformers reference; quality joined with cost per million tokens; and the frontier of vector
dimension × precision against quality and the cost of a million documents.

    from tke_playbook.scorecard import local_systems, run_scorecard
    result = run_scorecard(local_systems())          # MiniLM, BM25 and their hybrid on the shipped set
    result.table; result.paired_table(); result.disagreements("all-MiniLM-L6-v2", "bm25")
"""

from .bm25 import BM25Retriever, bm25_tokens
from .cache import CachedEmbedder, EmbeddingCache, default_cache_dir, revision_of
from .cluster import deployed_embedders, service_name
from .cost import (LOCAL_PRICE_NODE, Throughput, cost_per_million_tokens, cost_summary, cost_table, price_table,
                   scorecard_throughputs, throughput_from_summary)
from .frontier import Frontier, frontier_variants, local_frontier, pareto_front, run_frontier, target_frontier
from .fusion import reciprocal_rank_fusion
from .pipelines import CachedReranker, TwoStage, pipeline_table, rerank_run, reranker_for, two_stage_systems
from .output_parity import OutputParityReport, check_output_parity
from .parity import Cause, ParityReport, ReferenceEncoder, check_parity, probe_set, wrong_pooling_demo
from .reference_job import (PrecomputedReference, ReferenceJobSpec, build_reference_configmap, build_reference_job,
                            parse_reference_log, reference_texts, run_reference_job)
from .registry import Hybrid, Kind, build_systems, local_endpoints, local_systems, stop_local, target_systems
from .report import DatasetCard, dataset_card, results_table
from .run import ScorecardResult, run_scorecard
from .search import MtebEncoder, RecordingSearch
from .storage_prices import StoragePrice, load_storage_prices, storage_price, storage_price_table
from .stats import (PairedMethod, PairedTest, PairwiseTests, bootstrap_ci, disagreements, holm_adjust, intervals,
                    paired_test, pairwise_tests, per_query_scores)
from .task import (SUGGESTED_TASKS, TkeBilingualRetrieval, bilingual_task, choose_task, evaluate_search, named_task,
                   subsample)
from .visuals import default_node_type, projections, reference_for

__all__ = ["BM25Retriever", "bm25_tokens", "CachedEmbedder", "EmbeddingCache", "default_cache_dir", "revision_of",
           "deployed_embedders", "service_name", "Throughput",
           "cost_per_million_tokens", "cost_table", "cost_summary", "LOCAL_PRICE_NODE", "price_table", "scorecard_throughputs",
           "throughput_from_summary", "reciprocal_rank_fusion", "Cause", "ParityReport", "ReferenceEncoder",
           "check_parity", "probe_set", "wrong_pooling_demo", "choose_task", "PrecomputedReference", "ReferenceJobSpec", "build_reference_configmap",
           "build_reference_job", "parse_reference_log", "reference_texts", "run_reference_job", "Hybrid", "Kind",
           "build_systems", "local_systems", "target_systems", "local_endpoints", "stop_local", "ScorecardResult", "run_scorecard", "PairedMethod",
           "PairedTest", "PairwiseTests", "bootstrap_ci", "disagreements", "holm_adjust", "intervals", "paired_test",
           "pairwise_tests", "per_query_scores", "DatasetCard", "dataset_card", "results_table",
           "SUGGESTED_TASKS", "MtebEncoder", "RecordingSearch", "TkeBilingualRetrieval", "bilingual_task", "evaluate_search",
           "named_task", "subsample", "projections", "reference_for", "default_node_type", "CachedReranker",
           "TwoStage", "pipeline_table", "rerank_run", "reranker_for", "two_stage_systems", "Frontier",
           "frontier_variants", "local_frontier", "pareto_front", "run_frontier", "target_frontier", "StoragePrice", "load_storage_prices",
           "storage_price", "storage_price_table", "OutputParityReport", "check_output_parity"]
