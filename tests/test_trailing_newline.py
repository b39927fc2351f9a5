"""Validators anchored with ``$`` let a trailing newline through: in Python's ``re``, ``$`` also matches just before
a final ``\\n`` (the ``re`` module's documentation), so ``re.match(r"^[a-z]+$", "abc\\n")`` matches. Every pattern
that validates input must match the whole string (``fullmatch``); each case below is a valid value plus "\\n",
which the Kubernetes API, the hubs or the tencent cloud ids never hold (issue 21, item 3)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tke_playbook.errors import HubError, InvalidSpecError
from tke_playbook.podworker.rules import check_entry
from tke_playbook.specs.download import DownloadSpec
from tke_playbook.specs.names import validate_label, validate_name, validate_quantity, validate_subdomain
from tke_playbook.specs.serving import ServingChoices, resolve
from tke_playbook.specs.storage import StorageSpec

sys.path.insert(0, str(Path(__file__).parent / "download"))
import hostile_hub  # noqa: E402 - a hub on 127.0.0.1 whose answers the test sets

STORAGE = {"vpc_id": "vpc-a1", "subnet_id": "subnet-b2", "zone": "ap-guangzhou-3"}
CASES = [
    pytest.param(lambda v: validate_name(v, "PVC name"), "ai-model", id="dns-label"),
    pytest.param(lambda v: validate_subdomain(v, "Secret name"), "vllm-key.v1", id="dns-subdomain"),
    pytest.param(lambda v: validate_label("app", v), "vllm", id="label-value"),
    pytest.param(lambda v: validate_label(v, "x"), "app", id="label-key"),
    pytest.param(lambda v: StorageSpec(**{**STORAGE, "vpc_id": v}), "vpc-a1", id="vpc-id"),
    pytest.param(lambda v: StorageSpec(**{**STORAGE, "zone": v}), "ap-guangzhou-3", id="zone"),
    pytest.param(lambda v: resolve(ServingChoices(service_type="LoadBalancer-internal", lb_subnet_id=v)), "subnet-b2",
                 id="internal-lb-subnet"),
    pytest.param(lambda v: resolve(ServingChoices(env=((v, "1"),))), "MY_FLAG", id="env-name"),
    pytest.param(lambda v: DownloadSpec(repo_id=v), "BAAI/bge-m3", id="repo-id"),
    pytest.param(lambda v: DownloadSpec(pip_index_url=v), "https://mirrors.cloud.tencent.com/pypi/simple",
                 id="pip-index-url"),
]


@pytest.mark.parametrize("check, valid", CASES)
def test_a_valid_value_passes_and_the_same_with_a_trailing_newline_does_not(check, valid):
    check(valid)
    with pytest.raises(InvalidSpecError):
        check(valid + "\n")


def test_a_quantity_is_the_value_without_surrounding_space():
    assert validate_quantity("100Gi\n", "size") == "100Gi"  # stripped, then matched whole: the newline is gone


@pytest.mark.parametrize("field, value", [("sha256", "a" * 64), ("blob_id", "b" * 40)])
def test_a_listed_hash_with_a_trailing_newline_is_malformed(field, value):
    entry = {"path": "config.json", "size": 10, field: value}
    assert check_entry(entry, "the hub").path == "config.json"
    with pytest.raises(HubError, match="malformed"):
        check_entry({**entry, field: value + "\n"}, "the hub")


def test_a_revision_answer_with_a_trailing_newline_is_malformed(monkeypatch):
    from tke_playbook.podworker.hubapi import list_files

    with hostile_hub.HostileHub({"config.json": b"{}"}) as hub:
        files, resolved = list_files("huggingface", "BAAI/bge-m3", "main", hub.url)
        assert resolved == hostile_hub.COMMIT
        monkeypatch.setattr(hostile_hub, "COMMIT", hostile_hub.COMMIT + "\n")
        with pytest.raises(HubError, match="40-hex commit"):
            list_files("huggingface", "BAAI/bge-m3", "main", hub.url)
