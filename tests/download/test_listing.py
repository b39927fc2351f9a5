"""Listing through the real hub SDKs against the local mirror: sizes, hashes, pagination, errors, tokens."""

from __future__ import annotations

import pytest
from fakes.hub import FakeHub
from hubfiles import REPO, SMALL_REPO, make_repo, sha256

from tke_playbook.download.listing import list_repo_files, plan_download
from tke_playbook.errors import HubError
from tke_playbook.specs import DownloadSpec


@pytest.mark.parametrize("source", ["huggingface", "modelscope"])
def test_listing_gives_every_file_with_size(hub, repo_dir, source):
    files = list_repo_files(source, REPO, endpoint=hub.url)
    assert {f.path: f.size for f in files} == SMALL_REPO
    weights = next(f for f in files if f.path == "model.safetensors")
    assert weights.sha256 == sha256(repo_dir / "model.safetensors")


def test_huggingface_small_files_have_git_blob_ids_not_sha256(hub):
    config = next(f for f in list_repo_files("huggingface", REPO, endpoint=hub.url) if f.path == "config.json")
    assert config.sha256 is None and len(config.blob_id) == 40


def test_huggingface_pagination_is_followed(repo_dir):
    with FakeHub({REPO: repo_dir}, page_size=2) as hub:
        assert len(list_repo_files("huggingface", REPO, endpoint=hub.url)) == len(SMALL_REPO)
        assert sum("/tree/" in path for _, path, _ in hub.log) > 2


def test_endpoint_comes_from_the_environment(hub, monkeypatch):
    monkeypatch.setenv("MODELSCOPE_ENDPOINT", hub.url)
    assert len(list_repo_files("modelscope", REPO)) == len(SMALL_REPO)


@pytest.mark.parametrize("source, repo, revision", [
    pytest.param("huggingface", "BAAI/missing", None, id="hf-unknown-repo"),
    pytest.param("modelscope", "BAAI/missing", None, id="ms-unknown-repo"),
    pytest.param("modelscope", REPO, "v9", id="ms-unknown-revision"),
    pytest.param("huggingface", REPO, "v9", id="hf-unknown-revision"),
])
def test_hub_errors_name_repo_and_revision(hub, source, repo, revision):
    with pytest.raises(HubError, match=f"HTTP 404.*'{repo}' and revision"):
        list_repo_files(source, repo, revision, endpoint=hub.url)


def test_unreachable_hub_is_a_hub_error():
    with pytest.raises(HubError, match="Cannot reach"):
        list_repo_files("modelscope", REPO, endpoint="http://127.0.0.1:9")


@pytest.mark.parametrize("source, env", [("huggingface", "HF_TOKEN"), ("modelscope", "MODELSCOPE_API_TOKEN")])
def test_private_repo_needs_the_token_from_the_environment(repo_dir, monkeypatch, source, env):
    with FakeHub({REPO: repo_dir}, token="s3cret-token") as hub:
        monkeypatch.delenv(env, raising=False)
        with pytest.raises(HubError, match="401.*need.*token") as info:
            list_repo_files(source, REPO, endpoint=hub.url)
        monkeypatch.setenv(env, "s3cret-token")
        assert len(list_repo_files(source, REPO, endpoint=hub.url)) == len(SMALL_REPO)
    assert "s3cret" not in str(info.value)


def test_plan_download_lists_and_splits(hub, tmp_path):
    spec = DownloadSpec(model=REPO, source="huggingface", endpoint=hub.url)
    plan = plan_download(spec)
    assert plan.endpoint == hub.url and len(plan.shards) == 3
    assert "pytorch_model.bin" in dict(plan.skipped)
    assert plan_download(spec, strategy="tutorial").strategy == "tutorial"


def test_nested_repo_folders(tmp_path):
    folder = make_repo(tmp_path / "r", {"a/b/c.safetensors": 10, "a/d.json": 3})
    with FakeHub({REPO: folder}) as hub:
        for source in ("huggingface", "modelscope"):
            assert [f.path for f in list_repo_files(source, REPO, endpoint=hub.url)] == ["a/b/c.safetensors",
                                                                                          "a/d.json"]


def test_hf_offline_mode_does_not_block_a_mirror_on_this_machine(hub, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert len(list_repo_files("huggingface", REPO, endpoint=hub.url)) == len(SMALL_REPO)
    with pytest.raises(HubError, match="HF_HUB_OFFLINE=1 is set"):
        list_repo_files("huggingface", REPO, endpoint="https://huggingface.co")


def test_plan_pins_the_commit_the_branch_resolved_to(hub):
    plan = plan_download(DownloadSpec(model=REPO, source="huggingface", endpoint=hub.url))
    assert plan.requested_revision == "main"
    assert plan.revision == hub.repos[REPO].commit and len(plan.revision) == 40


def test_a_next_page_link_to_another_host_does_not_take_the_token_there(repo_dir, monkeypatch):
    """A mirror passing the upstream hub's Link header through still pages, on its own host."""
    from tke_playbook.podworker import hubapi

    class Leaky(FakeHub):  # its Link headers name another host
        link_host = "http://evil.example"

    seen, real = [], hubapi.open_url
    monkeypatch.setattr(hubapi, "open_url", lambda url, headers, timeout: seen.append(url) or real(
        url, headers, timeout))
    with Leaky({REPO: repo_dir}, page_size=2) as hub:
        own = hub.url
        monkeypatch.setattr(Leaky, "url", property(lambda self: self.link_host))
        files, _ = hubapi.list_files("huggingface", REPO, "main", own, token="t0ken")
    assert len(files) == len(SMALL_REPO) and len(seen) > 2
    assert all(u.startswith(own) for u in seen)
