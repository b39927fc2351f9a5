"""Downloads on the local target (filled in once tke_playbook.download lands)."""

from __future__ import annotations


class LocalDownloads:
    def stop_downloads(self) -> None:
        return None
