"""What one notebook leaves for the next: a small JSON file and the API keys, under ``target.state_dir()``.

Notebooks run in separate kernels (nbval, a learner restarting), so the facade records what it did - the
storage, the download, the serving spec, the server it started - in ``<state_dir>/workflow-<target>.json``.
API keys never go there: each lives in its own file, ``<state_dir>/secrets/<name>``, readable by its owner only
(mode 0600), and is shown masked (:func:`mask_secret`).
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

from ..hostenv import (annotation_salt, generate_api_key, key_store_dir, read_key_file, state_dir,
                       write_key_file)
from ..specs.apikeys import check_api_key
from ..specs.names import validate_subdomain
from ..specs.target import Target


def mask_secret(value: str | None) -> str:
    """A form of a secret that is safe to show: its length only, never any of its characters (an exported
    notebook is shared; even a prefix narrows a guess)."""
    if not value:
        return "(none)"
    return f"•••• ({len(value)} characters, hidden)"


class StateStore:
    """A JSON dict persisted atomically at ``<state_dir>/workflow-<target>.json``; sections are top-level keys."""

    def __init__(self, target: Target | str, root: Path | None = None):
        self.target = Target(target)
        self.root = Path(root) if root is not None else state_dir()
        self.path = self.root / f"workflow-{self.target.value}.json"

    def load(self) -> dict[str, Any]:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, json.JSONDecodeError):
            # A damaged state file must not stop a demo: start afresh but keep the old file for inspection.
            self.path.replace(self.path.with_suffix(".json.damaged"))
            return {}

    def get(self, section: str, default: Any = None) -> Any:
        return self.load().get(section, default)

    def put(self, section: str, value: Any) -> None:
        data = self.load()
        data[section] = value
        self._write(data)

    def drop(self, *sections: str) -> None:
        data = self.load()
        for section in sections:
            data.pop(section, None)
        self._write(data)

    def _write(self, data: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        # one temporary file per writer: two kernels may save at once
        tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str), encoding="utf-8")
        os.replace(tmp, self.path)


class SecretStore:
    """API keys in ``<root>/secrets/<name>``, one per file, mode 0600 (the local stand-in for a Secret). Every key
    stored or read follows ``specs.apikeys.API_KEY_RULE``."""

    def __init__(self, root: Path | None = None):
        self.folder = key_store_dir(root)

    def _path(self, name: str) -> Path:
        return self.folder / validate_subdomain(name, "secret name")

    def path(self, name: str) -> Path:
        """The file that holds key ``name`` (it may not exist yet)."""
        return self._path(name)

    def read(self, name: str) -> str | None:
        """The key stored under ``name``, None when there is none; InvalidSpecError (saying how to fix it) when the
        file is not a private file holding one valid key."""
        path = self._path(name)
        if not os.path.lexists(path):
            return None
        return read_key_file(path, f"the key file {path} (delete it to have a new key generated)")

    def write(self, name: str, value: str) -> Path:
        check_api_key(value, f"The API key for {name} (leave it empty to have one generated)")
        return write_key_file(self._path(name), value)

    def ensure(self, name: str, value: str | None = None) -> str:
        """The key stored under ``name``: ``value`` when given (stored), the stored one, or a new random one."""
        if value:
            self.write(name, value)
            return value
        existing = self.read(name)
        if existing:
            return existing
        generated = generate_api_key()
        self.write(name, generated)
        return generated

    def annotation_salt(self) -> bytes:
        """The secret salt of the pods' key-revision annotation (``specs.apikeys.key_revision``), kept here."""
        return annotation_salt(self.folder)

    def delete(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)
