"""`tke-playbook verify` (re-hash against the manifest), adopting files fetched by other means (the tutorial's own
script), and the vLLM init container applying the same completeness rule as the local server."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from hubfiles import FAST, REPO

from tke_playbook.cli.commands import main
from tke_playbook.download import adopt_model, plan_download, run_local_download
from tke_playbook.errors import IncompleteModelError, VerificationError
from tke_playbook.podworker.modelfolder import TRUSTED, is_complete, read_manifest, require_complete
from tke_playbook.specs import DownloadSpec


@pytest.fixture
def downloaded(hub, tmp_path):
    spec = DownloadSpec(model=REPO, source="huggingface", endpoint=hub.url)
    return run_local_download(spec, plan_download(spec), tmp_path / "pvc", poll_s=0.05, worker_args=FAST)


def _one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


def test_verify_rehashes_every_file_and_says_which_check(downloaded, capsys):
    assert main(["verify", str(downloaded)]) == 0
    captured = capsys.readouterr()
    assert "verified 5 files" in captured.out and "by sha256" in captured.out and "by git-sha1" in captured.out
    assert "100%|" in captured.out  # the progress bar: lines on stdout (stderr holds only a failure's one line)
    assert main(["verify", "--pvc-dir", str(downloaded.parent.parent), "--model", REPO]) == 0


def test_verify_names_the_first_changed_file_and_exits_1(downloaded, capsys):
    target = downloaded / "config.json"
    data = bytearray(target.read_bytes())
    data[0] ^= 1
    target.write_bytes(bytes(data))
    assert main(["verify", str(downloaded)]) == 1
    line = _one_line(capsys.readouterr().err.replace("\r", "\n").splitlines()[-1])
    assert "config.json" in line and "changed after it was verified" in line


@pytest.mark.parametrize("argv, code, words", [
    pytest.param(["verify", "{tmp}/nothing"], 1, "does not exist", id="missing-folder"),
    pytest.param(["verify", "{tmp}"], 1, "no completion marker", id="no-marker"),
    pytest.param(["verify", "--trust-files", "{tmp}"], 2, "--trust-files goes with --adopt", id="trust-alone"),
    pytest.param(["verify", "{tmp}", "--pvc-dir", "{tmp}"], 2, "either as PATH or as --pvc-dir", id="path-and-dir"),
    pytest.param(["verify", "--pvc-dir", "/proc/self"], 2, "inside /proc", id="pvc-dir-proc"),
])
def test_verify_problems_are_one_line(tmp_path, capsys, argv, code, words):
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == code
    assert words in _one_line(capsys.readouterr().err)


def _tutorial_download(repo_dir, pvc):
    """What the tutorial's tke-llm-downloader.sh leaves: the files, no marker, and (both formats) extra .bin."""
    folder = pvc / REPO
    shutil.copytree(repo_dir, folder)
    return folder


def test_files_from_the_tutorials_script_are_adopted_against_the_hub(hub, repo_dir, tmp_path, capsys):
    folder = _tutorial_download(repo_dir, tmp_path / "pvc")
    with pytest.raises(IncompleteModelError, match="verify --adopt"):
        require_complete(folder)
    assert main(["verify", "--adopt", "--source", "huggingface", "--endpoint", hub.url, "--model", REPO,
                 str(folder)]) == 0
    assert "adopted and verified 5 files" in capsys.readouterr().out
    assert require_complete(folder) == folder
    manifest = read_manifest(folder)
    assert manifest["mode"] == "adopt" and {f["check"] for f in manifest["files"]} == {"sha256", "git-sha1"}
    assert not [p for _, p, s in hub.log if "/resolve/" in p or "/cdn-lfs/" in p]  # nothing fetched


