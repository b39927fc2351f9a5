"""The local target as a test needs it: a free port, and the packaged model on a local PVC as 02 leaves it."""

from __future__ import annotations

import socket
from pathlib import Path

from tke_playbook.hostenv import offline_model_dir
from tke_playbook.podworker.modelfolder import write_completion
from tke_playbook.specs.catalog import OFFLINE_MODEL
from tke_playbook.specs.storage import StorageSpec


def free_port() -> int:
    """A TCP port nothing listens on at this moment (the system's pick)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def link_offline_model(pb, pvc: str = "ai-model") -> Path:
    """The packaged model on the local PVC ``pvc`` of the playbook ``pb`` with its completion marker, as 02 leaves
    it (files linked, not copied: seconds saved per test); returns the model's folder."""
    pb.storage.create(StorageSpec(pvc_name=pvc))
    folder = pb.storage.path(pvc) / OFFLINE_MODEL
    folder.mkdir(parents=True)
    for item in offline_model_dir().iterdir():
        (folder / item.name).symlink_to(item)
    write_completion(folder, {"files": []})
    return folder
