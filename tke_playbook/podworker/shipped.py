"""The podworker files the pods run, as text: what the download and bulk-embedding ConfigMaps ship (and the local
target lays out the same way). Read from this package's own folder; the builders in
:mod:`tke_playbook.manifests` take the text from here and read no file themselves."""

from __future__ import annotations

from pathlib import Path

FOLDER = Path(__file__).parent
# what a download pod runs (standard library only); a bulk-embedding pod runs these and embedworker.py
DOWNLOAD_FILES = ("worker.py", "transfer.py", "hubapi.py", "rules.py", "planner.py", "progress.py", "modelfolder.py")
EMBED_WORKER = "embedworker.py"


def shipped_files(names=DOWNLOAD_FILES) -> dict[str, str]:
    """``{file name: its source}`` for each of ``names`` in this package."""
    return {name: (FOLDER / name).read_text(encoding="utf-8") for name in names}
