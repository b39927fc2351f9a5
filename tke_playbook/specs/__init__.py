"""What to deploy, as values: frozen, validated specs and the facts they are checked against. Pure - no I/O.

``catalog`` (models), ``hardware`` (GPUs, TKE node types), ``fit`` (does a model fit a GPU), ``storage``,
``serving`` (the user's choices and the resolved spec) and ``download`` (the three specs a deployment is made of),
``vllm_flags`` and ``vllm_args`` (which vLLM accepts which flag; the command line), ``plain`` (specs as JSON),
``labels`` and ``names`` (the rules every Kubernetes name and label follows), ``tokens`` (hub tokens, never
printed), ``apikeys`` (the API-key rule and the key revision), ``objects`` (typed views of the Kubernetes objects the
toolkit reads), ``prices``, ``target`` (which target) and ``checks`` (the report type both preflights return).
Reading the machine (environment, files the user names, key files) is :mod:`tke_playbook.hostenv`'s. Everything
above imports from here; nothing here imports from above.
"""

from .catalog import (OFFLINE_MODEL, TUTORIAL_MODEL, Architecture, ModelInfo, ModelKind, Pooling, PoolingMode,
                      get_model, list_models)
from .checks import CheckRow, PreflightReport
from .download import DownloadMode, DownloadSpec, Source
from .fit import FitVerdict, check_fit
from .hardware import GPUS, NODE_TYPES, GpuType, NodeRole, NodeType, get_gpu, get_node_type, node_type_from_labels
from .prices import NodePrice
from .serving import PullPolicy, ServiceType, ServingChoices, ServingSpec, resolve, seed_choices, seed_profile
from .storage import DEFAULT_PVC, CfsStorageType, ReclaimPolicy, StorageSpec
from .target import Target
from .tokens import HubToken

__all__ = ["Architecture", "CfsStorageType", "CheckRow", "DEFAULT_PVC", "DownloadMode", "DownloadSpec", "FitVerdict",
           "GPUS", "GpuType", "HubToken", "ModelInfo", "ModelKind", "NODE_TYPES", "NodePrice", "NodeRole", "NodeType",
           "OFFLINE_MODEL", "PreflightReport", "PullPolicy", "Pooling", "PoolingMode", "ReclaimPolicy", "ServiceType", "ServingChoices",
           "ServingSpec", "Source", "StorageSpec", "TUTORIAL_MODEL", "Target", "check_fit", "get_gpu", "get_model", "get_node_type",
           "list_models", "node_type_from_labels", "resolve", "seed_choices", "seed_profile"]