def test_adopting_a_damaged_or_partial_folder_fails_naming_the_file(hub, repo_dir, tmp_path):
    folder = _tutorial_download(repo_dir, tmp_path / "pvc")
    (folder / "tokenizer.json").write_bytes(b"{}")
    spec = DownloadSpec(model=REPO, source="huggingface", endpoint=hub.url)
    with pytest.raises(VerificationError, match="tokenizer.json has 2 bytes, the hub lists 40000"):
        adopt_model(spec, folder=folder)
    (folder / "tokenizer.json").unlink()
    with pytest.raises(VerificationError, match="tokenizer.json is missing"):
        adopt_model(spec, folder=folder)
    assert not is_complete(folder)


def test_trusting_the_files_is_an_explicit_opt_out(repo_dir, tmp_path, capsys):
    folder = _tutorial_download(repo_dir, tmp_path / "pvc")
    assert main(["verify", "--adopt", "--trust-files", str(folder)]) == 0
    manifest = read_manifest(folder)
    assert {f["check"] for f in manifest["files"]} == {TRUSTED} and len(manifest["files"]) == 6
    assert is_complete(folder) and manifest["model"] is None  # no --model: served under the folder's own name


# --- the vLLM init container: the same rule, run from the manifest's own command --------------------------


def _init_container_run(folder, timeout="0"):
    """Run the Deployment's wait-for-model command with this test's PVC in place of the mount."""
    from tke_playbook.manifests.serving import build_workload
    from tke_playbook.specs.serving import seed_profile

    spec = seed_profile().replace(model="BAAI/bge-small-en-v1.5", max_model_len=512)
    init = build_workload(spec)["spec"]["template"]["spec"]["initContainers"][0]
    mount = init["volumeMounts"][0]
    assert mount["readOnly"] is True and mount["subPath"] == "BAAI"  # the folder's parent: the state is beside it
    pvc = folder.parent.parent
    command = [c.replace(mount["mountPath"], str(pvc / mount["subPath"])) for c in init["command"]]
    assert command[0] == "python3" and command[1] == "-c"
    command[command.index("--timeout") + 1] = timeout
    return subprocess.run([sys.executable, *command[1:]], capture_output=True, text=True, timeout=60)


def test_init_container_waits_until_the_folder_is_complete(hub, repo_dir, tmp_path):
    folder = _tutorial_download(repo_dir, tmp_path / "pvc")
    waiting = _init_container_run(folder)
    assert waiting.returncode == 1 and "no completion marker" in waiting.stdout
    adopt_model(DownloadSpec(model=REPO, source="huggingface", endpoint=hub.url), folder=folder)
    ready = _init_container_run(folder)
    assert ready.returncode == 0 and "is complete" in ready.stdout
    (folder / "config.json").unlink()  # what the local server refuses, the init container refuses too
    with pytest.raises(IncompleteModelError, match="config.json is missing"):
        require_complete(folder)
    assert _init_container_run(folder).returncode == 1


def test_the_cluster_job_adopts_files_already_on_the_pvc(hub, repo_dir, tmp_path):
    """`render --existing-files adopt`: the same Job checks the files the tutorial's script left, fetches nothing."""
    from tke_playbook.manifests import build_worker_configmap

    folder = _tutorial_download(repo_dir, tmp_path / "data")
    spec = DownloadSpec(model=REPO, source="huggingface", endpoint=hub.url, completions=2, parallelism=2,
                        mode="adopt")
    shipped = tmp_path / "opt"
    shipped.mkdir()
    for key, text in build_worker_configmap(spec)["data"].items():
        (shipped / key).write_text(text)
    for index in ("1", "0"):
        pod = subprocess.run([sys.executable, "-E", "-s", "-S", str(shipped / "worker.py"), "--plan",
                              str(shipped / "plan.json"), "--root", str(tmp_path / "data")], capture_output=True,
                             text=True, timeout=60, env={"JOB_COMPLETION_INDEX": index, "TKE_RUN_ID": "uid"})
        assert pod.returncode == 0, pod.stderr
    assert require_complete(folder) == folder and read_manifest(folder)["mode"] == "adopt"
    assert not [p for _, p, s in hub.log if "/resolve/" in p or "/cdn-lfs/" in p]
