"""The vLLM command line per version: the tutorial's line, embed mode, renamed and removed flags.

Expected acceptance comes from facts.md section 3 (each release's own `vllm serve` parser), written out here by
hand - never from the toolkit's FLAG_TABLE."""

from __future__ import annotations

import shlex

import pytest

from tke_playbook.errors import InvalidSpecError
from tke_playbook.specs.serving import ServingChoices, resolve, seed_profile
from tke_playbook.specs.vllm_args import build_command, build_leader_command, build_vllm_args, build_worker_command
from tke_playbook.specs.vllm_flags import FLAG_TABLE, RULES, accepts, check_pooler_json, split_flags

# The chart's command for the tutorial's values (helm-charts/vllm-inference-tke/templates/server.yaml).
# The toolkit adds --gpu-memory-utilization (the fit check's fraction: vLLM's default moved to 0.92 in 0.20).
TUTORIAL_COMMAND = ("vllm serve /data/model --served-model-name intfloat/e5-mistral-7b-instruct -tp 1 -pp 1 "
                    "--max-model-len 2048 --max-num-seqs 32 --gpu-memory-utilization 0.9 --disable-log-requests "
                    "--cuda-graph-sizes 1 2 4 8 16 24 32 --host 0.0.0.0 --port 60000")
POOLER = '--override-pooler-config \'{"pooling_type":"MEAN","normalize":false}\''
QWEN = "Qwen/Qwen3-Embedding-0.6B"


def test_seed_reproduces_the_tutorials_command_line():
    assert build_command(seed_profile()) == ["bash", "-c", TUTORIAL_COMMAND]
    assert shlex.split(build_command(seed_profile())[2]) == build_vllm_args(seed_profile())


def _args(version: str, **changes) -> list[str]:
    spec = seed_profile().replace(vllm_version=version, extra_args=seed_profile().extra_args + (POOLER,), **changes)
    return build_vllm_args(spec)


def _flags(argv: list[str]) -> list[str]:
    return [t for t in argv if t.startswith("-")]


def test_vllm_0_9_accepts_the_old_flags():
    argv = _args("0.9.2", model=QWEN, max_model_len=8192)
    assert _flags(argv) == ["--served-model-name", "-tp", "-pp", "--max-model-len", "--max-num-seqs", "--task",
                            "--gpu-memory-utilization", "--disable-log-requests", "--cuda-graph-sizes",
                            "--override-pooler-config", "--host", "--port"]
    assert argv[argv.index("--task") + 1] == "embed"


def test_vllm_0_10_1_uses_the_runner_and_keeps_deprecated_flags():
    argv = _args("0.10.1", model=QWEN, max_model_len=8192)
    assert argv[argv.index("--runner") + 1] == "pooling" and "--task" not in argv
    assert "--disable-log-requests" in argv and "--override-pooler-config" in argv
    i = argv.index("--cuda-graph-sizes")
    assert argv[i + 1:i + 8] == ["1", "2", "4", "8", "16", "24", "32"]


@pytest.mark.parametrize("version, keeps_disable, pooler", [
    ("0.12.0", True, '{"pooling_type":"MEAN","normalize":false}'),
    ("0.13.0", True, '{"pooling_type":"MEAN","normalize":false}'),
    ("0.16.0", True, '{"pooling_type":"MEAN","use_activation":false}'),
    ("0.17.0", False, '{"pooling_type":"MEAN","use_activation":false}'),
    ("0.20.0", False, '{"pooling_type":"MEAN","use_activation":false}'),
    ("0.33.0", True, '{"pooling_type":"MEAN","use_activation":false}')])
