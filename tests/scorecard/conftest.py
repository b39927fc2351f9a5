"""Fixtures for the scorecard: the shipped set, one local server (all-MiniLM-L6-v2) for the whole session, the
offline model in-process, and its sentence-transformers reference."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def dataset():
    from tke_playbook.evaluate.datasets import load_bilingual

    return load_bilingual()


@pytest.fixture(scope="session")
def local_server(tmp_path_factory):
    from tke_playbook.localserver import start_server

    with start_server(timeout=300, log_path=tmp_path_factory.mktemp("scorecard-server") / "server.log") as server:
        yield server


@pytest.fixture(scope="session")
def minilm():
    from tke_playbook.embed.local import LocalEmbedder

    return LocalEmbedder()


@pytest.fixture(scope="session")
def reference():
    from tke_playbook.hostenv import offline_model_dir
    from tke_playbook.scorecard import ReferenceEncoder

    return ReferenceEncoder(offline_model_dir())
