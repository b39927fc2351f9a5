"""Notebook 04's /rerank request beside the tutorial's curl: a shell command whose words are vLLM's RerankRequest
(query, documents, top_n, model), with the key read into $VLLM_API_KEY and never shown; sent with curl to the
local server it gets vLLM's RerankResponse."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tke_playbook.localserver import start_server
from tke_playbook.playbook.endpoint import ServiceEndpoint
from tke_playbook.specs.catalog import OFFLINE_MODEL

DOCUMENTS = ["快速排序是一种分治算法", "Quicksort partitions around a pivot.",
             "红烧肉要用小火慢炖。"]


def words(text: str, key: str) -> list[str]:
    """The command's words as bash reads them (printed one per line instead of sent)."""
    echo = "printf '%s\\n'" + text[len("curl"):]
    return subprocess.run(["bash", "-c", echo], capture_output=True, text=True,
                          env={"VLLM_API_KEY": key}).stdout.splitlines()


def test_the_rerank_request_is_vllms_rerank_request_and_hides_the_key():
    endpoint = ServiceEndpoint("http://127.0.0.1:60000", OFFLINE_MODEL, "local-process", "s3cretKey")
    text = endpoint.rerank_curl_text("用Python实现快速排序算法", DOCUMENTS, top_n=2)
    assert "s3cretKey" not in text and text.count("\\\n") == 3
    said = words(text, "abc")
    assert "http://127.0.0.1:60000/rerank" in said and "Authorization: Bearer abc" in said
    assert json.loads(said[-1]) == {"model": OFFLINE_MODEL, "query": "用Python实现快速排序算法",
                                    "documents": DOCUMENTS, "top_n": 2}


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_sent_with_curl_the_local_server_answers_vllms_rerank_response(tmp_path):
    with start_server(api_key="curl-key-for-the-test-0123", timeout=240, log_path=tmp_path / "server.log") as server:
        endpoint = ServiceEndpoint(server.url, server.served_model_name, "local-process", "curl-key-for-the-test-0123")
        text = endpoint.rerank_curl_text("用Python实现快速排序算法", DOCUMENTS, top_n=2)
        done = subprocess.run(["bash", "-c", text], capture_output=True, text=True, timeout=120,
                              env={"VLLM_API_KEY": "curl-key-for-the-test-0123", "PATH": "/usr/bin:/bin"})
    answer = json.loads(done.stdout)
    assert set(answer) == {"id", "model", "usage", "results"}  # vLLM 0.34.0's RerankResponse
    assert len(answer["results"]) == 2 and {"index", "document", "relevance_score"} == set(answer["results"][0])
