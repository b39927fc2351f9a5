"""Bad files and paths on the command line (issue 21, item 8): each is one line on stderr and exit status 2, never
a traceback and never a hang. A kubeconfig, a key file or a model folder given on the command line may be
missing, a folder, a FIFO (opening it waits for a writer), /dev/zero (reading it never ends), binary, huge, or a
name longer than the system allows."""

from __future__ import annotations

import os
import signal

import pytest

from tke_playbook.cli.commands import main

GOOD_KEY = "cli-test-key-0123456789"


@pytest.fixture
def no_hang():
    def hung(signum, frame):
        raise TimeoutError("the command blocked or read without end")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.setitimer(signal.ITIMER_REAL, 60)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def bad(tmp_path):
    """A folder of things that are not what a command expects."""
    (tmp_path / "folder").mkdir()
    (tmp_path / "afile").write_text("x")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "binary").write_bytes(b"\xff\xfe\x00\x01binary")
    with open(tmp_path / "huge", "wb") as fh:  # sparse: 64 MiB on paper, nothing on disk
        fh.truncate(64 << 20)
    (tmp_path / "garbage.yaml").write_text("garbage: [unclosed\n  - x: {\n")
    (tmp_path / "deep.yaml").write_text("[" * 100_000 + "]" * 100_000)
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    for name, mode in (("key0644", 0o644), ("key0600", 0o600)):
        (tmp_path / name).write_text(GOOD_KEY + "\n")
        (tmp_path / name).chmod(mode)
    for name in ("binary", "huge"):
        (tmp_path / name).chmod(0o600)
    return tmp_path


def _one_line(capsys, command: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
    assert lines[0].startswith(f"tke-playbook {command}: "), lines[0]
    return lines[0]


LONG = "a" * 5000  # longer than any file name may be (ENAMETOOLONG)


@pytest.mark.parametrize("name, words", [
    pytest.param("garbage.yaml", "is not YAML (line 2", id="garbage-yaml"),
    pytest.param("missing", "the file does not exist", id="missing"),
    pytest.param("folder", "is a folder", id="folder"),
    pytest.param("fifo", "is a FIFO", id="fifo"),
    pytest.param("/dev/zero", "is a device", id="dev-zero"),
    pytest.param("binary", "is not text (UTF-8)", id="binary"),
    pytest.param("huge", "has 67108864 bytes", id="huge"),
    pytest.param("deep.yaml", "nested too deeply", id="nested-100k-deep"),
    pytest.param("list.yaml", "is not a kubeconfig", id="not-a-kubeconfig"),
    pytest.param("afile/x", "cannot read it (Not a directory)", id="under-a-file"),
    pytest.param(LONG, "File name too long", id="name-too-long"),
])
def test_preflight_refuses_a_bad_kubeconfig_in_one_line(bad, capsys, no_hang, name, words):
    assert main(["preflight", "--kubeconfig", os.path.join(bad, name)]) == 2
    assert words in _one_line(capsys, "preflight")


@pytest.mark.parametrize("name, words", [
    pytest.param("key0644", "permissions 0644 for '{dir}/key0644' are too open: chmod 600 {dir}/key0644",
                 id="mode-0644"),
    pytest.param("missing", "cannot read it (No such file or directory)", id="missing"),
    pytest.param("folder", "is a folder", id="folder"),
    pytest.param("fifo", "is a FIFO", id="fifo"),
    pytest.param("/dev/zero", "is a device", id="dev-zero"),
    pytest.param("binary", "is not text", id="binary"),
    pytest.param("huge", "has 67108864 bytes", id="huge"),
    pytest.param(LONG, "File name too long", id="name-too-long"),
])
def test_serve_refuses_a_bad_key_file_in_one_line(bad, capsys, no_hang, name, words):
    # as ssh refuses a private key others can read: the key guards the server, so a readable file gives it away
    if name != "fifo":
        os.chmod(bad / "fifo", 0o600)
    assert main(["serve", "--port", "0", "--api-key-file", os.path.join(bad, name)]) == 2
    assert words.format(dir=bad) in _one_line(capsys, "serve")


@pytest.mark.parametrize("argv, words", [
    pytest.param(["serve", "--port", "0", "--model", "{dir}/fifo"], "is a file, not a model folder", id="serve-fifo"),
    pytest.param(["serve", "--port", "0", "--model", "/dev/zero"], "is a file, not a model folder",
                 id="serve-dev-zero"),
    pytest.param(["serve", "--port", "0", "--model", "{dir}/" + LONG], "File name too long", id="serve-long"),
    pytest.param(["verify", "{dir}/" + LONG], "File name too long", id="verify-long"),
    pytest.param(["verify", "--adopt", "--trust-files", "{dir}/fifo"], "is a file, not a folder", id="trust-fifo"),
    pytest.param(["verify", "--adopt", "--trust-files", "{dir}/" + LONG], "File name too long", id="trust-long"),
    pytest.param(["download", "--offline", "--pvc-dir", "{dir}/" + LONG], "cannot be used (File name too long)",
                 id="download-long"),
    pytest.param(["download", "--offline", "--pvc-dir", "{dir}/afile/x"], "cannot be used (Not a directory)",
                 id="download-under-a-file"),
])
def test_other_bad_paths_are_one_line_and_exit_2(bad, capsys, no_hang, argv, words):
    assert main([a.format(dir=bad) for a in argv]) == 2
    assert words in _one_line(capsys, argv[0])


def test_a_good_key_file_passes_the_same_checks(bad):
    from tke_playbook.hostenv import read_key_file

    assert read_key_file(bad / "key0600") == GOOD_KEY
