"""`verify` against a folder that lies (issue 21, items 5 and 6): symlinked folders, FIFOs, /dev/zero, files that
change while they are hashed, a manifest nested without end. Each ends in one line and a status, never a
traceback or an endless read. The hang cases run in a subprocess with a timeout, so a regression fails instead of
stopping the suite."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys

import pytest

from tke_playbook.cli import download as cli_download
from tke_playbook.cli.commands import main
from tke_playbook.download import adopt_model, verify_model
from tke_playbook.errors import IncompleteModelError, VerificationError
from tke_playbook.podworker import modelfolder
from tke_playbook.podworker.modelfolder import MARKER_PREFIX, is_complete, manifest_path, marker_path

FILES = {"a-first.bin": b"a" * 5000, "config.json": b"{}", "z-last.txt": b"z" * 300}


@pytest.fixture
def no_hang():
    """Fail, instead of waiting for ever, when a call blocks (opening a FIFO) or never ends (reading /dev/zero)."""
    def hung(signum, frame):
        raise TimeoutError("still running after 30 s: an endless read or a blocking open")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.setitimer(signal.ITIMER_REAL, 30)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def trusted(tmp_path):
    folder = tmp_path / "pvc" / "m"
    folder.mkdir(parents=True)
    for name, data in FILES.items():
        (folder / name).write_bytes(data)
    adopt_model(None, folder=folder, trust_files=True)
    assert is_complete(folder)
    return folder


def _verify(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tke_playbook.cli", "verify", *argv], capture_output=True,
                          text=True, timeout=60)


def _one_line(text: str) -> str:
    lines = text.replace("\r", "\n").strip().splitlines()
    assert lines and "Traceback" not in text and "Error:" not in lines[-1].split(":", 1)[0], text
    return lines[-1]


# --- item 5: trusting a folder refuses symlinked folders, as it refuses symlinked files --------------------------


@pytest.mark.parametrize("plant, words", [
    pytest.param(lambda f, out: os.symlink(out, f / "1_Pooling"), "'1_Pooling' in {f} is a symlinked folder",
                 id="symlinked-folder"),
    pytest.param(lambda f, out: os.symlink(out / "config.json", f / "config.json"), "'config.json' in {f} is a symlink",
                 id="symlinked-file"),
    pytest.param(lambda f, out: os.mkfifo(f / "pipe"), "'pipe' in {f} is a FIFO", id="fifo"),
    pytest.param(lambda f, out: os.symlink("/dev/zero", f / "zeros.bin"), "'zeros.bin' in {f} is a symlink",
                 id="dev-zero"),
])
def test_trusting_refuses_what_is_not_a_plain_file_in_one_line_and_exit_2(tmp_path, plant, words):
    folder, outside = tmp_path / "m", tmp_path / "outside"
    folder.mkdir()
    outside.mkdir()
    (folder / "model.safetensors").write_bytes(b"w" * 100)
    (outside / "config.json").write_text('{"pooling_mode_mean_tokens": true}')
    plant(folder, outside)
    done = _verify("--adopt", "--trust-files", str(folder))
    assert done.returncode == 2 and done.stdout == ""
    line = _one_line(done.stderr)
    assert len(done.stderr.strip().splitlines()) == 1 and line.startswith("tke-playbook verify: error: ")
    assert words.format(f=folder) in line
    assert not os.path.lexists(marker_path(folder))  # nothing recorded, nothing servable


# --- item 6: bad state and races ----------------------------------------------------------------------------------


def _replace_with_fifo(path):
    path.unlink()
    os.mkfifo(path)


def _replace_with_zeros(path):
    path.unlink()
    os.symlink("/dev/zero", path)


def _nest(folder, depth=100_000):
    raw = b'{"files": ' + b"[" * depth + b"]" * depth + b"}"
    manifest_path(folder).write_bytes(raw)
    marker_path(folder).write_text(f"{MARKER_PREFIX}{hashlib.sha256(raw).hexdigest()}\n")


@pytest.mark.parametrize("damage, words", [
    pytest.param(lambda f: _replace_with_fifo(manifest_path(f)), "is a FIFO, not a regular file", id="fifo-manifest"),
    pytest.param(lambda f: _replace_with_zeros(manifest_path(f)), "is a symlink", id="dev-zero-manifest"),
    pytest.param(lambda f: _replace_with_fifo(marker_path(f)), "is a FIFO, not a regular file", id="fifo-marker"),
    pytest.param(lambda f: _replace_with_fifo(f / "z-last.txt"), "z-last.txt is a FIFO", id="fifo-file"),
    pytest.param(lambda f: _replace_with_zeros(f / "z-last.txt"), "z-last.txt is a symlink", id="dev-zero-file"),
    pytest.param(_nest, "nested too deeply", id="manifest-nested-100k-deep"),
    pytest.param(lambda f: (f / "z-last.txt").unlink() or (f / "z-last.txt").mkdir(), "z-last.txt is a folder",
                 id="file-became-folder"),
])
def test_bad_state_ends_in_one_line_and_exit_1(trusted, damage, words):
    damage(trusted)
    done = _verify(str(trusted))  # a hang fails the test through the timeout
    line = _one_line(done.stderr)
    assert done.returncode == 1 and words in line and line.startswith("tke-playbook verify: ")
    assert len([ln for ln in done.stderr.replace("\r", "\n").splitlines() if ln.strip()]) == 1


def _during_the_first_file(change):
    """A progress hook that changes the folder while the first file is being hashed (once)."""
    state = {"done": False}

    def hook(done, total, path):
        if not state["done"]:
            state["done"] = True
            change()

    return hook


@pytest.mark.parametrize("change, words", [
    pytest.param(lambda f: (f / "z-last.txt").unlink(), "z-last.txt is missing", id="last-file-removed"),
    pytest.param(lambda f: (f / "z-last.txt").unlink() or (f / "z-last.txt").mkdir(), "z-last.txt is a folder",
                 id="last-file-became-folder"),
    pytest.param(lambda f: _replace_with_fifo(f / "z-last.txt"), "z-last.txt is a FIFO", id="last-file-became-fifo"),
    pytest.param(lambda f: _replace_with_zeros(f / "z-last.txt"), "z-last.txt is a symlink",
                 id="last-file-became-dev-zero"),
    pytest.param(lambda f: shutil.rmtree(f), "is missing", id="folder-removed"),
])
def test_files_changed_while_verify_runs_end_in_one_line(trusted, capsys, monkeypatch, no_hang, change, words):
    with pytest.raises(VerificationError, match=words):
        verify_model(trusted, on_progress=_during_the_first_file(lambda: change(trusted)))
    # the same through the command line: the first file's progress report is the moment it changes
    shutil.rmtree(trusted.parent)
    trusted.mkdir(parents=True)
    for name, data in FILES.items():
        (trusted / name).write_bytes(data)
    adopt_model(None, folder=trusted, trust_files=True)
    hook = _during_the_first_file(lambda: change(trusted))
    monkeypatch.setattr(cli_download._Bar, "__call__", lambda self, done, total, path: hook(done, total, path))
    assert main(["verify", str(trusted)]) == 1
    line = _one_line(capsys.readouterr().err)
    assert words in line and "Traceback" not in line


def test_a_file_that_grows_while_it_is_hashed_is_read_only_up_to_its_listed_size(trusted, monkeypatch):
    monkeypatch.setattr(modelfolder, "HASH_BLOCK", 1000)  # the 5000-byte first file is read in 5 blocks

    def grow():
        with open(trusted / "a-first.bin", "ab") as fh:
            fh.write(b"more" * 10_000)

    read, real_hash_fd = [], modelfolder.hash_fd

    def counting(fd, size, on_bytes=None):
        sha256, sha1, got = real_hash_fd(fd, size, on_bytes)
        read.append(got)
        return sha256, sha1, got

    monkeypatch.setattr(modelfolder, "hash_fd", counting)
    with pytest.raises(VerificationError, match="a-first.bin has more than 5000 bytes"):
        verify_model(trusted, on_progress=_during_the_first_file(grow))
    assert read == [5001]  # 40,000 bytes more on disk, one byte past the listed size read


def test_a_malformed_manifest_entry_is_named_not_a_traceback(trusted):
    manifest = modelfolder.read_manifest(trusted)
    manifest["files"][0]["size"] = True  # a bool is no size
    modelfolder.write_completion(trusted, manifest)
    with pytest.raises(IncompleteModelError, match="malformed entry"):
        verify_model(trusted)
    manifest["files"][0].update(size=5000, check=["unhashable"])
    modelfolder.write_completion(trusted, manifest)
    assert verify_model(trusted)["checks"] == {"sha256": 1, "trusted (not checked against a hub)": 2}
