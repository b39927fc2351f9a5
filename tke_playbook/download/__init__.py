"""Parallel, verified, resumable, non-destructive model download into the PVC (cluster) or a local folder playing
it (local), and the checks that make a model folder servable.

A :class:`~tke_playbook.specs.download.DownloadSpec` says what to fetch; ``list_repo_files`` asks the hub (and
refuses a hostile or broken listing before anything is written); ``plan_download`` splits the bytes across shards
(:func:`tke_playbook.podworker.planner.make_plan`, tied to its spec); the Job of
:mod:`tke_playbook.manifests.download` runs the shards on a cluster and ``run_local_download`` runs them as local
processes - the same standard-library worker either way, so pods install nothing. A file that
already matches its listed hash is kept; new bytes replace a file only once verified. ``verify_model`` re-hashes
a finished folder; ``adopt_model`` makes files fetched by other means servable. ``HubMirror`` serves repositories
on 127.0.0.1 (the offline local target; tests add faults to it).
"""

from .listing import list_repo_files, plan_download
from .local import (download_local, hub_offline, plan_local, progress_frame, require_finished, run_local_download,
                    validate_pvc_dir)
from .mirror import HubMirror, offline_mirror
from .verify import adopt_model, verify_model

__all__ = ["HubMirror", "adopt_model", "download_local", "hub_offline", "list_repo_files", "offline_mirror",
           "plan_download", "plan_local", "progress_frame", "require_finished", "run_local_download",
           "validate_pvc_dir", "verify_model"]
