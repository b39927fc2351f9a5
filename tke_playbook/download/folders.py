"""The folders that play PVCs on the local target: ``<home>/pvcs/<name>`` - the one owner of that rule (the
playbook's local steps, the local download and ``tke-playbook download``/``verify`` all ask :class:`PvcFolders`)."""

from __future__ import annotations

from pathlib import Path

from ..errors import InvalidSpecError
from ..specs.names import validate_name


class PvcFolders:
    """The local stand-in for the cluster's PVCs: one folder per PVC under ``<root>/pvcs``."""

    def __init__(self, root: Path):
        self.folder = Path(root) / "pvcs"

    def names(self) -> list[str]:
        """The folders that play PVCs, by name."""
        return sorted(p.name for p in self.folder.iterdir() if p.is_dir()) if self.folder.is_dir() else []

    def path(self, pvc_name: str) -> Path:
        """The folder that plays PVC ``pvc_name`` (not created here)."""
        return self.folder / validate_name(pvc_name, "PVC name")

    def create(self, pvc_name: str) -> Path:
        """The folder of PVC ``pvc_name``, created when missing (what 01 does locally)."""
        path = self.path(pvc_name)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def require(self, pvc_name: str) -> Path:
        """The folder of PVC ``pvc_name``; InvalidSpecError (create it with 01) when it does not exist."""
        path = self.path(pvc_name)
        if not path.is_dir():
            existing = ", ".join(self.names()) or "none yet"
            raise InvalidSpecError(f"PVC '{pvc_name}' does not exist (existing: {existing}): pick an existing PVC, "
                                   "or create it with 01_storage and download the model onto it with "
                                   "02_download_model", field="pvc_name", value=pvc_name)
        return path
