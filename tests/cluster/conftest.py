"""Fixtures for the cluster layer: a fake API server on 127.0.0.1 and a Kube connected to it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # fake_apiserver, fake_store, fake_cluster (importlib mode)

from fake_apiserver import FakeApiServer  # noqa: E402
from fake_cluster import NS  # noqa: E402

from tke_playbook.kube.client import Kube  # noqa: E402


@pytest.fixture
def server():
    with FakeApiServer() as fake:
        fake.put("namespaces", {"metadata": {"name": NS}})
        yield fake


@pytest.fixture
def kube(server):
    with Kube.from_host(server.url) as connection:
        yield connection


@pytest.fixture
def script():
    """``script(step, step, ...)`` runs the steps one after another in a background thread (a tiny gap between
    them), as the cluster would while a wait runs in the test's thread. Joined at teardown."""
    import threading
    import time

    threads, errors = [], []

    def run(*steps, gap=0.15):
        def body():
            try:
                for step in steps:
                    time.sleep(gap)
                    step()
            except Exception as exc:  # surfaced at teardown
                errors.append(exc)

        thread = threading.Thread(target=body, daemon=True)
        thread.start()
        threads.append(thread)

    yield run
    for thread in threads:
        thread.join(timeout=10)
    assert not errors, errors