def test_vllm_0_12_and_later_drop_and_rename(version, keeps_disable, pooler):
    argv, notes = build_vllm_args(seed_profile().replace(
        vllm_version=version, model=QWEN, max_model_len=8192,
        extra_args=seed_profile().extra_args + (POOLER,)), with_notes=True)
    assert ("--disable-log-requests" in argv) is keeps_disable and "--cuda-graph-sizes" not in argv
    assert "--override-pooler-config" not in argv and "--task" not in argv
    i = argv.index("--cudagraph-capture-sizes")
    assert argv[i + 1:i + 8] == ["1", "2", "4", "8", "16", "24", "32"]
    assert argv[argv.index("--pooler-config") + 1] == pooler
    assert argv[argv.index("--runner") + 1] == "pooling"
    assert any(n.startswith("dropped --disable-log-requests") for n in notes) is not keeps_disable
    assert any("→ --cudagraph-capture-sizes" in n for n in notes)


def test_task_embed_in_extra_args_becomes_the_runner_once_task_is_removed():
    argv = build_vllm_args(resolve(ServingChoices(vllm_version="0.13.0", extra_args=("--task embed",))))
    assert argv[argv.index("--runner") + 1] == "pooling" and "--task" not in argv


def test_new_flags_are_translated_back_for_old_versions():
    spec = resolve(ServingChoices(vllm_version="0.10.1", extra_args=("--cudagraph-capture-sizes 1 2 4",
                                                          "--pooler-config '{\"normalize\":true}'")))
    argv = build_vllm_args(spec)
    assert "--cuda-graph-sizes" in argv and "--override-pooler-config" in argv


@pytest.mark.parametrize("version, flag, message", [
    pytest.param("0.10.1", "--max-cudagraph-capture-size 64", r"--max-cudagraph-capture-size is not accepted by "
                 r"vLLM 0.10.1 \(added in 0.11.1\)", id="too-new-for-0.10"),
    pytest.param("0.9.2", "--enable-log-requests", r"--enable-log-requests is not accepted by vLLM 0.9.2 \(added "
                 r"in 0.10.1\)", id="enable-log-requests-on-0.9.2"),
    pytest.param("0.10.1", "--max-cudagraph-capture-size 64", r"added in 0.11.1", id="capture-size-on-0.10.1"),
    pytest.param("0.13.0", "--task generate", r"--task is not accepted by vLLM 0.13.0 \(removed in 0.13.0\)",
                 id="task-removed"),
])
def test_flags_a_version_cannot_take_are_refused(version, flag, message):
    with pytest.raises(InvalidSpecError, match=message):
        build_vllm_args(resolve(ServingChoices(vllm_version=version, extra_args=(flag,))))


@pytest.mark.parametrize("flag", ["--port 8000", "--max-model-len=4096", "--api-key secret", "-tp 2",
                                  "--gpu-memory-utilization 0.95"])
def test_extra_args_cannot_override_spec_fields(flag):
    with pytest.raises(InvalidSpecError, match="which the spec already controls"):
        build_vllm_args(resolve(ServingChoices(extra_args=(flag,))))


def test_a_value_without_flag_is_refused():
    with pytest.raises(InvalidSpecError, match="is a value without a flag"):
        split_flags(["4096"])


def test_encoder_models_set_the_batched_token_budget():
    argv = build_vllm_args(resolve(ServingChoices(model="BAAI/bge-m3", max_model_len=8192, extra_args=())))
    assert argv[argv.index("--max-num-batched-tokens") + 1] == "16384"
    assert "--runner" not in argv  # XLMRobertaModel is a pooling model vLLM recognises


def test_embedding_flag_can_be_forced():
    argv = build_vllm_args(seed_profile().replace(embedding_flag=True))
    assert argv[argv.index("--runner") + 1] == "pooling"
    assert "--task" in build_vllm_args(seed_profile().replace(embedding_flag=True, vllm_version="0.9.0"))


def test_spec_fields_reach_the_command_line():
    spec = resolve(ServingChoices(gpu_count=2, tp_size=2, max_model_len=4096, max_batch_size=64, ep_enabled=True,
                       gpu_memory_utilization=0.85, served_model_name="e5", extra_args=()))
    argv = build_vllm_args(spec)
    assert argv[:13] == ["vllm", "serve", "/data/model", "--served-model-name", "e5", "-tp", "2", "-pp", "1",
                         "--max-model-len", "4096", "--max-num-seqs", "64"]
    assert argv[13] == "--enable-expert-parallel"  # where the chart puts it
    assert argv[argv.index("--gpu-memory-utilization") + 1] == "0.85"
    assert argv[-4:] == ["--host", "0.0.0.0", "--port", "60000"]


