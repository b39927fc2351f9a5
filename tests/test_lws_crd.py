"""LeaderWorkerSets against the LWS v0.10.0 CRD's own openAPIV3Schema, strictly (unknown fields rejected).

The schema is read from ``../shared/reference/upstream/lws-leaderworkerset-crd-v0.10.0.yaml``; without it these
tests skip (``k8s_valid`` then still checks the embedded pod templates against Kubernetes' schemas)."""

from __future__ import annotations

import copy
import re

import pytest

from tke_playbook.manifests.serving import build_leader_worker_set
from tke_playbook.specs.serving import ServingChoices, resolve, seed_profile

SPECS = [
    pytest.param(resolve(ServingChoices(lws_group_size=2, tp_size=2)), id="two-nodes"),
    pytest.param(seed_profile().replace(lws_group_size=2, tp_size=2), id="seed-two-nodes-public-lb-proxy"),
    pytest.param(resolve(ServingChoices(lws_group_size=4, tp_size=2, pp_size=2, node_instance_types=("PNV5b.8XLARGE96",),
                             pod_annotations={"a": "b"}, replicas=2)), id="four-nodes-pinned"),
]


def _errors(validator, manifest):
    return [e.message for e in validator.iter_errors(manifest)]


@pytest.mark.parametrize("spec", SPECS)
def test_our_leader_worker_sets_fit_the_crd(spec, k8s_valid, lws_crd):
    lws = build_leader_worker_set(spec)
    assert _errors(lws_crd, lws) == []
    k8s_valid(lws)


@pytest.mark.parametrize("path, value, message", [
    pytest.param(("spec", "leaderWorkerTemplate", "sizee"), 2, "sizee", id="typo-in-template"),
    pytest.param(("spec", "leaderWorkerTemplate", "workerTemplate", "spec", "containers", 0, "envv"), [], "envv",
                 id="typo-in-worker-container"),
    pytest.param(("spec", "leaderWorkerTemplate", "restartPolicy"), "Always", "Always", id="bad-enum"),
    pytest.param(("spec", "replicas"), "two", "'two' is not of type", id="bad-type"),
])
def test_the_strict_crd_check_catches_mistakes(path, value, message, k8s_valid, lws_crd):
    lws = copy.deepcopy(build_leader_worker_set(resolve(ServingChoices(lws_group_size=2, tp_size=2))))
    target = lws
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert any(message in e for e in _errors(lws_crd, lws))
    with pytest.raises(pytest.fail.Exception, match=re.escape(message)):
        k8s_valid(lws)
