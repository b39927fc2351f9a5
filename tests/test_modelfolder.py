"""The completion contract between downloading and serving."""

from __future__ import annotations

import pytest

from tke_playbook import modelfolder
from tke_playbook.errors import IncompleteModelError


def test_completion_round_trip_and_clear(tmp_path):
    modelfolder.write_completion(tmp_path, {"plan_id": "p1"})
    assert modelfolder.is_complete(tmp_path) and modelfolder.read_manifest(tmp_path) == {"plan_id": "p1"}
    assert modelfolder.require_complete(tmp_path) == tmp_path
    modelfolder.clear_completion(tmp_path)
    with pytest.raises(IncompleteModelError, match="no completion marker"):
        modelfolder.require_complete(tmp_path)


def test_a_missing_folder_says_download_first(tmp_path):
    with pytest.raises(IncompleteModelError, match="02_download_model"):
        modelfolder.require_complete(tmp_path / "nope")


def test_two_workers_finishing_together_both_succeed(tmp_path, monkeypatch):
    """Another worker writes its completion between this one's write and rename (what two download workers
    finishing at the same moment do): neither fails, and the folder ends complete with one whole manifest."""
    real_replace = modelfolder.os.replace
    interleaved = []

    def replace(src, dst):
        if not interleaved:
            interleaved.append(True)
            modelfolder.write_completion(tmp_path, {"plan_id": "p", "by": "other"})
        real_replace(src, dst)

    monkeypatch.setattr(modelfolder.os, "replace", replace)
    modelfolder.write_completion(tmp_path, {"plan_id": "p", "by": "this"})
    assert interleaved and modelfolder.is_complete(tmp_path)
    assert modelfolder.read_manifest(tmp_path)["plan_id"] == "p"
    assert not list((tmp_path / modelfolder.STATE_DIR).glob("*.tmp"))