def test_shell_line_quotes_json():
    line = build_command(resolve(ServingChoices(vllm_version="0.12.0", extra_args=(POOLER,))))[2]
    assert shlex.split(line)[-5] == '{"pooling_type":"MEAN","normalize":false}'


def test_multi_node_commands():
    spec = resolve(ServingChoices(lws_group_size=2, tp_size=2))
    leader, worker = build_leader_command(spec)[2], build_worker_command(spec)[2]
    assert "multi-node-serving.sh leader --ray_cluster_size=$(LWS_GROUP_SIZE)" in leader
    assert "--distributed-executor-backend ray" in leader and leader.endswith("--port 60000")
    assert "worker --ray_address=$(LWS_LEADER_ADDRESS)" in worker


# facts.md section 3, flag by flag, at the releases whose parsers were run. True = the parser accepts the flag.
FACTS = {
    "--task": {"0.9.2": True, "0.10.1": True, "0.11.2": True, "0.12.0": True, "0.13.0": False, "0.33.0": False},
    "--runner": {"0.9.2": False, "0.10.0": False, "0.10.1": True, "0.13.0": True, "0.33.0": True},
    "--convert": {"0.9.2": False, "0.10.1": True, "0.33.0": True},
    "--disable-log-requests": {"0.9.2": True, "0.10.1": True, "0.11.2": True, "0.13.0": True, "0.16.0": True,
                               "0.17.0": False, "0.20.0": False, "0.33.0": True},
    "--enable-log-requests": {"0.9.2": False, "0.10.0": False, "0.10.1": True, "0.17.0": True, "0.33.0": True},
    "--cuda-graph-sizes": {"0.9.2": True, "0.10.1": True, "0.11.1": True, "0.11.2": True, "0.12.0": True,
                           "0.13.0": False, "0.33.0": False},
    "--cudagraph-capture-sizes": {"0.10.1": False, "0.11.0": False, "0.11.1": True, "0.33.0": True},
    "--max-cudagraph-capture-size": {"0.11.0": False, "0.11.1": True, "0.33.0": True},
    "--override-pooler-config": {"0.9.2": True, "0.11.2": True, "0.12.0": False, "0.33.0": False},
    "--pooler-config": {"0.10.1": False, "0.11.0": True, "0.12.0": True, "0.33.0": True},
}
FACT_CASES = [pytest.param(flag, v, ok, id=f"{flag}@{v}") for flag, row in FACTS.items() for v, ok in row.items()]


@pytest.mark.parametrize("flag, version, ok", FACT_CASES)
def test_the_flag_table_says_what_each_release_accepts(flag, version, ok):
    assert accepts(flag, tuple(int(p) for p in version.split("."))) is ok


def test_the_flag_table_is_one_table():
    assert set(RULES) == {r.flag for r in FLAG_TABLE} == set(FACTS)


@pytest.mark.parametrize("flag, version, ok", [c for c in FACT_CASES if c.values[0] not in ("--task", "--runner",
                                                                                           "--convert")])
def test_a_flag_in_extra_args_never_reaches_a_release_that_rejects_it(flag, version, ok):
    values = {"--cuda-graph-sizes": " 1 2", "--cudagraph-capture-sizes": " 1 2", "--max-cudagraph-capture-size": " 8",
              "--override-pooler-config": " '{\"pooling_type\":\"MEAN\"}'",
              "--pooler-config": " '{\"pooling_type\":\"MEAN\"}'"}.get(flag, "")
    try:
        argv = build_vllm_args(resolve(ServingChoices(vllm_version=version, extra_args=(flag + values,))))
    except InvalidSpecError as exc:
        assert not ok and "is not accepted by vLLM" in str(exc)
        return
    for used, row in FACTS.items():
        if used in argv and version in row:
            assert row[version], f"{used} reached vLLM {version}, which rejects it"


