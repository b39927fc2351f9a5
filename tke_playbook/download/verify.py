"""Is this folder a complete download whose files still match? And: make files fetched by other means servable.

:func:`verify_model` re-hashes every file against the manifest the download (or an adoption) wrote.
:func:`adopt_model` takes a folder filled by other means - the tutorial's own download script, a copy - and
checks every file against the hub's listing (size and the strongest hash it lists), fetching nothing; with
``trust_files=True`` (the explicit opt-out) it records the files there without a hub. Either writes the same
manifest and completion marker a download writes, so serving (local server, vLLM init container) accepts the
folder. Both run the worker's own code in this process.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import IncompleteModelError, InvalidSpecError
from ..hostenv import local_pvc_dir
from ..podworker.modelfolder import verify_folder
from ..podworker.worker import adopt, options, trust
from ..specs.download import DownloadSpec
from ..specs.tokens import reveal
from .listing import plan_download
from .local import system_tree, validate_pvc_dir


def verify_model(folder, on_progress=None) -> dict:
    """Re-hash every file of ``folder`` against its manifest: {'files', 'bytes', 'checks'}; raises
    IncompleteModelError (not complete) or VerificationError (naming the first file that changed)."""
    return verify_folder(folder, on_progress)


def model_folder_for(spec: DownloadSpec, pvc_dir=None, folder=None) -> Path:
    """``folder``, else ``<pvc_dir>/<model id>``, else the local PVC folder of ``spec.pvc``."""
    if folder is not None:
        return Path(folder)
    root = validate_pvc_dir(pvc_dir) if pvc_dir is not None else local_pvc_dir(spec.pvc)
    return root / spec.model_path


_SYSTEM_FOLDERS = ("/", "/bin", "/boot", "/etc", "/lib", "/lib32", "/lib64", "/run", "/sbin", "/usr", "/var")


def _require_adoptable(path: Path) -> None:
    """A model folder to adopt is a folder of the user's, never a file, ``/`` or a system folder."""
    if system_tree(path) or {os.path.abspath(path), os.path.realpath(path)} & set(_SYSTEM_FOLDERS):
        raise InvalidSpecError(f"{path} is a system folder, not a model folder: give the folder holding the model's "
                               f"files, such as ~/models/BAAI/bge-m3", field="folder", value=str(path))
    if path.exists() and not path.is_dir():
        raise InvalidSpecError(f"{path} is a file, not a folder: give the folder holding the model's files",
                               field="folder", value=str(path))


def adopt_model(spec: DownloadSpec | None, *, pvc_dir=None, folder=None, trust_files: bool = False,
                endpoint: str | None = None, token=None) -> Path:
    """Check the files already in the model folder against the hub's listing (or, with ``trust_files``, record
    them as they are; ``spec`` may then be None and the manifest names no model, so the folder is served under
    its own name) and write the completion marker. Returns the folder; raises VerificationError naming the first
    missing or differing file (nothing is fetched, no marker is written)."""
    if spec is None and not (trust_files and folder is not None):
        raise InvalidSpecError("Adopting against the hub needs the spec (which model, which hub): give a "
                               "DownloadSpec, or trust_files=True with the folder", field="spec", value=None)
    path = Path(folder) if spec is None else model_folder_for(spec, pvc_dir, folder)
    _require_adoptable(path)
    if not path.is_dir():
        raise IncompleteModelError(f"Model folder {path} does not exist: nothing to adopt", obj=path)
    opts = options(path.parent, 0, spec.model_path if spec is not None else None, folder=path, token=reveal(token))
    if trust_files:
        trust(path, opts)
        return path
    plan = plan_download(spec.replace(completions=1, parallelism=1), token=token, endpoint=endpoint)
    adopt(plan.to_dict(), opts)
    return path


__all__ = ["adopt_model", "model_folder_for", "verify_model"]
