"""The contract between downloading and serving: a model folder is servable once it carries a completion marker.

A finished, verified download writes ``.tke-playbook/manifest.json`` (files, sizes, sha256, source, revision)
and then ``.tke-playbook/COMPLETE``. Serving on either target calls :func:`require_complete` first, so an
unfinished download fails in plain words instead of vLLM's "model not found". Standard library only: this
module is also shipped to download pods.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

STATE_DIR = ".tke-playbook"
MANIFEST_NAME = "manifest.json"
MARKER_NAME = "COMPLETE"


def manifest_path(folder: str | os.PathLike) -> Path:
    return Path(folder) / STATE_DIR / MANIFEST_NAME


def marker_path(folder: str | os.PathLike) -> Path:
    return Path(folder) / STATE_DIR / MARKER_NAME


def is_complete(folder: str | os.PathLike) -> bool:
    return marker_path(folder).is_file() and manifest_path(folder).is_file()


def read_manifest(folder: str | os.PathLike) -> dict:
    return json.loads(manifest_path(folder).read_text(encoding="utf-8"))


def write_completion(folder: str | os.PathLike, manifest: dict) -> Path:
    """Write the manifest, then the marker, each atomically (a reader never sees half a file). Several workers
    (pods on a shared volume, processes locally) may finish together: each writes its own temporary file, so
    the last rename wins and none fails."""
    state = Path(folder) / STATE_DIR
    state.mkdir(parents=True, exist_ok=True)
    for path, text in ((manifest_path(folder), json.dumps(manifest, indent=2, sort_keys=True)),
                       (marker_path(folder), "complete\n")):
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    return marker_path(folder)


def clear_completion(folder: str | os.PathLike) -> None:
    """Forget that a folder was complete (before a new download writes into it)."""
    for path in (marker_path(folder), manifest_path(folder)):
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def require_complete(folder: str | os.PathLike) -> Path:
    """Return the folder if its download finished and was verified; otherwise raise IncompleteModelError."""
    from .errors import IncompleteModelError  # imported here so download pods need only this file

    path = Path(folder)
    if not path.is_dir():
        raise IncompleteModelError(
            f"Model folder {path} does not exist: download the model first (notebook 02_download_model), "
            f"or check the PVC path.", obj=path)
    if not is_complete(path):
        raise IncompleteModelError(
            f"Model folder {path} has no completion marker ({STATE_DIR}/{MARKER_NAME}): the download has not "
            f"finished or was not verified. Wait for the download to complete, or run it again - it resumes.",
            obj=path)
    return path