@pytest.mark.parametrize("version", ["0.9.2", "0.10.1", "0.11.2", "0.16.0", "0.20.0", "0.33.0"])
def test_gpu_memory_utilization_is_always_written(version):
    argv = build_vllm_args(resolve(ServingChoices(vllm_version=version, extra_args=())))
    assert argv[argv.index("--gpu-memory-utilization") + 1] == "0.9"  # vLLM 0.20+ would take 0.92 otherwise


@pytest.mark.parametrize("text, message", [
    pytest.param("{pooling_type: MEAN}", "is not JSON", id="not-json"),
    pytest.param('["MEAN"]', "must be a JSON object", id="not-object"),
    pytest.param('{"normalize":true,"use_activation":true}', "both 'normalize' and 'use_activation'", id="both")])
def test_pooler_json_is_checked_before_rendering(text, message):
    with pytest.raises(InvalidSpecError, match=message):
        build_vllm_args(resolve(ServingChoices(vllm_version="0.33.0", extra_args=(f"--pooler-config '{text}'",))))


def test_pooler_normalize_kept_before_0_16():
    assert check_pooler_json("--pooler-config", '{"normalize":true}', (0, 13, 0)) == ('{"normalize":true}', None)
    value, note = check_pooler_json("--pooler-config", '{"normalize":true}', (0, 16, 0))
    assert value == '{"use_activation":true}' and "use_activation" in note


def test_versions_outside_the_checked_range_say_so():
    _, notes = build_vllm_args(resolve(ServingChoices(vllm_version="0.40.0", extra_args=())), with_notes=True)
    assert any("outside the checked releases 0.9.2–0.34.0" in n for n in notes)


@pytest.mark.parametrize("version, flags", [("0.9.2", ["--task", "embed"]), ("0.10.0", ["--task", "embed"]),
                                            ("0.10.1", ["--runner", "pooling"]), ("0.12.0", ["--runner", "pooling"]),
                                            ("0.13.0", ["--runner", "pooling"])])
def test_embedding_mode_per_version(version, flags):
    argv = build_vllm_args(resolve(ServingChoices(model=QWEN, vllm_version=version, extra_args=())))
    i = argv.index(flags[0])
    assert argv[i:i + 2] == flags


@pytest.mark.parametrize("extra_args", [
    pytest.param(("--pooler-config", '{"pooling_type":"MEAN"}'), id="json-as-its-own-item"),
    pytest.param(('--pooler-config {"pooling_type":"MEAN"}',), id="json-unquoted-in-one-item")])
def test_json_that_lost_its_quotes_says_how_to_quote_it(extra_args):
    # extra_args items are shell words, as in the chart (bash strips the double quotes of unquoted JSON): the
    # message must say to wrap the JSON in single quotes, not just that '{pooling_type:MEAN}' is not JSON
    with pytest.raises(InvalidSpecError, match=r"single quotes.*--pooler-config '\{\"pooling_type\":\"MEAN\"\}'"):
        build_vllm_args(resolve(ServingChoices(vllm_version="0.33.0", extra_args=extra_args)))


@pytest.mark.parametrize("extra_args, version, message", [
    pytest.param(("--pooler-config '{bad'",), "0.33.0", "is not JSON", id="pooler-json"),
    pytest.param(("--enable-log-requests",), "0.9.2", "added in 0.10.1", id="flag-too-new"),
    pytest.param(("--api-key x",), "0.10.1", "already controls", id="reserved")])
def test_flag_mistakes_are_refused_when_the_spec_is_made(extra_args, version, message):
    # validation at construction: a notebook's spec fails where it is written, not later at deploy time
    with pytest.raises(InvalidSpecError, match=message):
        resolve(ServingChoices(vllm_version=version, extra_args=extra_args))
