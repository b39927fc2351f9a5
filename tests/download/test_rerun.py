"""Reruns are idempotent and non-destructive: intact files are kept whatever the endpoint, shard split or worker
count; new bytes replace a file only once verified; a failed rerun leaves a complete model complete. The plan is
tied to its spec."""

from __future__ import annotations

import os

import pytest
from fakes.hub import FakeHub, Fault
from hostile_hub import HostileHub
from hubfiles import FAST, REPO, make_repo

from tke_playbook.download import plan_download, require_finished, run_local_download, verify_model
from tke_playbook.errors import DownloadError, InvalidSpecError, VerificationError
from tke_playbook.podworker.modelfolder import is_complete, read_manifest, require_complete, state_path
from tke_playbook.podworker.planner import require_plan_for, shard_count
from tke_playbook.podworker.progress import plan_file, write_json
from tke_playbook.podworker.worker import run
from tke_playbook.specs import DownloadSpec


def _run(spec, root, **kw):
    return run_local_download(spec, plan_download(spec), root, poll_s=0.05, worker_args=FAST, **kw)


def _spec(hub, **kw):
    return DownloadSpec(model=REPO, source="huggingface", endpoint=hub.url, **kw)


def test_rerun_through_a_corrupting_mirror_or_with_other_workers_fetches_nothing(repo_dir, tmp_path):
    with FakeHub({REPO: repo_dir}) as first:
        folder = _run(_spec(first), tmp_path)
    manifest = read_manifest(folder)
    corrupt = [Fault("corrupt", times=None, after_bytes=0), Fault("status", path="config.json", times=None)]
    with FakeHub({REPO: repo_dir}, faults=corrupt) as other:  # another endpoint, serving bad bytes
        for workers in (1, 5, 3):
            spec = _spec(other, completions=workers, parallelism=workers)
            assert _run(spec, tmp_path, workers=workers) == folder
        assert other.ranges == []  # not one file was fetched again
    assert read_manifest(folder) == manifest and verify_model(folder)["files"] == len(manifest["files"])


def test_plan_identity_leaves_out_the_endpoint(repo_dir):
    with FakeHub({REPO: repo_dir}) as a, FakeHub({REPO: repo_dir}) as b:
        assert plan_download(_spec(a)).plan_id == plan_download(_spec(b)).plan_id


def test_a_failed_rerun_keeps_the_previous_complete_model(tmp_path):
    old = {"model.safetensors": os.urandom(200_000), "config.json": b'{"v": 1}\n', "tokenizer.json": b"{}"}
    with HostileHub(old) as hub:
        folder = _run(_spec(hub), tmp_path)
    new = {**old, "config.json": b'{"v": 2}\n'}  # the hub moved on, and its mirror corrupts what changed
    with HostileHub(new) as hub:
        hub.corrupt = {"config.json"}
        with pytest.raises(VerificationError, match="config.json failed verification twice.*nothing was replaced"):
            _run(_spec(hub), tmp_path)
        assert hub.file_gets.count("model.safetensors") == 0  # intact files were kept
    assert require_complete(folder) == folder and (folder / "config.json").read_bytes() == old["config.json"]
    assert verify_model(folder)["files"] == 3


def test_a_damaged_file_is_fetched_again_alone(repo_dir, tmp_path):
    with FakeHub({REPO: repo_dir}) as hub:
        folder = _run(_spec(hub), tmp_path)
        target = folder / "tokenizer.json"
        data = bytearray(target.read_bytes())
        data[100] ^= 0xFF
        target.write_bytes(bytes(data))  # same size: only a hash can tell
        with pytest.raises(VerificationError, match="tokenizer.json"):
            verify_model(folder)
        before = len(hub.ranges)
        _run(_spec(hub), tmp_path)
        assert {path for path, _ in hub.ranges[before:]} == {"tokenizer.json"}
    assert verify_model(folder)["files"] == len(read_manifest(folder)["files"])


def test_a_plan_for_another_spec_is_an_error_before_anything_runs(hub, tmp_path):
    plan_a = plan_download(_spec(hub))
    spec_b = DownloadSpec(model="BAAI/bge-m3", source="huggingface", endpoint=hub.url)
    with pytest.raises(InvalidSpecError, match="made for BAAI/bge-small-en-v1.5 but the spec asks for BAAI/bge-m3"):
        run_local_download(spec_b, plan_a, tmp_path / "pvc")
    with pytest.raises(InvalidSpecError, match="revision"):
        require_plan_for(_spec(hub, revision="v2"), plan_a)
    assert not (tmp_path / "pvc").exists()


