"""Glue for the notebook: per-model 2-D projections from a scorecard result, and the parity reference of a
target (in-process on the served folder locally; the CPU Job on a cluster)."""

from __future__ import annotations

import numpy as np

from ..errors import NotDeployedError
from ..evaluate.similarity import project_2d
from ..podworker.modelfolder import is_complete
from ..specs.catalog import OFFLINE_MODEL
from ..specs.target import offline_model_dir
from .parity import ReferenceEncoder
from .reference_job import ReferenceJobSpec, run_reference_job


def projections(result, method: str = "pca") -> dict[str, np.ndarray]:
    """``{system: (documents, 2) points}`` for every dense system of a scorecard on the bilingual set."""
    return {name: project_2d(vectors, method) for name, vectors in result.doc_vectors.items()}


def reference_for(pb, model: str = "", **job_options):
    """The parity reference for ``model`` (default: the last deployed) on a target: on a cluster, the CPU Job
    reading the PVC; locally, sentence-transformers in-process on the folder the local server serves."""
    spec = pb.deployed_spec(model)
    kube = getattr(pb, "kube", None)
    if kube is not None:
        if spec is None:
            raise NotDeployedError(f"{model or 'No model'} was not deployed from this machine: run 03_deploy_vllm "
                                   "first, or pass model= one that was.", obj=model)
        return run_reference_job(kube, ReferenceJobSpec(spec.model, namespace=spec.namespace, pvc=spec.pvc_name,
                                                        **job_options))
    folder = pb.model_folder(spec) if spec is not None else None
    if folder is None or not is_complete(folder):
        folder = offline_model_dir()  # what the local server serves when nothing complete was deployed
    return ReferenceEncoder(folder, spec.model if spec is not None else OFFLINE_MODEL)


def default_node_type(pb) -> str:
    """The node type to price a target's endpoints on: on a cluster the GPU node type chosen in 00
    (``pb.node_type()``, the tutorial's PNV5b.8XLARGE96 when none was chosen); locally the smallest CPU node
    (SA5.LARGE8, 4 vCPU), because the local server's throughput was measured on a CPU."""
    if getattr(pb, "kube", None) is None:
        return "SA5.LARGE8"
    chosen = pb.node_type()
    return chosen.name if chosen is not None else "PNV5b.8XLARGE96"
