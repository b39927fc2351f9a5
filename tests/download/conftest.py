"""Fixtures for download tests: generated repositories served by a FakeHub on 127.0.0.1."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path[:0] = [str(Path(__file__).parent), str(Path(__file__).parents[1])]  # hubfiles, fakes (importlib mode)

from fakes.hub import FakeHub  # noqa: E402
from hubfiles import MS_REPO, REPO, SMALL_REPO, make_repo  # noqa: E402


@pytest.fixture
def repo_dir(tmp_path) -> Path:
    return make_repo(tmp_path / "hub" / "repo", SMALL_REPO)


@pytest.fixture
def hub(repo_dir):
    with FakeHub({REPO: repo_dir, MS_REPO: repo_dir}) as mirror:
        yield mirror
