"""Glue for the notebook: per-model 2-D projections from a scorecard result, and the parity reference of a
target (in-process on the served folder locally; the CPU Job on a cluster)."""

from __future__ import annotations

import numpy as np

from ..errors import InvalidSpecError, NotDeployedError
from ..evaluate.similarity import project_2d
from ..hostenv import offline_model_dir
from ..podworker.modelfolder import is_complete
from ..specs.catalog import OFFLINE_MODEL
from ..specs.hardware import get_node_type
from ..specs.target import Target
from .cost import LOCAL_PRICE_NODE
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
    return ReferenceEncoder(served_model_folder(pb, model), spec.model if spec is not None else OFFLINE_MODEL)


def served_model_folder(pb, model: str = ""):
    """The model folder the local target serves: the deployed model's complete download, else the packaged
    offline model (what the local server serves when nothing complete was deployed)."""
    spec = pb.deployed_spec(model)
    folder = pb.model_folder(spec) if spec is not None else None
    return folder if folder is not None and is_complete(folder) else offline_model_dir()


def _is_local(pb) -> bool:
    target = getattr(pb, "target", None)
    return Target(target) is Target.LOCAL if target is not None else getattr(pb, "kube", None) is None


def default_node_type(pb, requested: str = "") -> str:
    """The node type to price a target's endpoints on: ``requested`` when given, else on a cluster the node type
    chosen in 00 (``pb.node_type()``: where the endpoints were deployed). Locally the endpoint's throughput is
    measured on this machine's CPU, so it is priced as a CPU node (``LOCAL_PRICE_NODE``); a GPU node type is
    refused there - a GPU cost needs a GPU measurement, or 06's labelled projection."""
    if requested and requested.strip():
        node = get_node_type(requested.strip())
        if _is_local(pb) and node.gpu_count:
            raise InvalidSpecError(f"NODE_TYPE {node.name} has GPUs, but locally the throughput was measured on this "
                                   f"machine's CPU: leave NODE_TYPE empty (priced as {LOCAL_PRICE_NODE}) or use a CPU "
                                   "node type; GPU costs come from a cluster run (or 06's projection)",
                                   field="node_type", value=node.name)
        return node.name
    if _is_local(pb):
        return LOCAL_PRICE_NODE
    chosen = pb.node_type()
    if chosen is None:
        raise InvalidSpecError("no node type is known for this cluster: choose one in 00_prerequisites or set "
                               "NODE_TYPE", field="node_type", value=None)
    return chosen.name
