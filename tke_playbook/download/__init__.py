"""Parallel, verified, resumable, non-destructive model download into the PVC (cluster) or a local folder playing
it (local), and the checks that make a model folder servable.

``DownloadSpec`` says what to fetch; ``list_repo_files`` asks the hub (and refuses a hostile or broken listing
before anything is written); ``make_plan`` splits the bytes across shards and ties the plan to its spec;
``build_download_job``/``build_worker_configmap`` run the shards on a cluster and ``run_local_download`` runs
them as local processes - the same standard-library worker either way, so pods install nothing. A file that
already matches its listed hash is kept; new bytes replace a file only once verified. ``verify_model`` re-hashes
a finished folder; ``adopt_model`` makes files fetched by other means servable. ``HubMirror`` serves repositories
on 127.0.0.1 (the offline local target; tests add faults to it).
"""

from ..hostenv import token_from_env
from ..manifests.download import build_download_job, build_download_objects, build_token_secret, build_worker_configmap
from ..podworker.planner import (DownloadPlan, Piece, RepoFile, check_plan_matches, make_plan, select_files,
                                 split_bytes, tutorial_plan)
from ..podworker.progress import read_progress
from ..specs.download import DownloadMode, DownloadSpec, Source
from ..specs.tokens import HubToken
from .listing import list_repo_files, plan_download
from .local import (download_local, hub_offline, plan_local, progress_frame, require_finished, run_local_download,
                    validate_pvc_dir)
from .mirror import HubMirror, offline_mirror
from .verify import adopt_model, verify_model

__all__ = ["DownloadMode", "DownloadPlan", "DownloadSpec", "HubMirror", "HubToken", "Piece", "RepoFile",
           "Source", "adopt_model", "build_download_job", "build_download_objects", "build_token_secret",
           "build_worker_configmap", "check_plan_matches", "download_local", "hub_offline", "list_repo_files",
           "make_plan", "offline_mirror", "plan_download", "plan_local", "progress_frame", "read_progress",
           "require_finished", "run_local_download", "select_files", "split_bytes", "token_from_env",
           "tutorial_plan", "validate_pvc_dir", "verify_model"]
