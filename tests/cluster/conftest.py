"""Fixtures for the cluster layer: a fake API server on 127.0.0.1 and a Kube connected to it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # fake_apiserver, fake_store, fake_cluster (importlib mode)

from fake_apiserver import FakeApiServer  # noqa: E402

from tke_playbook.cluster.client import Kube  # noqa: E402

NS = "team-a"


@pytest.fixture
def server():
    with FakeApiServer() as fake:
        fake.put("namespaces", {"metadata": {"name": NS}})
        yield fake


@pytest.fixture
def kube(server):
    with Kube.from_host(server.url) as connection:
        yield connection


def until(condition, timeout: float = 10.0) -> None:
    """Block a script step until ``condition()`` holds (so a step happens only after the code under test saw the
    previous state - no reliance on timing)."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s: {condition}")
        time.sleep(0.01)


def requested(server, path_suffix: str):
    """A condition: the code under test has sent a request for a path ending with ``path_suffix``."""
    return lambda: any(path.endswith(path_suffix) for _, path, _ in list(server.requests))


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
