"""The toolkit's vLLM command lines against vLLM 0.33.0's and 0.34.0's own `vllm serve` argument parsers.

tests/data/vllm_serve_parsers.json is what tools/check_vllm_parsers.py recorded from each release's wheel (its
parser built by `make_arg_parser`, the line parsed and `validate_parsed_serve_args` run): the options the release
knows, its PoolerConfig keys, and for every plan variant the line rendered then and the parser's verdict. The tests
here render every variant again and hold it to that record; where the throwaway environment of a release exists
(``python tools/check_vllm_parsers.py setup``), the real parser parses today's lines again. The values the new
variants must carry are vLLM's documented ones, written out by hand: the Qwen3-Reranker overrides (vLLM's
qwen3_reranker example), bge-m3's BgeM3EmbeddingModel and pooler tasks (vLLM's pooling docs, "BAAI/bge-m3"), the
Matryoshka override (vLLM's pooling docs, "Matryoshka Embeddings")."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from tke_playbook.cli.commands import main
from tke_playbook.specs.vllm_flags import FLAG_TABLE, NEWEST_CHECKED, parse_vllm_version

ROOT = Path(__file__).resolve().parents[1]
RECORD = json.loads((ROOT / "tests" / "data" / "vllm_serve_parsers.json").read_text(encoding="utf-8"))
TOOL = ROOT / "tools" / "check_vllm_parsers.py"
VENVS = Path(os.environ.get("TKE_VLLM_PARSER_VENVS", "/tmp/vllm-parser"))
RELEASES = ("0.33.0", "0.34.0")
QWEN3_RERANKER = {"architectures": ["Qwen3ForSequenceClassification"], "classifier_from_token": ["no", "yes"],
                  "is_original_qwen3_reranker": True}
BGE_M3 = {"architectures": ["BgeM3EmbeddingModel"]}
# variant → what vLLM's documentation says its line must carry (dest → parsed value)
DOCUMENTED = {
    "reranker-qwen3-0.6b": {"runner": "pooling", "hf_overrides": QWEN3_RERANKER},
    "reranker-bge-v2-m3": {},
    "bge-m3-sparse": {"runner": "pooling", "hf_overrides": BGE_M3, "pooler_config": {"task": "token_classify"}},
    "bge-m3-multi-vector": {"runner": "pooling", "hf_overrides": BGE_M3, "pooler_config": {"task": "token_embed"}},
    "matryoshka-qwen3-0.6b": {"runner": "pooling", "hf_overrides": {"is_matryoshka": True}},
    "matryoshka-qwen3-4b": {"runner": "pooling", "hf_overrides": {"is_matryoshka": True}},
    "matryoshka-qwen3-8b": {"runner": "pooling", "hf_overrides": {"is_matryoshka": True}},
}
VARIANTS = [(release, vid) for release in RELEASES for vid in sorted(RECORD["releases"][release]["variants"])]


def _render(release: str, render_args) -> list[str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["render", "--profile", "seed", "--show-secrets", "--vllm-version", release, *render_args])
    assert code == 0, err.getvalue()
    docs = [d for d in yaml.safe_load_all(out.getvalue()) if d and d["kind"] in ("Deployment", "LeaderWorkerSet")]
    pods = [d["spec"]["template"]["spec"] if d["kind"] == "Deployment" else
            d["spec"]["leaderWorkerTemplate"]["leaderTemplate"]["spec"] for d in docs]
    script = next(c["command"][2] for pod in pods for c in pod["containers"]
                  if "vllm serve" in " ".join(c.get("command") or ()))
    return shlex.split(script.rsplit("; ", 1)[-1])  # the leader's line follows its Ray start


def test_the_record_says_where_it_comes_from():
    for release in RELEASES:
        provenance = RECORD["releases"][release]["provenance"]
        assert provenance["vllm"] == release
        assert provenance["wheel"].startswith(f"vllm-{release}-") and len(provenance["wheel_sha256"]) == 64
        assert "make_arg_parser" in provenance["parser"] and provenance["checked_on"]


def test_every_new_plan_variant_was_checked_on_both_releases():
    for release in RELEASES:
        assert set(DOCUMENTED) <= set(RECORD["releases"][release]["variants"])


def test_the_recorder_is_not_vacuous():
    """facts.md section 3: 0.33.0 rejects --task and --cuda-graph-sizes, accepts --disable-log-requests again, and
    its PoolerConfig has no `normalize` - the recorded option list must say the same."""
    options = set(RECORD["releases"]["0.33.0"]["options"])
    assert {"--task", "--cuda-graph-sizes", "--override-pooler-config"}.isdisjoint(options)
    assert {"--runner", "--convert", "--pooler-config", "--disable-log-requests", "--cudagraph-capture-sizes",
            "--hf-overrides"} <= options
    assert "normalize" not in RECORD["releases"]["0.33.0"]["pooler_config_keys"]


@pytest.mark.parametrize("release", RELEASES)
def test_the_flag_table_agrees_with_the_recorded_parser(release):
    options, version = set(RECORD["releases"][release]["options"]), parse_vllm_version(release)
    wrong = [rule.flag for rule in FLAG_TABLE if rule.accepts(version) != (rule.flag in options)]
    assert not wrong, f"FLAG_TABLE disagrees with vLLM {release}'s own parser on {wrong}"


def test_the_table_reaches_the_newest_checked_release():
    assert NEWEST_CHECKED == parse_vllm_version(max(RELEASES, key=parse_vllm_version))


def _flag_values(argv: list[str]) -> dict[str, list[str]]:
    groups, current = {}, None
    for token in argv[3:]:
        if token.startswith("-") and not token.lstrip("-").replace(".", "").isdigit():
            current = groups.setdefault(token, [])
        elif current is not None:
            current.append(token)
    return groups


@pytest.mark.parametrize("release, vid", VARIANTS)
def test_each_rendered_line_is_one_the_release_accepted(release, vid):
    recorded = RECORD["releases"][release]
    entry = recorded["variants"][vid]
    assert entry["accepted"], f"vLLM {release} rejected the {vid} line: {entry['error']}"
    argv = _render(release, entry["render_args"])
    flags = _flag_values(argv)
    assert set(flags) <= set(recorded["options"]), set(flags) - set(recorded["options"])
    for flag in ("--pooler-config", "--override-pooler-config"):
        for value in flags.get(flag, ()):
            assert set(json.loads(value)) <= set(recorded["pooler_config_keys"])
    assert flags == _flag_values(entry["argv"]), (
        f"the {vid} line changed since vLLM {release}'s parser checked it: run "
        f"`python tools/check_vllm_parsers.py check` (after `setup`) and commit the new record")


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize("vid", sorted(DOCUMENTED))
def test_new_variants_carry_what_vllm_documents(release, vid):
    entry = RECORD["releases"][release]["variants"][vid]
    parsed = entry["parsed"]
    for dest, value in DOCUMENTED[vid].items():
        assert parsed.get(dest) == value, (dest, parsed.get(dest))
    if not DOCUMENTED[vid]:  # served as it is: no conversion, no overrides
        assert "hf_overrides" not in parsed and "convert" not in parsed


@pytest.mark.parametrize("release", RELEASES)
def test_the_real_parser_accepts_every_line_rendered_today(release):
    python = VENVS / release / "bin" / "python"
    if not python.exists():
        pytest.skip(f"no throwaway vLLM {release} environment at {python.parent.parent} (build it with "
                    f"`python tools/check_vllm_parsers.py setup {release}`)")
    variants = RECORD["releases"][release]["variants"]
    lines = [_render(release, variants[vid]["render_args"]) for vid in sorted(variants)]
    control = ["vllm", "serve", "/data/model", "--task", "embed"]  # facts.md section 3: removed in 0.13.0
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "VLLM_TARGET_DEVICE": "cpu"}
    done = subprocess.run([str(python), str(TOOL), "probe"], input=json.dumps({"lines": [*lines, control]}),
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    answer = json.loads(done.stdout)
    assert answer["vllm"] == release
    *results, refused = answer["results"]
    assert not refused["accepted"], "the parser accepted --task embed: the probe checks nothing"
    rejected = {vid: r["error"] for vid, r in zip(sorted(variants), results) if not r["accepted"]}
    assert not rejected
