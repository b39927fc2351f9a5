"""Issue 22's acceptance: following ``deploy(serving_spec)`` on a cluster from the facade down to the manifest builders
and the API server, the path goes down the layers and comes back up once (before: 14 stops in 8 files, 5 climbs
back up - the facade forwarded to a backend, which built the objects, applied them, recorded, waited and asked for
the endpoint in separate trips down, and the wait called back up into the playbook for every log line).

A trace (``sys.setprofile``) of a deploy on the fake API server collects the layer of every frame of the
toolkit the call enters. Values and the sink every layer uses - ``specs`` (the spec's properties and rules),
``podworker``, ``reporting`` (each log line goes down to the reporter), ``errors``, and ``hostenv`` (what this machine
holds: the API key's file and the annotation salt, read or made as values before the trip down; they lived in
``specs.apikeys`` until ``specs`` became pure) - are not stops of the path.
The layers of the frames on top of the stack, in order, must go down and then up: never back up to a higher layer
and down again. docs/DESIGN.md ("One deployment, widget to cluster") lists the stops.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent / "cluster"))

VALUES = {"specs", "podworker", "reporting", "errors", "hostenv"}  # not stops: values, rules, the reporter, the host


def _layers() -> dict[str, int]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contract = next(c for c in pyproject["tool"]["importlinter"]["contracts"] if c["type"] == "layers")
    return {name.strip().removeprefix("tke_playbook."): number
            for number, line in enumerate(contract["layers"], start=1) for name in line.split("|")}


class PathTrace:
    """The frames of the toolkit a call enters in this thread: ``stack_layers`` is the layer of the frame on top
    of the stack (values left out) each time it changes, ``stops`` each frame entered from another package."""

    def __init__(self) -> None:
        self.layer_of = _layers()
        self.stack: list[tuple[str, str, int]] = []  # (package, module.function, layer) of step frames
        self.stack_layers: list[int] = []
        self.stops: list[str] = []
        self.thread = threading.get_ident()

    def _package(self, frame) -> str | None:
        module = frame.f_globals.get("__name__", "")
        if not module.startswith("tke_playbook."):
            return None
        package = module.split(".")[1]
        return None if package in VALUES else package

    def _top(self) -> None:
        layer = self.stack[-1][2] if self.stack else 0
        if not self.stack_layers or self.stack_layers[-1] != layer:
            self.stack_layers.append(layer)

    def __call__(self, frame, event, arg):
        if threading.get_ident() != self.thread or event not in ("call", "return"):
            return
        package = self._package(frame)
        if package is None:
            return
        name = f"{frame.f_globals['__name__']}.{frame.f_code.co_name}"
        if event == "call":
            if not self.stack or self.stack[-1][0] != package:
                self.stops.append(name)
            self.stack.append((package, name, self.layer_of[package]))
        elif self.stack and self.stack[-1][1] == name:
            self.stack.pop()
        self._top()

    def climbs_back_down(self) -> int:
        """How often the path came back up to a higher layer and then went down again (0: down, then up)."""
        seq = [layer for layer in self.stack_layers if layer]
        return sum(1 for a, b, c in zip(seq, seq[1:], seq[2:]) if a > b < c)


def trace(call):
    tracer = PathTrace()
    sys.setprofile(tracer)
    try:
        result = call()
    finally:
        sys.setprofile(None)
    return tracer, result


def test_the_trace_counts_a_path_that_climbs_back_and_goes_down_again():
    tracer = PathTrace()
    tracer.stack_layers = [0, 2, 4, 7, 4, 2, 4, 2, 0]
    assert tracer.climbs_back_down() == 1
    tracer.stack_layers = [0, 2, 4, 7, 8, 7, 4, 2, 0]
    assert tracer.climbs_back_down() == 0


@pytest.fixture
def deployed_on_the_fake_cluster(home):
    from fake_cluster import cluster_with_nodes, serve_when_applied

    from tke_playbook.playbook import ClusterPlaybook
    from tke_playbook.reporting import QuietReporter

    with cluster_with_nodes(("gpu-1", {})) as (server, kube):
        pb = ClusterPlaybook(kube=kube, reporter=QuietReporter())
        spec = pb.serving.defaults("BAAI/bge-m3")
        helper = threading.Thread(target=serve_when_applied, args=(server, spec, "vllm-bge-m3-0"),
                                  kwargs={"lines": ("INFO Loading weights", "INFO Application startup complete."),
                                          "ip": "10.0.0.5"})
        helper.start()
        try:
            yield trace(lambda: pb.serving.deploy(spec, timeout=60))
        finally:
            helper.join()


def test_a_cluster_deploy_goes_down_the_layers_and_comes_back_up_once(deployed_on_the_fake_cluster):
    tracer, endpoint = deployed_on_the_fake_cluster
    assert endpoint.url == "http://10.0.0.5:60000"
    assert tracer.climbs_back_down() == 0, f"layers on top of the stack: {tracer.stack_layers}"
    assert tracer.stops[:3] == ["tke_playbook.playbook.cluster.deploy", "tke_playbook.kube.rollout.roll_out",
                                "tke_playbook.manifests.serving.build_serving_objects"], tracer.stops
    packages = [stop.split(".")[1] for stop in tracer.stops]
    assert packages.count("playbook") == 1, f"the path came back into the playbook:"
