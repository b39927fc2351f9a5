"""A hostile or broken hub cannot reach the toolkit's state, write a byte, or crash the CLI: one validation of the
listing at planning time, on this machine and in the pods alike."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hostile_hub import COMMIT, HostileHub, ms_entries
from hubfiles import FAST, REPO

from tke_playbook.download import plan_download, run_local_download
from tke_playbook.errors import HubError
from tke_playbook.manifests.download import build_worker_configmap
from tke_playbook.podworker.modelfolder import is_complete, read_manifest, require_complete, state_path
from tke_playbook.podworker.rules import check_listing
from tke_playbook.specs import DownloadSpec

FILES = {"model.safetensors": os.urandom(300_000), "config.json": b'{"hidden_size": 384}\n',
         "tokenizer.json": os.urandom(5_000)}
GOOD = {"path": "config.json", "size": 10, "blob_id": "a" * 40}


def _entry(**changes):
    return {**GOOD, **changes}


@pytest.mark.parametrize("entries, words", [
    pytest.param([_entry(path=".")], "'.' path component", id="dot"),
    pytest.param([_entry(path="a/./b")], "'.' path component", id="dot-component"),
    pytest.param([_entry(path="a\x00b")], "NUL character", id="nul"),
    pytest.param([_entry(path="a\nb")], "control character", id="newline"),
    pytest.param([_entry(path="x" * 300)], "component of 300 bytes", id="300-char-name"),
    pytest.param([_entry(path="/".join(["d" * 200] * 6))], "path of 1205 bytes", id="long-path"),
    pytest.param([_entry(path="../../etc/passwd")], "'..' component", id="dotdot"),
    pytest.param([_entry(path="/etc/passwd")], "absolute path", id="absolute"),
    pytest.param([_entry(path="a//b")], "empty or '.' path component", id="empty-component"),
    pytest.param([_entry(path=".tke-playbook/worker/transfer.py")], "state folder name", id="state-worker-code"),
    pytest.param([_entry(path=".tke-playbook/COMPLETE")], "state folder name", id="state-marker"),
    pytest.param([_entry(path="sub/.TKE-Playbook/manifest.json")], "state folder name", id="state-any-case"),
    pytest.param([_entry(path="a"), _entry(path="a/b")], "both as a file and as a folder", id="file-folder-clash"),
    pytest.param([_entry(size=10), _entry(size=11)], "twice with different sizes", id="duplicate-other-size"),
    pytest.param([_entry(size=-1)], "negative size", id="size-negative"),
    pytest.param([_entry(size=None)], "no size (null)", id="size-null"),
    pytest.param([_entry(size="12")], "not a whole number", id="size-string"),
    pytest.param([_entry(size=1.5)], "not a whole number", id="size-float"),
    pytest.param([_entry(size=True)], "not a whole number", id="size-bool"),
    pytest.param([_entry(size=2**64)], "absurd size", id="size-2-64"),
    pytest.param([_entry(size=10**15)], "absurd size", id="size-10-15"),
    pytest.param([_entry(sha256="abc")], "malformed sha256", id="sha256-short"),
    pytest.param([_entry(sha256="g" * 64)], "malformed sha256", id="sha256-not-hex"),
    pytest.param([_entry(blob_id="z" * 40)], "malformed git blob sha1", id="sha1-not-hex"),
    pytest.param([_entry(path=7)], "not text", id="path-number"),
    pytest.param(["config.json"], "not an object", id="entry-string"),
])
def test_every_bad_listing_is_refused_naming_hub_file_and_problem(entries, words):
    with pytest.raises(HubError, match=re.escape(words)) as info:
        check_listing(entries, "Hugging Face at http://127.0.0.1:1 (BAAI/x at revision 'main')")
    assert "Hugging Face at http://127.0.0.1:1" in str(info.value) and "refused" in str(info.value)


def test_identical_duplicates_are_one_file():
    files = check_listing([_entry(), _entry()], "hub")
    assert [f.path for f in files] == ["config.json"]


def _snapshot(folder: Path) -> dict:
    """Every file of the model folder and its state, with size and mtime."""
    found = {}
    for base in (folder, state_path(folder)):
        for path in sorted(base.rglob("*")):
            if path.is_file():
                found[str(path)] = (path.stat().st_size, path.stat().st_mtime_ns)
    return found


def _spec(hub, source, **kw):
    return DownloadSpec(model=REPO, source=source, endpoint=hub.url, **kw)


@pytest.fixture
def complete(tmp_path):
    """A model downloaded cleanly from the hub that then turns hostile."""
    def make(source):
        hub = HostileHub(FILES).__enter__()
        spec = _spec(hub, source)
        folder = run_local_download(spec, plan_download(spec), tmp_path, poll_s=0.05, worker_args=FAST)
        assert is_complete(folder)
        return hub, spec, folder

    made = []
    yield lambda source: made.append(make(source)) or made[-1]
    for hub, *_ in made:
        hub.__exit__(None, None, None)


@pytest.mark.parametrize("source", ["huggingface", "modelscope"])
@pytest.mark.parametrize("evil", [".tke-playbook/worker/transfer.py", ".tke-playbook/COMPLETE"])
def test_listing_naming_the_state_is_refused_before_any_byte(complete, source, evil):
    hub, spec, folder = complete(source)
    before, gets = _snapshot(folder), len(hub.file_gets)
    hub.files[evil] = b"import os; os.system('echo pwned')\n"
    hub.hf_listing = hub.hf_listing + [{"type": "file", "path": evil, "size": len(hub.files[evil]), "oid": "a" * 40}]
    hub.ms_listing = ms_entries(hub.files)
    with pytest.raises(HubError, match=f"at {hub.url} .* lists '{evil}' with the toolkit's own state folder"):
        plan_download(spec)
    # the same listing met by a pod (no plan in the ConfigMap: it lists the hub itself)
    shipped = folder.parent.parent / "opt"
    shipped.mkdir(exist_ok=True)
    for key, text in build_worker_configmap(spec)["data"].items():
        (shipped / key).write_text(text)
    pod = subprocess.run([sys.executable, "-E", "-s", "-S", str(shipped / "worker.py"), "--plan",
                          str(shipped / "plan.json"), "--root", str(folder.parent.parent), "--index", "0",
                          "--run-id", "evil"], capture_output=True, text=True, timeout=60)
    assert pod.returncode != 0 and "state folder name" in pod.stderr
    assert _snapshot(folder) == before and len(hub.file_gets) == gets  # not a byte written or fetched
    assert require_complete(folder) == folder  # the previous model is still servable


def test_null_size_through_the_cli_is_one_line_blaming_the_listing(tmp_path, capsys):
    from tke_playbook.cli.commands import main

    with HostileHub(FILES) as hub:
        hub.hf_listing[0]["size"] = None
        code = main(["download", "--model", REPO, "--source", "huggingface", "--endpoint", hub.url, "--pvc-dir",
                     str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err and "TypeError" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "no size (null)" in lines[0] and hub.url in lines[0]
    assert "PVC" not in lines[0]  # the listing is to blame, not the volume
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("source", ["huggingface", "modelscope"])
@pytest.mark.parametrize("body", [b"<html>mirror maintenance</html>", b'{"unexpected": true}', b"[1, 2]"])
def test_a_malformed_answer_is_not_called_unreachable(source, body):
    with HostileHub(FILES) as hub:
        hub.raw_body = body
        with pytest.raises(HubError) as info:
            plan_download(_spec(hub, source))
    message = str(info.value)
    assert "malformed" in message and "Cannot reach" not in message and hub.url in message


def test_a_file_without_any_hash_is_refused_unless_allowed(tmp_path):
    with HostileHub(FILES) as hub:
        for entry in hub.ms_listing:
            if entry["Path"] == "config.json":
                entry["Sha256"] = ""
        with pytest.raises(HubError, match="lists no sha256 or git sha1 for 'config.json'.*--allow-unverified"):
            plan_download(_spec(hub, "modelscope"))
        spec = _spec(hub, "modelscope", allow_unverified=True)
        folder = run_local_download(spec, plan_download(spec), tmp_path, poll_s=0.05, worker_args=FAST)
    checks = {f["path"]: f["check"] for f in read_manifest(folder)["files"]}
    assert checks["config.json"].startswith("none") and checks["model.safetensors"] == "sha256"


def test_wrong_range_206_on_a_non_lfs_file_is_caught_by_its_git_sha1(tmp_path):
    files = {"tokenizer.json": os.urandom(3_000_000), "config.json": b"{}", "vocab.txt": b"a\nb\n"}
    with HostileHub(files) as hub:
        hub.wrong_range = {"tokenizer.json"}  # right Content-Range, bytes from offset 0
        spec = _spec(hub, "huggingface", completions=3, parallelism=3)
        plan = plan_download(spec)
        assert plan.file("tokenizer.json").check == "git-sha1" and plan.revision == COMMIT
        assert sum(p.path == "tokenizer.json" and p.start > 0 for s in plan.shards for p in s) >= 1
        folder = run_local_download(spec, plan, tmp_path, poll_s=0.05, worker_args=FAST)
    logs = "".join(p.read_text() for p in (state_path(folder) / "logs").iterdir())
    assert "tokenizer.json: git-sha1 mismatch" in logs  # caught, then fetched whole from offset 0
    assert (folder / "tokenizer.json").read_bytes() == files["tokenizer.json"]
    record = {f["path"]: f for f in read_manifest(folder)["files"]}["tokenizer.json"]
    assert record["check"] == "git-sha1"


def test_a_listing_file_never_lands_inside_the_state(tmp_path):
    """The state lives beside the model folder: the names a listing can reach are inside the folder only."""
    with HostileHub(FILES) as hub:
        spec = _spec(hub, "huggingface")
        folder = run_local_download(spec, plan_download(spec), tmp_path, poll_s=0.05, worker_args=FAST)
    state = state_path(folder)
    assert state.parent.name == ".tke-playbook" and folder not in state.parents
    assert sorted(p.name for p in folder.iterdir()) == sorted(FILES)
    assert json.loads((state / "manifest.json").read_text())["revision"] == COMMIT
