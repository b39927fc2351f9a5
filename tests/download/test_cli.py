"""`tke-playbook download` (registered by the integrator) and `python -m tke_playbook.cli.download`."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fakes.hub import FakeHub

from tke_playbook.cli import download as cli
from tke_playbook.podworker.modelfolder import is_complete


def test_plan_only_compares_the_tutorial_split_with_ours(capsys):
    assert cli.main(["--offline", "--plan-only", "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert "tutorial" in out and "balanced" in out and "per shard (MB)" in out


def test_offline_download_completes(tmp_path, capsys):
    assert cli.main(["--offline", "--pvc-dir", str(tmp_path), "--workers", "2"]) == 0
    assert is_complete(tmp_path / "sentence-transformers/all-MiniLM-L6-v2")
    assert "complete:" in capsys.readouterr().out


def test_bad_input_is_one_line_and_exit_2(capsys):
    assert cli.main(["--model", "bge-m4", "--plan-only"]) == 2
    assert "Did you mean 'BAAI/bge-m3'" in capsys.readouterr().err


def test_register_adds_the_subcommand():
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["download", "--plan-only"])
    assert args.func is cli.run and args.plan_only


# --- bad values: one line, exit 2, no traceback -----------------------------------------------------------


@pytest.mark.parametrize("args, words", [
    pytest.param(["--workers", "1000000000000"], "at most 64", id="workers-absurd"),
    pytest.param(["--workers", "300"], "at most 64", id="workers-300"),
    pytest.param(["--workers", "0"], "at least 1", id="workers-zero"),
    pytest.param(["--workers", "many"], "invalid int value", id="workers-not-a-number"),
    pytest.param(["--pvc-dir", "{file}"], "is a file, not a directory", id="pvc-dir-a-file"),
    pytest.param(["--pvc-dir", "/proc/self"], "inside /proc", id="pvc-dir-proc"),
    pytest.param(["--pvc-dir", ""], "The PVC folder is empty", id="pvc-dir-empty"),
    pytest.param(["--model", "bge-m4"], "Did you mean", id="unknown-model"),
    pytest.param(["--revision", "a b"], "revision", id="revision-with-space"),
    pytest.param(["--revision", ""], "revision is empty", id="revision-empty"),
    pytest.param(["--model", ""], "model is empty", id="model-empty"),
    pytest.param(["--model", " "], "model is empty", id="model-blank"),
    pytest.param(["--pvc-dir", "/proc/self/cwd"], "inside /proc", id="pvc-dir-through-proc"),
])
def test_each_bad_value_is_one_line_and_exit_2(tmp_path, capsys, args, words):
    from tke_playbook.cli.commands import main

    afile = tmp_path / "afile"
    afile.write_text("x")
    argv = ["download", "--offline", "--plan-only", *[a.replace("{file}", str(afile)) for a in args]]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and words in err and "Traceback" not in err
    assert afile.read_text() == "x" and sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


# --- killing the CLI leaves no worker ---------------------------------------------------------------------


def _children(pid: int) -> set[int]:
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found |= {int(c) for c in (task / "children").read_text().split()}
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


@pytest.mark.skipif(not Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").exists(),
                    reason="needs Linux /proc/<pid>/task/<tid>/children")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_killing_the_cli_leaves_no_worker(repo_dir, tmp_path, sig):
    from hubfiles import REPO

    with FakeHub({REPO: repo_dir}, rate=20_000) as hub:  # slow enough to be mid-download when killed
        cli = subprocess.Popen([sys.executable, "-m", "tke_playbook.cli", "download", "--model", REPO, "--source",
                                "huggingface", "--endpoint", hub.url, "--pvc-dir", str(tmp_path / "pvc"),
                                "--workers", "3"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline, workers = time.monotonic() + 60, set()
        while time.monotonic() < deadline and len(workers) < 3:
            workers = _children(cli.pid)
            time.sleep(0.1)
        assert len(workers) == 3, "the CLI started its worker processes"
        os.kill(cli.pid, sig)
        cli.wait(timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(_alive(w) for w in workers):
            time.sleep(0.1)
        assert not any(_alive(w) for w in workers)


# --- the acceptance scenario, from the command line -------------------------------------------------------


def test_rerun_through_a_corrupt_mirror_fails_clearly_and_the_model_stays_verified(tmp_path, capsys):
    from hostile_hub import HostileHub
    from hubfiles import REPO

    from tke_playbook.cli.commands import main

    old = {"model.safetensors": os.urandom(300_000), "config.json": b'{"v": 1}', "vocab.txt": b"a\nb\n"}
    args = ["download", "--model", REPO, "--source", "huggingface", "--pvc-dir", str(tmp_path)]
    with HostileHub(old) as hub:
        assert main([*args, "--endpoint", hub.url, "--workers", "2"]) == 0
        assert "by git-sha1" in capsys.readouterr().out
        fetched = len(hub.file_gets)
        for workers in ("3", "1"):  # other --workers: not one file fetched again
            assert main([*args, "--endpoint", hub.url, "--workers", workers]) == 0
            assert len(hub.file_gets) == fetched
    with HostileHub({**old, "config.json": b'{"v": 2}'}) as bad:
        bad.corrupt = set(bad.files)
        assert main([*args, "--endpoint", bad.url]) == 1
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert "config.json failed verification twice" in line and "nothing was replaced" in line
        assert "model.safetensors" not in bad.file_gets
    assert main(["verify", str(tmp_path / REPO)]) == 0
    assert "verified 3 files" in capsys.readouterr().out


@pytest.mark.parametrize("args, words", [
    pytest.param(["--model", "", "{dir}"], "model is empty", id="model-empty"),
    pytest.param(["--adopt", "--trust-files", "/"], "system folder", id="trust-root"),
    pytest.param(["--adopt", "--trust-files", "/proc/self/cwd"], "system folder", id="trust-through-proc"),
    pytest.param(["--adopt", "--trust-files", "/usr"], "system folder", id="trust-usr"),
    pytest.param(["--adopt", "--trust-files", "{file}"], "is a file, not a folder", id="trust-a-file"),
])
def test_each_bad_verify_value_is_one_line_and_exit_2(tmp_path, capsys, args, words):
    from tke_playbook.cli.commands import main

    afile = tmp_path / "afile"
    afile.write_text("x")
    argv = ["verify", *[a.replace("{file}", str(afile)).replace("{dir}", str(tmp_path)) for a in args]]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and words in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_a_failed_verify_prints_its_problem_in_one_line(tmp_path, capsys):
    from tke_playbook.cli.commands import main

    assert main(["verify", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err
