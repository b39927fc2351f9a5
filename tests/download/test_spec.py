"""DownloadSpec: defaults, derived names and validation messages that say what to do."""

from __future__ import annotations

import pytest

from tke_playbook.errors import InvalidSpecError, UnknownNameError
from tke_playbook.specs import DownloadSpec, Source
from tke_playbook.specs.catalog import get_model


def test_defaults_follow_the_tutorial():
    spec = DownloadSpec()
    assert spec.model == "intfloat/e5-mistral-7b-instruct"
    assert spec.source is Source.MODELSCOPE and spec.revision == "master"
    assert (spec.completions, spec.parallelism, spec.pvc) == (3, 3, "ai-model")
    assert spec.job_name == "download-e5-mistral-7b-instruct"
    assert spec.configmap_name == "download-e5-mistral-7b-instruct-worker"
    assert spec.model_path == "intfloat/e5-mistral-7b-instruct"


@pytest.mark.parametrize("source, revision, repo", [
    pytest.param("huggingface", "main", "BAAI/bge-large-en-v1.5", id="hf-main-hf-id"),
    pytest.param("modelscope", "master", "AI-ModelScope/bge-large-en-v1.5", id="ms-master-ms-id"),
    pytest.param("hf", "main", "BAAI/bge-large-en-v1.5", id="alias-hf"),
])
def test_revision_and_repo_follow_the_hub(source, revision, repo):
    spec = DownloadSpec(model="bge-large-en-v1.5", source=source)
    assert (spec.revision, spec.repo_id, spec.model_path) == (revision, repo, "BAAI/bge-large-en-v1.5")


def test_model_info_is_accepted_and_stored_as_hf_id():
    assert DownloadSpec(model=get_model("bge-m3")).model == "BAAI/bge-m3"


def test_replace_rederives_hub_defaults():
    spec = DownloadSpec(model="bge-small-en-v1.5").replace(source="huggingface")
    assert (spec.revision, spec.repo_id) == ("main", "BAAI/bge-small-en-v1.5")


def test_node_selector_dict_is_stored_as_pairs():
    spec = DownloadSpec(node_selector={"node.kubernetes.io/instance-type": "SA5.LARGE8"})
    assert spec.node_selector_dict == {"node.kubernetes.io/instance-type": "SA5.LARGE8"}
    hash(spec)


@pytest.mark.parametrize("changes, words", [
    pytest.param({"pvc": "AI_Model"}, "PVC name 'AI_Model' is not a valid Kubernetes name", id="pvc-name-uppercase"),
    pytest.param({"parallelism": 4}, "parallelism 4 is above completions 3", id="parallelism-above-completions"),
    pytest.param({"parallelism": 0}, "from 1 to 64", id="parallelism-zero"),
    pytest.param({"completions": True}, "whole number", id="completions-bool"),
    pytest.param({"node_selector": {"bad key!": "x"}}, "node selector key 'bad key!' is not valid", id="selector-bad-key"),
    pytest.param({"node_selector": {"zone": "a b"}}, "node selector value 'a b' for 'zone' is not valid", id="selector-bad-value"),
    pytest.param({"node_selector": ["x"]}, "must map label keys", id="selector-not-mapping"),
    pytest.param({"endpoint": "hf-mirror.com"}, "must be a URL", id="endpoint-no-scheme"),
    pytest.param({"include": [""]}, "glob patterns", id="include-empty-pattern"),
    pytest.param({"repo_id": "no-owner"}, "'owner/name'", id="repo-id-without-owner"),
    pytest.param({"token_secret": "Hub_Token"}, "token Secret name", id="token-secret-bad-name"),
    pytest.param({"image": "python 3.11"}, "not an image reference", id="image-with-space"),
    pytest.param({"completions": 10**12, "parallelism": 1}, "at most 64", id="completions-absurd"),
    pytest.param({"run_as_user": -1}, "must be a uid", id="run-as-user-negative"),
    pytest.param({"allow_unverified": "yes"}, "True or False", id="allow-unverified-string"),
    pytest.param({"revision": "main branch"}, "branch, tag or commit", id="revision-with-space"),
])
def test_invalid_specs_say_what_to_do(changes, words):
    with pytest.raises(InvalidSpecError, match=words.replace("(", r"\(")):
        DownloadSpec(**changes)


def test_unknown_model_and_hub_suggest():
    with pytest.raises(UnknownNameError, match="Did you mean 'BAAI/bge-m3'"):
        DownloadSpec(model="bge-m4")
    with pytest.raises(UnknownNameError, match="modelscope"):
        DownloadSpec(source="modelscop")


@pytest.mark.parametrize("url", [pytest.param("mirrors.cloud.tencent.com/pypi/simple", id="no-scheme"),
                                 pytest.param("https://mirror/simple $(id)", id="shell-characters")])
def test_pip_index_url_must_be_a_plain_url(url):
    with pytest.raises(InvalidSpecError, match="pip_index_url .* must be a URL without spaces or quotes"):
        DownloadSpec(pip_index_url=url)
    assert DownloadSpec(pip_index_url="https://mirrors.cloud.tencent.com/pypi/simple").pip_index_url


def test_mode_and_catalog_revision():
    from tke_playbook.specs import DownloadMode

    assert DownloadSpec(mode="adopt").mode is DownloadMode.ADOPT
    with pytest.raises(UnknownNameError, match="download mode"):
        DownloadSpec(mode="adoptt")
    assert get_model("bge-m3").revision == "main"
    assert DownloadSpec(model="bge-m3", source="huggingface").revision == get_model("bge-m3").revision
