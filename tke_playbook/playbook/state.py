"""What one notebook leaves for the next: a small JSON file and the API keys, under the state folder (``home``).

Notebooks run in separate kernels (nbval, a learner restarting), so the playbook records what it did in
``<home>/workflow-<target>.json`` as one typed value, :class:`WorkflowState` - the storage 01 created, the serving
spec 03 deployed (and each model's), the node type 00 chose, the kubeconfig context, the local server's log - read
with :meth:`StateStore.read` and changed with :meth:`StateStore.update`. Its keys live here alone.
API keys never go there: each lives in its own file, ``<home>/secrets/<name>``, readable by its owner only
(mode 0600), and is shown masked (:func:`mask_secret`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import PlaybookError
from ..hostenv import annotation_salt, generate_api_key, key_store_dir, read_key_file, write_key_file
from ..specs.apikeys import check_api_key
from ..specs.hardware import NodeType, node_type_from_dict, node_type_to_dict
from ..specs.names import validate_subdomain
from ..specs.serving import ServingSpec
from ..specs.storage import StorageSpec
from ..specs.target import Target


def mask_secret(value: str | None) -> str:
    """A form of a secret that is safe to show: its length only, never any of its characters (an exported
    notebook is shared; even a prefix narrows a guess)."""
    if not value:
        return "(none)"
    return f"•••• ({len(value)} characters, hidden)"


def _parsed(kind: type, data: Any) -> Any:
    """``data`` rebuilt as a ``kind`` spec, or None when it is missing or damaged (a record must never stop a
    notebook: the step that needs it says what to run instead)."""
    if not isinstance(data, Mapping) or not data:
        return None
    try:
        return kind.from_dict(dict(data))
    except (PlaybookError, TypeError, ValueError, KeyError):
        return None


def _node_type(data: Any) -> NodeType | None:
    if not isinstance(data, Mapping):
        return None
    try:
        return node_type_from_dict(dict(data))
    except (KeyError, TypeError, ValueError):
        return None


@dataclass(frozen=True)
class WorkflowState:
    """What the notebooks leave each other, as typed records: ``storage`` (01), ``serving`` (the last deployment,
    03) and ``deployments`` (each model's), ``node_type`` (00's choice), ``context`` (the kubeconfig context the
    cluster target was opened with) and ``server_log`` (the local server's log file)."""

    storage: StorageSpec | None = None
    serving: ServingSpec | None = None
    deployments: Mapping[str, ServingSpec] = field(default_factory=dict)
    node_type: NodeType | None = None
    context: str | None = None
    server_log: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The state as the JSON file holds it (unset records left out)."""
        data: dict[str, Any] = {
            "storage": self.storage.to_dict() if self.storage is not None else None,
            "serving": self.serving.to_dict() if self.serving is not None else None,
            "deployments": {model: spec.to_dict() for model, spec in self.deployments.items()} or None,
            "node_type": node_type_to_dict(self.node_type) if self.node_type is not None else None,
            "context": self.context, "server_log": self.server_log}
        return {key: value for key, value in data.items() if value is not None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WorkflowState:
        """The state the file holds; a damaged record reads as missing, unknown keys (older versions) are ignored."""
        deployments = data.get("deployments") if isinstance(data.get("deployments"), Mapping) else {}
        parsed = {model: _parsed(ServingSpec, spec) for model, spec in deployments.items()}
        context, log = data.get("context"), data.get("server_log")
        return cls(storage=_parsed(StorageSpec, data.get("storage")), serving=_parsed(ServingSpec, data.get("serving")),
                   deployments={m: s for m, s in parsed.items() if s is not None},
                   node_type=_node_type(data.get("node_type")),
                   context=context if isinstance(context, str) and context else None,
                   server_log=log if isinstance(log, str) and log else None)

    def replace(self, **changes: Any) -> WorkflowState:
        return dataclasses.replace(self, **changes)


class StateStore:
    """The :class:`WorkflowState` persisted atomically at ``<root>/workflow-<target>.json``."""

    def __init__(self, target: Target | str, root: Path):
        self.target = Target(target)
        self.root = Path(root)
        self.path = self.root / f"workflow-{self.target.value}.json"

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, json.JSONDecodeError):
            # A damaged state file must not stop a demo: start afresh but keep the old file for inspection.
            self.path.replace(self.path.with_suffix(".json.damaged"))
            return {}
        return data if isinstance(data, dict) else {}

    def read(self) -> WorkflowState:
        """What the notebooks recorded so far."""
        return WorkflowState.from_dict(self._load())

    def update(self, **changes: Any) -> WorkflowState:
        """Record ``changes`` (fields of :class:`WorkflowState`, e.g. ``storage=spec``) and return the new state."""
        state = self.read().replace(**changes)
        self.write(state)
        return state

    def write(self, state: WorkflowState) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        # one temporary file per writer: two kernels may save at once
        tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_text(json.dumps(state.to_dict(), indent=2, sort_keys=True, default=str), encoding="utf-8")
        os.replace(tmp, self.path)


class SecretStore:
    """API keys in ``<root>/secrets/<name>``, one per file, mode 0600 (the local stand-in for a Secret). Every key
    stored or read follows ``specs.apikeys.API_KEY_RULE``."""

    def __init__(self, root: Path):
        self.folder = key_store_dir(Path(root))

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
