"""The completion contract between downloading and serving."""

from __future__ import annotations

import pytest

from tke_playbook.errors import IncompleteModelError
from tke_playbook.podworker import modelfolder


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


def test_a_file_given_as_the_model_folder_is_named_a_file(tmp_path):
    afile = tmp_path / "model.safetensors"
    afile.write_bytes(b"x")
    assert "is a file, not a model folder" in modelfolder.completeness_problem(afile)
    with pytest.raises(IncompleteModelError, match="is a file, not a model folder: give the folder"):
        modelfolder.require_complete(afile)


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


def _folder(tmp_path, files=None):
    folder = tmp_path / "BAAI" / "bge-m3"
    folder.mkdir(parents=True)
    entries = []
    for name, data in (files or {"config.json": b"{}", "model.safetensors": b"w" * 100}).items():
        (folder / name).write_bytes(data)
        sha256, sha1 = modelfolder.hash_file(folder / name)
        entries.append({"path": name, "size": len(data), "sha256": sha256, "git_sha1": sha1, "check": "sha256"})
    modelfolder.write_completion(folder, {"files": entries})
    return folder


def test_state_lives_beside_the_folder_where_no_listing_can_name_it(tmp_path):
    folder = _folder(tmp_path)
    state = modelfolder.state_path(folder)
    assert state == tmp_path / "BAAI" / ".tke-playbook" / "bge-m3"
    assert folder not in state.parents and not (folder / ".tke-playbook").exists()


def test_a_marker_planted_inside_the_folder_means_nothing(tmp_path):
    folder = tmp_path / "m"
    (folder / ".tke-playbook").mkdir(parents=True)
    (folder / ".tke-playbook" / "COMPLETE").write_text("complete\n")  # what a hostile listing once could write
    (folder / ".tke-playbook" / "manifest.json").write_text("{}")
    assert not modelfolder.is_complete(folder)


@pytest.mark.parametrize("damage, words", [
    pytest.param(lambda f: (f / "config.json").unlink(), "config.json is missing", id="file-missing"),
    pytest.param(lambda f: (f / "model.safetensors").write_bytes(b"short"), "has 5 bytes", id="file-truncated"),
    pytest.param(lambda f: modelfolder.manifest_path(f).write_text('{"files": []}'), "does not match its manifest",
                 id="manifest-swapped"),
])
def test_the_completion_rule_checks_marker_manifest_and_files(tmp_path, damage, words):
    folder = _folder(tmp_path)
    assert modelfolder.is_complete(folder)
    damage(folder)
    with pytest.raises(IncompleteModelError, match=words):
        modelfolder.require_complete(folder)


def test_verify_folder_rehashes_with_progress(tmp_path):
    from tke_playbook.errors import VerificationError

    folder = _folder(tmp_path)
    seen = []
    result = modelfolder.verify_folder(folder, on_progress=lambda done, total, path: seen.append((done, total)))
    assert result["files"] == 2 and result["checks"] == {"sha256": 2} and seen[-1] == (102, 102)
    (folder / "model.safetensors").write_bytes(b"x" * 100)  # same size, other bytes
    with pytest.raises(VerificationError, match="model.safetensors: sha256 is"):
        modelfolder.verify_folder(folder)


def test_git_blob_sha1_is_gits(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"hello\n")
    assert modelfolder.hash_file(path)[1] == "ce013625030ba8dba906f756967f9e9ca394464a"  # `git hash-object`


def test_readiness_command_applies_the_same_rule(tmp_path):
    import subprocess
    import sys

    folder = tmp_path / "BAAI" / "bge-m3"
    command = modelfolder.readiness_command(str(folder), timeout_s=0)
    assert command[:2] == ["python3", "-c"]
    run = lambda: subprocess.run([sys.executable, *command[1:]], capture_output=True, text=True,  # noqa: E731
                                 timeout=60)
    assert run().returncode == 1
    _folder(tmp_path)
    assert run().returncode == 0
