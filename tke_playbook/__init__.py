"""tke-playbook: from an empty TKE cluster to a running vLLM embedding service - and the same steps on this machine."""

from .catalog import Architecture, ModelInfo, Pooling, get_model, list_models
from .errors import *  # noqa: F401,F403 - the exception hierarchy is public
from .modelfolder import is_complete, require_complete
from .target import Target, resolve_target

__version__ = "0.1.0"
