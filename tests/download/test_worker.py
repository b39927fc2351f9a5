"""The worker against the local mirror: full downloads, kills and resumes, faults, verification."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from fakes.hub import FakeHub, Fault
from hubfiles import FAST, REPO, make_repo, sha256

from tke_playbook.download.listing import plan_download
from tke_playbook.download.local import run_local_download
from tke_playbook.errors import DownloadError, IncompleteModelError, VerificationError
from tke_playbook.podworker.modelfolder import (clear_completion, is_complete, read_manifest, require_complete,
                                                state_path)
from tke_playbook.podworker.progress import read_progress
from tke_playbook.podworker.worker import complete, run
from tke_playbook.specs import DownloadSpec


def _spec(hub, source="huggingface", **kw):
    return DownloadSpec(model=REPO, source=source, endpoint=hub.url, **kw)


def _run(spec, plan, root, **kw):
    return run_local_download(spec, plan, root, poll_s=0.05, worker_args=FAST, **kw)


def _assert_matches(folder, repo_dir, plan):
    for f in plan.files:
        assert sha256(folder / f.path) == sha256(repo_dir / f.path), f.path
    manifest = read_manifest(folder)
    assert {f["path"] for f in manifest["files"]} == {f.path for f in plan.files}
    assert manifest["revision"] == plan.revision and manifest["source"] == plan.source


@pytest.mark.parametrize("source", ["huggingface", "modelscope"])
def test_full_download_with_three_shards(hub, repo_dir, tmp_path, source):
    spec = _spec(hub, source)
    plan = plan_download(spec)
    assert len(plan.shards) == 3 and all(plan.bytes_per_shard)
    seen = []
    folder = _run(spec, plan, tmp_path / "pvc", on_progress=seen.append)
    assert folder == tmp_path / "pvc" / REPO and is_complete(folder)
    _assert_matches(folder, repo_dir, plan)
    assert not (folder / "pytorch_model.bin").exists()  # duplicate format skipped
    assert (folder / "empty.txt").is_file()
    summary = read_progress(folder)
    assert summary["complete"] and summary["files_verified"] == len(plan.files)
    assert summary["bytes_done"] == summary["bytes_total"] == plan.total_bytes and seen
    ranged = [p for m, p, s in hub.log if s == 206]
    assert ranged, "pieces are fetched with Range requests"


def test_the_completion_step_runs_on_its_own_once_every_shard_is_done(hub, tmp_path):
    plan = plan_download(_spec(hub)).to_dict()
    folder = tmp_path / plan["model_path"]
    assert not complete(plan, tmp_path, run_id="r1")  # no shard has run
    for index in range(len(plan["shards"])):
        run({"plan": plan}, tmp_path, index, run_id="r1", retries=1, backoff=0.01)
    assert is_complete(folder)
    clear_completion(folder)  # as if the last worker stopped before its completion step
    assert not is_complete(folder) and not complete(plan, tmp_path, run_id="other-run")
    assert complete(plan, tmp_path, run_id="r1") and is_complete(folder)


def test_second_run_of_a_complete_plan_fetches_nothing(hub, tmp_path):
    spec = _spec(hub)
    plan = plan_download(spec)
    _run(spec, plan, tmp_path)
    before = hub.bytes_sent
    _run(spec, plan, tmp_path)
    assert hub.bytes_sent == before


def test_a_failed_rerun_with_a_new_plan_leaves_the_model_complete(hub, tmp_path):
    spec = _spec(hub)
    folder = _run(spec, plan_download(spec), tmp_path)
    other = plan_download(spec.replace(keep_duplicate_formats=True))
    hub.faults.append(Fault("status", path="pytorch_model.bin", times=None, status=403))
    with pytest.raises(DownloadError, match="pytorch_model.bin: the hub refused access"):
        _run(spec.replace(keep_duplicate_formats=True), other, tmp_path)
    assert is_complete(folder) and require_complete(folder) == folder  # nothing verified replaced anything
    assert not (folder / "pytorch_model.bin").exists()


def test_killed_worker_resumes_and_leaves_no_corrupt_file(repo_dir, tmp_path):
    with FakeHub({REPO: repo_dir}, rate=150_000) as hub:
        spec = _spec(hub, completions=1, parallelism=1)
        plan = plan_download(spec)
        plan_path = tmp_path / "plan.json"
        plan_path.write_text(plan.to_json())
        folder = tmp_path / "pvc" / REPO
        proc = subprocess.Popen([sys.executable, "-m", "tke_playbook.podworker.worker", "--plan", str(plan_path),
                                 "--root", str(tmp_path / "pvc"), "--index", "0"], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while read_progress(folder)["bytes_done"] < 150_000 and time.monotonic() < deadline:
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        done = read_progress(folder)["bytes_done"]
        assert 0 < done < plan.total_bytes and not is_complete(folder)
        with pytest.raises(IncompleteModelError, match="has not finished"):  # serving refuses the folder
            require_complete(folder)
        hub.rate, asked_before = None, len(hub.ranges)
        _run(spec, plan, tmp_path / "pvc")
        again = [r for path, r in hub.ranges[asked_before:] if path == "model.safetensors"]
        assert again and all(not r.startswith("bytes=0-") for r in again)  # resumed, not restarted
        _assert_matches(folder, repo_dir, plan)


@pytest.mark.parametrize("fault", [
    pytest.param(Fault("status", path="model.safetensors", times=3, status=500), id="http-500s"),
    pytest.param(Fault("status", path="tokenizer.json", times=2, status=503), id="http-503s-small-file"),
    pytest.param(Fault("truncate", path="model.safetensors", times=3, after_bytes=50_000), id="closed-connections"),
    pytest.param(Fault("corrupt", path="tokenizer.json", times=1, after_bytes=123), id="wrong-byte-once"),
    pytest.param(Fault("stall", path="config.json", times=1, seconds=3), id="stalled-response"),
])
def test_transient_faults_are_retried(hub, repo_dir, tmp_path, fault):
    hub.faults.append(fault)
    spec = _spec(hub, "modelscope")
    plan = plan_download(spec)
    folder = run_local_download(spec, plan, tmp_path, poll_s=0.05, worker_args=FAST + ("--timeout", "1"))
    _assert_matches(folder, repo_dir, plan)
    assert fault.times == 0


def test_wrong_byte_every_time_fails_naming_the_file(hub, tmp_path):
    hub.faults.append(Fault("corrupt", path="tokenizer.json", times=None, after_bytes=10))
    spec = _spec(hub)
    plan = plan_download(spec)
    with pytest.raises(VerificationError, match="tokenizer.json failed verification twice") as info:
        _run(spec, plan, tmp_path)
    assert info.value.obj == "tokenizer.json"
    folder = tmp_path / REPO
    assert not is_complete(folder) and not (folder / "tokenizer.json").exists()
    assert any("tokenizer.json" in e for e in read_progress(folder)["errors"])


def test_server_errors_every_time_give_up_naming_the_file(hub, tmp_path):
    hub.faults.append(Fault("status", path="model.safetensors", times=None, status=500))
    spec = _spec(hub)
    with pytest.raises(DownloadError, match="model.safetensors: giving up .* after 4 retries.*HTTP 500"):
        _run(spec, plan_download(spec), tmp_path)
    assert not is_complete(tmp_path / REPO)


def test_truncated_every_time_gives_up(hub, tmp_path):
    hub.faults.append(Fault("truncate", path="model.safetensors", times=None, after_bytes=0))
    spec = _spec(hub, completions=1, parallelism=1)
    with pytest.raises(DownloadError, match="model.safetensors: giving up"):
        _run(spec, plan_download(spec), tmp_path)
    assert not is_complete(tmp_path / REPO)


def test_large_file_split_across_shards_is_written_concurrently(tmp_path):
    repo = make_repo(tmp_path / "r", {"model.safetensors": 3_000_000, "config.json": 100, "vocab.txt": 200,
                                      "modules.json": 50})
    with FakeHub({REPO: repo}, rate=2_000_000) as hub:
        spec = _spec(hub)
        plan = plan_download(spec)
        assert sum(p.path == "model.safetensors" for s in plan.shards for p in s) == 3
        folder = _run(spec, plan, tmp_path / "pvc")
        assert sha256(folder / "model.safetensors") == sha256(repo / "model.safetensors")
        checks = {f["path"]: f["check"] for f in read_manifest(folder)["files"]}
        assert checks == {"model.safetensors": "sha256", "config.json": "git-sha1", "vocab.txt": "git-sha1",
                          "modules.json": "git-sha1"}


def test_worker_runs_as_a_plain_script_like_in_the_pod(hub, repo_dir, tmp_path):
    """The ConfigMap layout: worker.py, progress.py, modelfolder.py and plan.json in one folder; shard from env."""
    from tke_playbook.manifests.download import build_worker_configmap

    spec = _spec(hub, completions=1, parallelism=1)
    plan = plan_download(spec)
    shipped = tmp_path / "opt"
    shipped.mkdir()
    for key, text in build_worker_configmap(spec, plan)["data"].items():
        (shipped / key).write_text(text)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-E", "-s", str(shipped / "worker.py"), "--plan",
                             str(shipped / "plan.json"),
                             "--root", str(tmp_path / "data")], env=dict(env, JOB_COMPLETION_INDEX="0"),
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "wrote the completion marker" in result.stdout
    _assert_matches(tmp_path / "data" / REPO, repo_dir, plan)
    assert json.loads((shipped / "plan.json").read_text())["plan"]["plan_id"] == plan.plan_id


def test_private_repo_token_reaches_the_worker_but_not_the_logs(repo_dir, tmp_path, monkeypatch):
    with FakeHub({REPO: repo_dir}, token="s3cret-token") as hub:
        monkeypatch.setenv("HF_TOKEN", "s3cret-token")
        spec = _spec(hub)
        plan = plan_download(spec)
        monkeypatch.delenv("HF_TOKEN")
        folder = _run(spec, plan, tmp_path, token="s3cret-token")
        assert is_complete(folder)
        state = state_path(folder)
        logs = "".join(p.read_text() for p in (state / "logs").iterdir())
        assert "s3cret" not in logs and "s3cret" not in (state / "plan.json").read_text()


def test_unwritable_volume_is_a_clear_error(hub, tmp_path):
    spec = _spec(hub, completions=1, parallelism=1)
    plan = plan_download(spec)
    blocker = tmp_path / REPO / "model.safetensors"
    blocker.mkdir(parents=True)  # a folder where the weights file must go
    with pytest.raises(DownloadError, match="Writing into .* failed.*Check that the PVC"):
        _run(spec, plan, tmp_path)
    assert not is_complete(tmp_path / REPO)
