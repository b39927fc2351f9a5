"""`tke-playbook download` (registered by the integrator) and `python -m tke_playbook.download.cli`."""

from __future__ import annotations

import argparse

from tke_playbook.download import cli
from tke_playbook.modelfolder import is_complete


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
