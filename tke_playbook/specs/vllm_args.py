"""The vLLM command line of a resolved :class:`~tke_playbook.specs.serving.ServingSpec`.

The base is the chart's: ``vllm serve /data/model --served-model-name <name> -tp <tp> -pp <pp> --max-model-len
<len> --max-num-seqs <n> <extra args…> --host 0.0.0.0 --port 60000`` inside ``bash -c``. The toolkit adds the
embedding-mode flag (``--runner pooling`` from 0.10.1, ``--task embed`` - ``score`` for a reranker - before) where
the spec's ``embedding_flag`` says so (resolved from the model unless set), the ``--hf-overrides`` and pooler task
of the retrieval models (a Qwen3 reranker, bge-m3's sparse and multi-vector modes, Matryoshka),
``--max-num-batched-tokens`` for encoder models and, always, ``--gpu-memory-utilization`` (the fraction the fit check assumed: vLLM's own default moved from 0.9
to 0.92 in 0.20). Flags renamed or removed between versions are translated by the rules of
:mod:`tke_playbook.specs.vllm_flags`.
"""

from __future__ import annotations

import json

from .catalog import PoolingMode
from .serving import CONTAINER_PORT, ServingSpec
from .vllm_flags import (Version, command_string, embedding_flags, parse_vllm_version, translate, user_flags,
                         version_notes)

MODEL_DIR = "/data/model"
DEFAULT_GPU_MEMORY_UTILIZATION = 0.9  # the toolkit's (and the fit check's) default; vLLM's is 0.92 from 0.20


def _dedupe_embedding(groups: list[list[str]]) -> list[list[str]]:
    seen, out = False, []
    for group in groups:
        if group in (["--runner", "pooling"], ["--task", "embed"], ["--task", "score"]):
            if seen:
                continue
            seen = True
        out.append(group)
    return out


def _toolkit_flags(spec: ServingSpec, version: Version, given: list[list[str]]) -> list[list[str]]:
    toolkit = [["--enable-expert-parallel"]] if spec.ep_enabled else []  # where the chart puts it
    if spec.embedding_flag and not any(g[0] in ("--runner", "--task") for g in given):
        toolkit.append(embedding_flags(version, reranker=spec.model_info.is_reranker))
    if spec.hf_overrides:  # what vLLM's docs give for a reranker, bge-m3's modes, Matryoshka (checked releases)
        toolkit.append(["--hf-overrides", json.dumps(spec.hf_overrides, separators=(",", ":"))])
    if spec.pooling_mode is not PoolingMode.DENSE:  # one pooler task per server (vLLM's docs, "BAAI/bge-m3")
        toolkit.append(["--pooler-config", json.dumps({"task": spec.pooling_mode.pooling_task}, separators=(",", ":"))])
    if spec.max_num_batched_tokens is not None:
        toolkit.append(["--max-num-batched-tokens", str(spec.max_num_batched_tokens)])
    toolkit.append(["--gpu-memory-utilization", f"{spec.gpu_memory_utilization:g}"])  # what the fit check assumed
    if spec.is_multi_node:
        toolkit.append(["--distributed-executor-backend", "ray"])
    return toolkit


def build_vllm_args(spec: ServingSpec, *, with_notes: bool = False):
    """The ``vllm serve`` argv for ``spec`` (``['vllm', 'serve', '/data/model', …]``); with ``with_notes=True``
    also the list of translations applied."""
    version = parse_vllm_version(spec.vllm_version)
    given = user_flags(spec.extra_args)
    # toolkit flags first, so the user's extra args (parsed later by vLLM) win on a clash
    groups, notes = translate(_toolkit_flags(spec, version, given) + given, version)
    groups = _dedupe_embedding(groups)
    argv = ["vllm", "serve", MODEL_DIR, "--served-model-name", spec.served_model_name,
            "-tp", str(spec.tp_size), "-pp", str(spec.pp_size), "--max-model-len", str(spec.max_model_len),
            "--max-num-seqs", str(spec.max_batch_size)]
    argv += [token for group in groups for token in group]
    argv += ["--host", "0.0.0.0", "--port", str(CONTAINER_PORT)]
    return (argv, version_notes(version) + notes) if with_notes else argv


def build_command(spec: ServingSpec) -> list[str]:
    """The container command, like the chart's: ``['bash', '-c', 'vllm serve …']``."""
    return ["bash", "-c", command_string(build_vllm_args(spec))]


MULTI_NODE_SCRIPT = "/vllm-workspace/examples/online_serving/multi-node-serving.sh"  # ships in vllm-openai images


def build_leader_command(spec: ServingSpec) -> list[str]:
    """LeaderWorkerSet leader: start the Ray head for the group, then ``vllm serve`` (as the chart does)."""
    line = f"bash {MULTI_NODE_SCRIPT} leader --ray_cluster_size=$(LWS_GROUP_SIZE); "
    return ["bash", "-c", line + command_string(build_vllm_args(spec))]


def build_worker_command(spec: ServingSpec) -> list[str]:
    """LeaderWorkerSet worker: join the leader's Ray cluster and block."""
    return ["bash", "-c", f"bash {MULTI_NODE_SCRIPT} worker --ray_address=$(LWS_LEADER_ADDRESS)"]
