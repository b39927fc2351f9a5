"""What to deploy, as values: frozen, validated specs and the facts they are checked against. Pure - no I/O,
except the few files a user names (``files``, ``apikeys``) and where local state lives (``target``).

``catalog`` (models), ``hardware`` (GPUs, TKE node types), ``fit`` (does a model fit a GPU), ``storage``,
``serving`` and ``download`` (the three specs a deployment is made of), ``vllm_args`` (vLLM's command line per
version), ``labels`` and ``names`` (the rules every Kubernetes name and label follows), ``tokens`` (hub tokens,
never printed), ``apikeys`` (the API-key rule and the one reader of key files), ``files`` (reading a file the user
named: regular, bounded, never blocking), ``prices``, ``target`` (which target and where local state lives) and
``checks`` (the report type both preflights return). Everything above imports from here; nothing here imports
from above.
"""

from .catalog import OFFLINE_MODEL, TUTORIAL_MODEL, Architecture, ModelInfo, Pooling, get_model, list_models
from .checks import CheckRow, PreflightReport
from .download import DownloadMode, DownloadSpec, Source
from .fit import FitVerdict, check_fit
from .hardware import GPUS, NODE_TYPES, GpuType, NodeRole, NodeType, get_gpu, get_node_type, node_type_from_labels
from .prices import NodePrice, load_prices
from .serving import PullPolicy, ServiceType, ServingSpec, seed_profile
from .storage import DEFAULT_PVC, CfsStorageType, ReclaimPolicy, StorageSpec
from .target import Target, local_pvc_dir, offline_model_dir, resolve_target, state_dir
from .tokens import HubToken

__all__ = ["Architecture", "CfsStorageType", "CheckRow", "DEFAULT_PVC", "DownloadMode", "DownloadSpec", "FitVerdict",
           "GPUS", "GpuType", "HubToken", "ModelInfo", "NODE_TYPES", "NodePrice", "NodeRole", "NodeType",
           "OFFLINE_MODEL", "PreflightReport", "PullPolicy", "Pooling", "ReclaimPolicy", "ServiceType", "ServingSpec",
           "Source", "StorageSpec", "TUTORIAL_MODEL", "Target", "check_fit", "get_gpu", "get_model", "get_node_type",
           "list_models", "load_prices", "local_pvc_dir", "node_type_from_labels", "offline_model_dir",
           "resolve_target", "seed_profile", "state_dir"]