def test_wait_without_files_or_with_pending_shards_is_an_error(hub, tmp_path):
    folder = tmp_path / REPO
    with pytest.raises(DownloadError, match="No download has run"):
        require_finished(folder)
    plan = plan_download(_spec(hub))
    write_json(plan_file(folder), {**plan.to_dict(), "files": []})
    with pytest.raises(DownloadError, match="has no files"):
        require_finished(folder)
    write_json(plan_file(folder), plan.to_dict())
    with pytest.raises(DownloadError, match=r"Shard\(s\) \[0, 1, 2\] .* have not finished"):
        require_finished(folder)
    run_local_download(_spec(hub), plan, tmp_path, poll_s=0.05, worker_args=FAST)
    assert require_finished(folder)["complete"]


def test_worker_counts_are_bounded():
    with pytest.raises(InvalidSpecError, match="at most 64"):
        DownloadSpec(completions=10**12, parallelism=1)
    files = [type("F", (), {"size": 9_100_000, "path": f"f{i}"})() for i in range(10)]  # 91 MB in 10 files
    assert shard_count(300, files) <= 11 and shard_count(2, files) == 2


def test_more_workers_than_work_start_no_more_processes_than_shards(tmp_path):
    repo = make_repo(tmp_path / "r", {"model.safetensors": 50_000, "config.json": 10})
    with FakeHub({REPO: repo}) as hub:
        spec = _spec(hub, completions=40, parallelism=40)
        plan = plan_download(spec)
        assert len(plan.shards) == 2
        folder = run_local_download(spec, plan, tmp_path / "pvc", workers=40, poll_s=0.05, worker_args=FAST)
    assert is_complete(folder)
    logs = sorted(p.name for p in (state_path(folder) / "logs").iterdir())
    assert logs == ["0.log", "1.log"]


def test_a_rerun_that_fails_after_replacing_one_file_keeps_the_previous_model_whole(tmp_path):
    """The hub moved on in two files; the mirror corrupts the second. The first one verified, but swapping it in
    alone would leave a mixture of two versions with no marker: replacements wait until every file verified."""
    old = {"model.safetensors": os.urandom(200_000), "config.json": b'{"v": 1}\n', "tokenizer.json": b"{}"}
    with HostileHub(old) as hub:
        folder = _run(_spec(hub, completions=1, parallelism=1), tmp_path)
    new = {**old, "config.json": b'{"v": 2}\n', "tokenizer.json": b'{"t": 2}'}
    with HostileHub(new) as hub:
        hub.corrupt = {"tokenizer.json"}
        with pytest.raises(VerificationError, match="tokenizer.json failed verification twice"):
            _run(_spec(hub, completions=1, parallelism=1), tmp_path)
        assert require_complete(folder) == folder
        assert {p: (folder / p).read_bytes() for p in old} == old and verify_model(folder)["files"] == 3
        hub.corrupt = set()  # the mirror is fixed: the verified config.json is not fetched again, whatever the split
        gets = len(hub.file_gets)
        _run(_spec(hub, completions=3, parallelism=3), tmp_path, workers=3)
        assert hub.file_gets[gets:] == ["tokenizer.json"]
    assert {p: (folder / p).read_bytes() for p in new} == new and verify_model(folder)["files"] == 3


def test_a_rerun_stopped_mid_way_keeps_the_previous_model_complete(tmp_path):
    """The hub moved on in every file; of the rerun's three shards only the last one ran (the others were killed
    or never scheduled): its small files verified, yet the folder keeps the previous version, complete."""
    sizes = {"model.safetensors": 600_000, "config.json": 50, "tokenizer.json": 2_000}
    with FakeHub({REPO: make_repo(tmp_path / "v1", sizes)}) as hub:
        folder = _run(_spec(hub), tmp_path / "pvc")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with FakeHub({REPO: make_repo(tmp_path / "v2", sizes, seed=8)}) as hub:
        plan = plan_download(_spec(hub))
        last = len(plan.shards) - 1
        assert {p.path for p in plan.shards[last]} == set(sizes)  # weights' tail, then both small files
        assert run({"plan": plan.to_dict()}, tmp_path / "pvc", last, retries=2, backoff=0.01) is False
        assert {path for path, _ in hub.ranges} == set(sizes)
    assert require_complete(folder) == folder and {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert verify_model(folder)["files"] == 3
