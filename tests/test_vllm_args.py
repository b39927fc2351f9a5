"""The vLLM command line per version: the tutorial's line, embed mode, renamed and removed flags."""

from __future__ import annotations

import shlex

import pytest

from tke_playbook.errors import InvalidSpecError
from tke_playbook.serving import ServingSpec, seed_profile
from tke_playbook.vllm_args import (RULES, build_command, build_leader_command, build_vllm_args,
                                    build_worker_command, split_flags)

# The chart's command for the tutorial's values (helm-charts/vllm-inference-tke/templates/server.yaml).
TUTORIAL_COMMAND = ("vllm serve /data/model --served-model-name intfloat/e5-mistral-7b-instruct -tp 1 -pp 1 "
                    "--max-model-len 2048 --max-num-seqs 32 --disable-log-requests "
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
                            "--disable-log-requests", "--cuda-graph-sizes", "--override-pooler-config", "--host",
                            "--port"]
    assert argv[argv.index("--task") + 1] == "embed"


def test_vllm_0_10_1_uses_the_runner_and_keeps_deprecated_flags():
    argv = _args("0.10.1", model=QWEN, max_model_len=8192)
    assert argv[argv.index("--runner") + 1] == "pooling" and "--task" not in argv
    assert "--disable-log-requests" in argv and "--override-pooler-config" in argv
    i = argv.index("--cuda-graph-sizes")
    assert argv[i + 1:i + 8] == ["1", "2", "4", "8", "16", "24", "32"]


@pytest.mark.parametrize("version", ["0.12.0", "0.13.0", "0.33.0"])
def test_vllm_0_12_and_later_drop_and_rename(version):
    argv, notes = build_vllm_args(seed_profile().replace(
        vllm_version=version, model=QWEN, max_model_len=8192,
        extra_args=seed_profile().extra_args + (POOLER,)), with_notes=True)
    assert "--disable-log-requests" not in argv and "--cuda-graph-sizes" not in argv
    assert "--override-pooler-config" not in argv and "--task" not in argv
    i = argv.index("--cudagraph-capture-sizes")
    assert argv[i + 1:i + 8] == ["1", "2", "4", "8", "16", "24", "32"]
    assert argv[argv.index("--pooler-config") + 1] == '{"pooling_type":"MEAN","normalize":false}'
    assert argv[argv.index("--runner") + 1] == "pooling"
    assert any(n.startswith("dropped --disable-log-requests") for n in notes)
    assert any("→ --cudagraph-capture-sizes" in n for n in notes)


def test_task_embed_in_extra_args_becomes_the_runner_once_task_is_removed():
    argv = build_vllm_args(ServingSpec(vllm_version="0.13.0", extra_args=("--task embed",)))
    assert argv[argv.index("--runner") + 1] == "pooling" and "--task" not in argv


def test_new_flags_are_translated_back_for_old_versions():
    spec = ServingSpec(vllm_version="0.10.1", extra_args=("--cudagraph-capture-sizes 1 2 4",
                                                          "--pooler-config '{\"normalize\":true}'"))
    argv = build_vllm_args(spec)
    assert "--cuda-graph-sizes" in argv and "--override-pooler-config" in argv


@pytest.mark.parametrize("version, flag, message", [
    pytest.param("0.10.1", "--max-cudagraph-capture-size 64", r"--max-cudagraph-capture-size is not accepted by "
                 r"vLLM 0.10.1 \(added in 0.11.1\)", id="too-new-for-0.10"),
    pytest.param("0.8.5", "--cuda-graph-sizes 1 2", r"--cuda-graph-sizes is not accepted by vLLM 0.8.5 \(added in "
                 r"0.9.0\)", id="too-new-for-0.8"),
    pytest.param("0.13.0", "--task generate", r"--task is not accepted by vLLM 0.13.0 \(removed in 0.13.0\)",
                 id="task-removed"),
])
def test_flags_a_version_cannot_take_are_refused(version, flag, message):
    with pytest.raises(InvalidSpecError, match=message):
        build_vllm_args(ServingSpec(vllm_version=version, extra_args=(flag,)))


@pytest.mark.parametrize("flag", ["--port 8000", "--max-model-len=4096", "--api-key secret", "-tp 2"])
def test_extra_args_cannot_override_spec_fields(flag):
    with pytest.raises(InvalidSpecError, match="which the spec already controls"):
        build_vllm_args(ServingSpec(extra_args=(flag,)))


def test_a_value_without_flag_is_refused():
    with pytest.raises(InvalidSpecError, match="is a value without a flag"):
        split_flags(["4096"])


def test_encoder_models_set_the_batched_token_budget():
    argv = build_vllm_args(ServingSpec(model="BAAI/bge-m3", max_model_len=8192, extra_args=()))
    assert argv[argv.index("--max-num-batched-tokens") + 1] == "16384"
    assert "--runner" not in argv  # XLMRobertaModel is a pooling model vLLM recognises


def test_embedding_flag_can_be_forced():
    argv = build_vllm_args(seed_profile().replace(embedding_flag=True))
    assert argv[argv.index("--runner") + 1] == "pooling"
    assert "--task" in build_vllm_args(seed_profile().replace(embedding_flag=True, vllm_version="0.9.0"))


def test_spec_fields_reach_the_command_line():
    spec = ServingSpec(gpu_count=2, tp_size=2, max_model_len=4096, max_batch_size=64, ep_enabled=True,
                       gpu_memory_utilization=0.85, served_model_name="e5", extra_args=())
    argv = build_vllm_args(spec)
    assert argv[:13] == ["vllm", "serve", "/data/model", "--served-model-name", "e5", "-tp", "2", "-pp", "1",
                         "--max-model-len", "4096", "--max-num-seqs", "64"]
    assert argv[13] == "--enable-expert-parallel"  # where the chart puts it
    assert argv[argv.index("--gpu-memory-utilization") + 1] == "0.85"
    assert argv[-4:] == ["--host", "0.0.0.0", "--port", "60000"]


def test_shell_line_quotes_json():
    line = build_command(ServingSpec(vllm_version="0.12.0", extra_args=(POOLER,)))[2]
    assert shlex.split(line)[-5] == '{"pooling_type":"MEAN","normalize":false}'


def test_multi_node_commands():
    spec = ServingSpec(lws_group_size=2, tp_size=2)
    leader, worker = build_leader_command(spec)[2], build_worker_command(spec)[2]
    assert "multi-node-serving.sh leader --ray_cluster_size=$(LWS_GROUP_SIZE)" in leader
    assert "--distributed-executor-backend ray" in leader and leader.endswith("--port 60000")
    assert "worker --ray_address=$(LWS_LEADER_ADDRESS)" in worker


def test_rules_mark_unverified_boundaries():
    assert not RULES["--cuda-graph-sizes"].verified and RULES["--disable-log-requests"].removed == (0, 12, 0)


@pytest.mark.parametrize("version, flags", [("0.9.2", ["--task", "embed"]), ("0.10.0", ["--task", "embed"]),
                                            ("0.10.1", ["--runner", "pooling"]), ("0.12.0", ["--runner", "pooling"]),
                                            ("0.13.0", ["--runner", "pooling"])])
def test_embedding_mode_per_version(version, flags):
    argv = build_vllm_args(ServingSpec(model=QWEN, vllm_version=version, extra_args=()))
    i = argv.index(flags[0])
    assert argv[i:i + 2] == flags
