"""Choosing files and splitting bytes: duplicate formats skipped, shards within 5% of total/N, tutorial split."""

from __future__ import annotations

import random

import pytest

from tke_playbook.errors import InvalidSpecError
from tke_playbook.podworker.planner import DownloadPlan, make_plan, select_files, split_bytes, tutorial_plan
from tke_playbook.podworker.rules import RepoFile
from tke_playbook.specs import DownloadSpec

GB = 10**9
E5 = [RepoFile("model-00001-of-00002.safetensors", int(9.9 * GB), "a" * 64),
      RepoFile("model-00002-of-00002.safetensors", int(4.5 * GB), "b" * 64),
      RepoFile("pytorch_model-00001-of-00002.bin", int(9.9 * GB), "c" * 64),
      RepoFile("pytorch_model-00002-of-00002.bin", int(5.1 * GB), "d" * 64),
      RepoFile("config.json", 600), RepoFile("tokenizer.json", 1_800_000), RepoFile("tokenizer.model", 493_000),
      RepoFile("model.safetensors.index.json", 23_000), RepoFile("README.md", 60_000)]


def _paths(files):
    return sorted(f.path for f in files)


def test_duplicate_weight_formats_are_skipped_when_safetensors_exist():
    chosen, skipped = select_files(E5)
    assert not any(p.endswith(".bin") for p in _paths(chosen))
    assert {f.path for f, _ in skipped} == {"pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin"}
    assert all("duplicate" in why for _, why in skipped)


@pytest.mark.parametrize("files, kept", [
    pytest.param([RepoFile("pytorch_model.bin", 10), RepoFile("config.json", 1)], {"pytorch_model.bin"},
                 id="bin-only-repo-keeps-bin"),
    pytest.param([RepoFile("model.safetensors", 10), RepoFile("onnx/model.onnx", 5), RepoFile("tf_model.h5", 5),
                  RepoFile("flax_model.msgpack", 5), RepoFile("model.gguf", 5), RepoFile("model.pt", 5)],
                 {"model.safetensors"}, id="every-duplicate-format"),
    pytest.param([RepoFile("model.safetensors", 10), RepoFile("onnx/model.onnx", 5),
                  RepoFile("onnx/model.onnx_data", 9), RepoFile("onnx/model_O4.onnx.data", 9),
                  RepoFile("onnx/config.json", 1)],
                 {"model.safetensors", "onnx/config.json"}, id="onnx-external-data-files"),
])
def test_weight_rule(files, kept):
    chosen, _ = select_files(files)
    assert {f.path for f in chosen if f.path != "config.json"} == kept


def test_keep_duplicates_include_and_exclude():
    assert len(select_files(E5, keep_duplicate_formats=True)[0]) == len(E5)
    chosen, skipped = select_files(E5, include=["*.json", "*.safetensors"], exclude=["*index*"])
    assert _paths(chosen) == ["config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                              "tokenizer.json"]
    assert ("model.safetensors.index.json", "matched by exclude") in {(f.path, w) for f, w in skipped}


def _check_split(files, n):
    shards = split_bytes(files, n)
    total = sum(f.size for f in files)
    assert len(shards) == n
    assert max(sum(p.size for p in s) for s in shards) <= 1.05 * total / n + 1
    for f in files:  # every byte of every file exactly once
        pieces = sorted((p.start, p.end) for s in shards for p in s if p.path == f.path)
        assert pieces[0][0] == 0 and pieces[-1][1] == f.size
        assert all(a[1] == b[0] for a, b in zip(pieces, pieces[1:]))
    return shards


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
def test_e5_split_is_balanced(n):
    _check_split(select_files(E5)[0], n)


@pytest.mark.parametrize("seed", range(6))
def test_random_listings_are_balanced(seed):
    rng = random.Random(seed)
    files = [RepoFile(f"f{i}", rng.choice([0, 1, 10, 1000, 10**6, 10**9]) + rng.randrange(1000))
             for i in range(rng.randrange(1, 30))]
    _check_split(files, rng.randrange(1, 7))


def test_small_files_are_not_cut():
    shards = _check_split(select_files(E5)[0], 3)
    small = [p for s in shards for p in s if p.path.endswith((".json", ".md", ".model"))]
    assert all(p.start == 0 for p in small) and len(small) == 5


def test_tutorial_split_loads_index_zero():
    spec = DownloadSpec(completions=3, parallelism=3)
    plan = tutorial_plan(spec, E5)
    loads = [b / GB for b in plan.bytes_per_shard]
    assert loads[0] == pytest.approx(9.9 + 9.9 + 5.1, abs=0.1) and loads[1] == pytest.approx(4.5) and loads[2] == 0
    ours = make_plan(spec, E5)
    assert max(ours.bytes_per_shard) / GB == pytest.approx(14.4 / 3, rel=0.05)
    assert ours.imbalance <= 1.05


def test_plan_round_trips_and_tabulates():
    plan = make_plan(DownloadSpec(), E5)
    again = DownloadPlan.from_json(plan.to_json())
    assert again == plan and again.plan_id == plan.plan_id
    frame = plan.to_frame()
    assert list(frame.columns) == ["shard", "path", "start", "end", "bytes", "whole"]
    assert frame.groupby("shard")["bytes"].sum().tolist() == list(plan.bytes_per_shard)
    assert plan.shard_frame()["bytes"].sum() == plan.total_bytes
    assert ("pytorch_model-00001-of-00002.bin", "duplicate weight format (safetensors present)") in plan.skipped
    assert make_plan(DownloadSpec(revision="v2"), E5).plan_id != plan.plan_id


def test_nothing_left_is_an_error():
    with pytest.raises(InvalidSpecError, match="No file of .* is left"):
        make_plan(DownloadSpec(include=("*.nothing",)), E5)
