"""Issue 21 item 9, the scorecard's public API against hostile or careless callers: a served model name cannot
move the embedding cache outside its folder, resampling memory does not grow with the resample count, and a
malformed reference log or an oversized reference ConfigMap is refused in one clear line."""

import base64
import json
import tracemalloc

import numpy as np
import pytest

from tke_playbook.errors import InvalidSpecError, PlaybookError
from tke_playbook.scorecard import (CachedEmbedder, EmbeddingCache, ReferenceJobSpec, bootstrap_ci,
                                    build_reference_configmap, paired_test, parse_reference_log)
from tke_playbook.scorecard.cache import safe_slug
from tke_playbook.scorecard.reference_job import MARKER
from tke_playbook.scorecard.stats import BATCH_ELEMENTS, MAX_RESAMPLES

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
HOSTILE = ["..", ".", "/", "a/../../b", "../../etc/passwd", "x\0y", "\0", "", " ", "a" * 5000, "中文/模型",
           "C:\\windows", "\ud800lone-surrogate"]


class Served:
    """An endpoint's client as the cache sees it: known by its served model name (issue 21: ``..``)."""

    base_url = "http://127.0.0.1:1"

    def __init__(self, name: str):
        self.name = name

    def embed_documents(self, texts):
        return np.ones((len(texts), 3), dtype=np.float32)

    def embed_queries(self, texts, task=None):
        return np.ones((len(texts), 3), dtype=np.float32)


