"""Parallel, verified, resumable model download into the PVC (cluster) or a local folder playing it (local).

``DownloadSpec`` says what to fetch; ``list_repo_files`` asks the hub; ``make_plan`` splits the bytes across
shards; ``build_download_job``/``build_worker_configmap`` run the shards on a cluster and ``run_local_download``
runs them as local processes; ``read_progress`` shows how far they got. ``HubMirror`` serves repositories on
127.0.0.1 (tests, the benchmark and the offline local target).

Cluster pods run a plain ``python:3.11-slim`` image and ``pip install httpx`` when they start, so download nodes
need PyPI or a mirror (``DownloadSpec.pip_index_url``); without one they stop saying so (see ``manifests``).
"""

from .charts import plot_bytes_per_shard
from .listing import list_repo_files, plan_download
from .local import download_local, progress_frame, run_local_download
from .manifests import build_download_job, build_download_objects, build_token_secret, build_worker_configmap
from .mirror import Fault, HubMirror, offline_mirror
from .planner import DownloadPlan, Piece, RepoFile, make_plan, select_files, split_bytes, tutorial_plan
from .progress import read_progress
from .spec import DownloadSpec, Source
from .tokens import HubToken, token_from_env

__all__ = ["DownloadPlan", "DownloadSpec", "Fault", "HubMirror", "HubToken", "Piece", "RepoFile", "Source",
           "build_download_job", "build_download_objects", "build_token_secret", "build_worker_configmap",
           "download_local", "list_repo_files", "make_plan", "offline_mirror", "plan_download", "plot_bytes_per_shard",
           "progress_frame", "read_progress", "run_local_download", "select_files", "split_bytes",
           "token_from_env", "tutorial_plan"]
