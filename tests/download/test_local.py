"""The local target: worker processes into a folder playing the PVC; offline through the bundled-model mirror."""

from __future__ import annotations

import httpx
import pytest
from fakes.hub import FakeHub
from hubfiles import FAST, REPO, sha256

from tke_playbook.download.listing import plan_download
from tke_playbook.download.local import (download_local, hub_offline, hub_reachable, plan_local, progress_frame,
                                         run_local_download)
from tke_playbook.errors import DownloadError, HubError, IncompleteModelError
from tke_playbook.hostenv import offline_model_dir
from tke_playbook.podworker.modelfolder import read_manifest, require_complete
from tke_playbook.specs import DownloadSpec
from tke_playbook.specs.catalog import OFFLINE_MODEL


def test_offline_target_downloads_the_bundled_model_through_the_mirror(tmp_path, monkeypatch):
    monkeypatch.setenv("TKE_PLAYBOOK_OFFLINE", "1")
    folder = download_local(DownloadSpec(model=OFFLINE_MODEL), pvc_dir=tmp_path)
    assert folder == tmp_path / OFFLINE_MODEL and require_complete(folder) == folder
    source = offline_model_dir()
    manifest = read_manifest(folder)
    assert manifest["source"] == "modelscope" and manifest["revision"] == "master"
    for entry in manifest["files"]:
        assert entry["sha256"] == sha256(source / entry["path"]), entry["path"]
    assert {e["path"] for e in manifest["files"]} >= {"model.safetensors", "config.json", "1_Pooling/config.json"}


def test_offline_without_the_model_says_what_to_do(tmp_path):
    with pytest.raises(HubError, match="cannot be reached and only .*all-MiniLM-L6-v2 ships"):
        download_local(DownloadSpec(model="bge-m3"), pvc_dir=tmp_path, offline=True)


def test_hub_reachable_is_false_for_a_closed_port():
    assert not hub_reachable("http://127.0.0.1:9", timeout_s=1)


def test_plan_local_lists_offline_from_a_running_mirror_and_online_from_the_hub(hub, monkeypatch):
    monkeypatch.setenv("TKE_PLAYBOOK_OFFLINE", "1")
    bundled = DownloadSpec(model=OFFLINE_MODEL)
    assert hub_offline(bundled)
    plan, mirror = plan_local(bundled)
    try:
        assert plan.endpoint == mirror.url and plan.files  # the caller downloads from it, then stops it
        assert httpx.get(f"{mirror.url}/api/v1/models/{OFFLINE_MODEL}/repo/files").status_code == 200
    finally:
        mirror.stop()
    monkeypatch.delenv("TKE_PLAYBOOK_OFFLINE")
    online = DownloadSpec(model=REPO, source="huggingface", endpoint=hub.url)
    assert not hub_offline(online, timeout_s=1)
    assert hub_offline(online.replace(endpoint="http://127.0.0.1:9"), timeout_s=1)
    plan, mirror = plan_local(online)
    assert mirror is None and plan.endpoint == hub.url


def test_fewer_workers_than_shards_run_in_turn(hub, tmp_path):
    spec = DownloadSpec(model=REPO, source="huggingface", endpoint=hub.url, completions=4, parallelism=2)
    plan = plan_download(spec)
    folder = run_local_download(spec, plan, tmp_path, workers=1, poll_s=0.05, worker_args=FAST)
    frame = progress_frame(folder)
    assert list(frame["shard"]) == [0, 1, 2, 3] and set(frame["status"]) == {"done"}
    assert (frame["percent"] == 100).all()


def test_timeout_stops_workers_and_leaves_the_folder_incomplete(repo_dir, tmp_path):
    with FakeHub({REPO: repo_dir}, rate=100_000) as hub:
        spec = DownloadSpec(model=REPO, source="huggingface", endpoint=hub.url)
        plan = plan_download(spec)
        with pytest.raises(DownloadError, match="did not finish within .* it resumes"):
            run_local_download(spec, plan, tmp_path, poll_s=0.05, timeout_s=1.0)
    with pytest.raises(IncompleteModelError, match="download has not finished|does not exist"):
        require_complete(tmp_path / REPO)
    assert set(progress_frame(tmp_path / REPO)["status"]) <= {"running", "pending"}


def test_a_crashed_worker_is_reported_with_its_own_log_not_an_earlier_run(hub, tmp_path):
    from tke_playbook.errors import DownloadError
    from tke_playbook.podworker.modelfolder import state_path

    spec = DownloadSpec(model=REPO, source="huggingface", endpoint=hub.url, completions=1, parallelism=1)
    log = state_path(tmp_path / REPO) / "logs" / "0.log"
    log.parent.mkdir(parents=True)
    log.write_text("[shard 0] all 5 files verified: wrote the completion marker\n")  # an earlier run's words
    with pytest.raises(DownloadError, match="exited with code 1") as caught:  # a parent that is not ours: exits
        run_local_download(spec, plan_download(spec), tmp_path, poll_s=0.05, worker_args=("--parent-pid", "1"))
    assert "completion marker" not in str(caught.value)