def _files(folder):
    return sorted(p for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("name", HOSTILE, ids=lambda n: repr(n)[:20])
def test_a_served_model_name_cannot_move_the_cache_outside_its_folder(tmp_path, name):
    cache_dir = tmp_path / "box" / "cache"
    embedder = CachedEmbedder(Served(name), name, cache_dir=cache_dir, revision=name, progress=False)
    embedder.embed_documents(["one", "two"])
    written = _files(tmp_path)
    assert written and all(p.is_relative_to(cache_dir) for p in written), written
    assert all(len(part.encode()) <= 255 for p in written for part in p.parts)  # a name any filesystem takes
    assert len(CachedEmbedder(Served(name), name, cache_dir=cache_dir, revision=name).cache) == 2  # read back


def test_names_that_clean_up_alike_never_share_a_cache_file(tmp_path):
    paths = {EmbeddingCache(tmp_path, model, "r", "d").path
             for model in ("a/b", "a_b", "a b", "a" * 200 + "1", "a" * 200 + "2", "..", "_")}
    assert len(paths) == 7
    assert all(not part.startswith(".") for p in paths for part in p.relative_to(tmp_path).parts)


def test_slugs_stay_readable_for_ordinary_names():
    assert safe_slug(MINILM).startswith("sentence-transformers_all-MiniLM-L6-v2-")


def _peak(call) -> int:
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_resampling_memory_does_not_grow_with_the_count():
    """Today's code holds the whole (resamples x queries) index matrix: 100,000 x 200 draws are 160 MB of indices
    and as much of gathered scores. In blocks, memory is one block plus one 8-byte mean per resample."""
    values, count = np.linspace(0, 1, 200), 100_000
    means = count * 8
    default = means + 4 * BATCH_ELEMENTS * 8 + 2 * 2**20  # a few block-sized arrays, slack
    assert _peak(lambda: bootstrap_ci(values, n_boot=count)) < default
    assert _peak(lambda: paired_test(values, values[::-1], n_resamples=count)) < default
    small = means + 4 * 500 * len(values) * 8 + 2 * 2**20
    assert _peak(lambda: bootstrap_ci(values, n_boot=count, batch=500)) < small
    assert _peak(lambda: paired_test(values, values[::-1], n_resamples=count, batch=500)) < small


def test_the_default_blocks_give_the_same_answer_as_small_ones():
    values = np.random.default_rng(1).uniform(0, 1, 30)
    big, small = bootstrap_ci(values, n_boot=3000, seed=4), bootstrap_ci(values, n_boot=3000, seed=4, batch=7)
    assert big[0] == small[0] and abs(big[1] - small[1]) < 0.03 and abs(big[2] - small[2]) < 0.03


@pytest.mark.parametrize("call", [
    pytest.param(lambda: bootstrap_ci([0.1, 0.5, 0.9], n_boot=10**7), id="bootstrap-1e7"),
    pytest.param(lambda: paired_test([0.1, 0.5, 0.9], [0.2, 0.4, 0.9], n_resamples=10**8), id="paired-1e8"),
])
def test_absurd_resample_counts_are_refused_in_one_line(call):
    with pytest.raises(InvalidSpecError, match=f"at most {MAX_RESAMPLES:,} resamples") as info:
        call()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("kwargs, message", [
    pytest.param({"batch": 0}, "batch=0", id="batch-0"),
    pytest.param({"confidence": "0.95"}, "confidence=", id="confidence-text"),
    pytest.param({"seed": -1}, "seed=-1", id="seed-negative"),
    pytest.param({"n_boot": 2.5e3}, "n_boot=", id="n_boot-float"),
])
def test_bad_bootstrap_options_are_refused(kwargs, message):
    with pytest.raises(InvalidSpecError, match=message):
        bootstrap_ci([0.1, 0.5, 0.9], **kwargs)


def test_an_unknown_paired_method_is_refused():
    with pytest.raises(InvalidSpecError, match="method='t-test'"):
        paired_test([0.1, 0.5], [0.2, 0.4], method="t-test")


def _line(item) -> str:
    return MARKER + (item if isinstance(item, str) else json.dumps(item))


GOOD_VECTOR = base64.b64encode(np.ones(4, dtype="<f4").tobytes()).decode()
END = _line({"kind": "max_tokens", "value": 256})


@pytest.mark.parametrize("bad, why", [
    pytest.param(_line("{not json"), "not JSON", id="not-json"),
    pytest.param(_line([1, 2, 3]), "not an object", id="a-list"),
    pytest.param(_line({"kind": "reference", "text": "x"}), "'text' and 'vector'", id="no-vector"),
    pytest.param(_line({"kind": "reference", "text": "x", "vector": "%%%not base64"}), "not base64", id="not-base64"),
    pytest.param(_line({"kind": "reference", "text": "x", "vector": "AAA="}), "not whole float32", id="odd-bytes"),
    pytest.param(_line({"kind": "max_tokens", "value": "lots"}), "max_tokens value", id="max-tokens-text"),
    pytest.param(_line({"kind": "max_tokens"}), "max_tokens value", id="max-tokens-missing"),
    pytest.param(_line({"kind": "pooled-by-magic", "text": "x", "vector": GOOD_VECTOR}), "kind", id="unknown-kind"),
    pytest.param(_line("[" * 100_000), "JSON", id="deep-nesting"),
])
def test_a_malformed_reference_log_line_is_one_clear_error(bad, why):
    log = "\n".join(["starting", _line({"kind": "reference", "text": "ok", "vector": GOOD_VECTOR}), bad, END])
    with pytest.raises(InvalidSpecError, match=why) as info:
        parse_reference_log(log, MINILM)
    message = str(info.value)
    assert "line 3" in message and "rerun the Job" in message and "\n" not in message


def test_a_good_log_still_parses_and_a_log_without_its_end_says_so():
    vector = _line({"kind": "reference", "text": "ok", "vector": GOOD_VECTOR})
    reference = parse_reference_log("\n".join(["pip noise", vector, END]), MINILM)
    assert reference.max_tokens == 256 and reference.encode(["ok"]).shape == (1, 4)
    with pytest.raises(PlaybookError, match="has no result"):
        parse_reference_log(vector, MINILM)
    with pytest.raises(InvalidSpecError, match="must be text"):
        parse_reference_log(b"bytes", MINILM)


def test_a_reference_configmap_above_the_api_limit_is_refused():
    """The Kubernetes API refuses ConfigMaps whose data exceeds 1 MiB (issue 21: a 1.9 MiB one was rendered)."""
    spec = ReferenceJobSpec(MINILM)
    with pytest.raises(InvalidSpecError, match="above the 1 MiB the Kubernetes API allows"):
        build_reference_configmap(spec, ["x" * 2000 + str(i) for i in range(500)])
    small = build_reference_configmap(spec, ["one probe", "two probes"])
    assert sum(len(v.encode()) for v in small["data"].values()) < 1 << 20
