"""The vLLM command line, built for the vLLM version of the image.

The base is the chart's: ``vllm serve /data/model --served-model-name <name> -tp <tp> -pp <pp> --max-model-len
<len> --max-num-seqs <n> <extra args…> --host 0.0.0.0 --port 60000`` inside ``bash -c``. The toolkit adds the
embedding-mode flag (``--runner pooling`` from 0.10.1, ``--task embed`` before) where the checkpoint needs it or
``embedding_flag=True`` asks for it, ``--max-num-batched-tokens``
for encoder models and ``--gpu-memory-utilization`` when it is not vLLM's default, and translates flags that
were renamed or removed between versions. A flag the chosen version does not accept and that cannot be
translated raises :class:`~tke_playbook.errors.InvalidSpecError`.

Version boundaries marked ``verified=False`` below come from release notes and deprecation messages, not from
running each release: check ``vllm serve --help`` of your image when in doubt.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import InvalidSpecError
from .serving import CONTAINER_PORT, parse_vllm_version

if TYPE_CHECKING:
    from .serving import ServingSpec

MODEL_DIR = "/data/model"
DEFAULT_GPU_MEMORY_UTILIZATION = 0.9
Version = tuple[int, int, int]


@dataclass(frozen=True)
class FlagRule:
    """When a flag exists: ``added`` ≤ version < ``removed`` (None = always / never)."""

    flag: str
    added: Version | None = None
    removed: Version | None = None
    verified: bool = True
    note: str = ""


RULES = {r.flag: r for r in (
    FlagRule("--task", removed=(0, 13, 0), note="deprecated from 0.10 in favour of --runner/--convert"),
    # --runner/--convert arrived in the 0.10 series; 0.10.1 is the first release checked, and --task embed still
    # works on 0.10.0, so the toolkit switches at 0.10.1
    FlagRule("--runner", added=(0, 10, 1), verified=False),
    FlagRule("--convert", added=(0, 10, 1), verified=False),
    FlagRule("--disable-log-requests", removed=(0, 12, 0),
             note="deprecated in 0.10.1: request logging is already off by default"),
    FlagRule("--cuda-graph-sizes", added=(0, 9, 0), removed=(0, 11, 1), verified=False,
             note="deprecated in Oct 2025 for --cudagraph-capture-sizes; the toolkit switches at 0.11.1"),
    FlagRule("--cudagraph-capture-sizes", added=(0, 11, 1), verified=False),
    FlagRule("--max-cudagraph-capture-size", added=(0, 11, 1), verified=False),
    FlagRule("--override-pooler-config", removed=(0, 12, 0), note="renamed --pooler-config in 0.11"),
    FlagRule("--pooler-config", added=(0, 11, 0), verified=False),
)}


def _accepts(flag: str, version: Version) -> bool:
    rule = RULES.get(flag)
    if rule is None:
        return True  # flags the toolkit has no rule for pass through unchanged
    return (rule.added is None or version >= rule.added) and (rule.removed is None or version < rule.removed)


def _v(version: Version) -> str:
    return ".".join(str(p) for p in version)


def split_flags(args) -> list[list[str]]:
    """Group tokens into ``[flag, value…]`` lists; each item may hold several tokens (``'--x 1 2'``)."""
    groups: list[list[str]] = []
    for item in args:
        for token in shlex.split(str(item)):
            if token.startswith("-") and not _is_number(token):
                flag, eq, value = token.partition("=")
                groups.append([flag, value] if eq else [flag])
            elif groups:
                groups[-1].append(token)
            else:
                raise InvalidSpecError(f"extra argument '{token}' is a value without a flag: start with '--'",
                                       field="extra_args", value=item)
    return groups


def _is_number(token: str) -> bool:
    try:
        float(token)
        return True
    except ValueError:
        return False


def translate(groups: list[list[str]], version: Version) -> tuple[list[list[str]], list[str]]:
    """Rewrite flag groups for ``version``; return them and plain notes about what changed."""
    out, notes = [], []
    for group in groups:
        flag, values = group[0], group[1:]
        new = _translate_one(flag, values, version)
        if new is None:
            notes.append(f"dropped {flag}: vLLM {_v(version)} no longer accepts it ({RULES[flag].note})")
            continue
        if new != group:
            notes.append(f"{' '.join(group)} → {' '.join(new)} for vLLM {_v(version)}")
        if not _accepts(new[0], version):
            rule = RULES[new[0]]
            when = f"added in {_v(rule.added)}" if rule.added and version < rule.added else \
                f"removed in {_v(rule.removed)}"
            raise InvalidSpecError(f"{new[0]} is not accepted by vLLM {_v(version)} ({when}) and has no "
                                   f"equivalent there: remove it from extra_args or choose another image",
                                   field="extra_args", value=" ".join(group))
        out.append(new)
    return out, notes


def _translate_one(flag: str, values: list[str], version: Version) -> list[str] | None:
    if _accepts(flag, version):
        return [flag, *values]
    if flag == "--disable-log-requests":
        return None  # removed: logging is off by default
    if flag == "--task" and values == ["embed"]:
        return ["--runner", "pooling"]
    if flag == "--runner" and values == ["pooling"]:
        return ["--task", "embed"]
    if flag == "--convert" and values == ["embed"]:
        return ["--task", "embed"]
    if flag == "--cuda-graph-sizes" and _accepts("--cudagraph-capture-sizes", version):
        return ["--cudagraph-capture-sizes", *values]
    if flag == "--cudagraph-capture-sizes" and _accepts("--cuda-graph-sizes", version):
        return ["--cuda-graph-sizes", *values]
    if flag == "--override-pooler-config" and _accepts("--pooler-config", version):
        return ["--pooler-config", *values]
    if flag == "--pooler-config" and _accepts("--override-pooler-config", version):
        return ["--override-pooler-config", *values]
    return [flag, *values]  # untranslatable: translate() reports it


# Embedding checkpoints that declare a *ForCausalLM architecture: without the pooling runner vLLM would load them
# as text generators. Others (MistralModel, BertModel, XLMRobertaModel) are pooling models vLLM recognises.
CAUSAL_LM_EMBEDDERS = frozenset({"Qwen/Qwen3-Embedding-0.6B", "Qwen/Qwen3-Embedding-8B"})


def needs_embedding_flag(spec: ServingSpec) -> bool:
    """``spec.embedding_flag`` if set, else whether the model's checkpoint needs it."""
    return spec.embedding_flag if spec.embedding_flag is not None else spec.model in CAUSAL_LM_EMBEDDERS


def embedding_flags(version: Version) -> list[str]:
    """The flags that make vLLM serve a pooling (embedding) model."""
    return ["--runner", "pooling"] if _accepts("--runner", version) else ["--task", "embed"]


def _dedupe_embedding(groups: list[list[str]]) -> list[list[str]]:
    seen, out = False, []
    for group in groups:
        if group in (["--runner", "pooling"], ["--task", "embed"]):
            if seen:
                continue
            seen = True
        out.append(group)
    return out


def build_vllm_args(spec: ServingSpec, *, with_notes: bool = False):
    """The ``vllm serve`` argv for ``spec`` (``['vllm', 'serve', '/data/model', …]``); with ``with_notes=True``
    also the list of translations applied."""
    version = parse_vllm_version(spec.vllm_version)
    user_flags = split_flags(spec.extra_args)
    reserved = {"--host", "--port", "--served-model-name", "--max-model-len", "--max-num-seqs", "-tp", "-pp",
                "--tensor-parallel-size", "--pipeline-parallel-size", "--api-key"}
    for group in user_flags:
        if group[0] in reserved:
            raise InvalidSpecError(f"extra_args sets {group[0]}, which the spec already controls: set the spec's "
                                   f"field instead (or, for --api-key, use the API key Secret)",
                                   field="extra_args", value=" ".join(group))
    user_selects = any(g[0] in ("--runner", "--task") for g in user_flags)
    toolkit = [["--enable-expert-parallel"]] if spec.ep_enabled else []  # where the chart puts it
    if needs_embedding_flag(spec) and not user_selects:
        toolkit.append(embedding_flags(version))
    if spec.max_num_batched_tokens is not None:
        toolkit.append(["--max-num-batched-tokens", str(spec.max_num_batched_tokens)])
    if spec.gpu_memory_utilization != DEFAULT_GPU_MEMORY_UTILIZATION:
        toolkit.append(["--gpu-memory-utilization", f"{spec.gpu_memory_utilization:g}"])
    if spec.is_multi_node:
        toolkit.append(["--distributed-executor-backend", "ray"])
    # toolkit flags first, so the user's extra args (parsed later by vLLM) win on a clash
    groups, notes = translate(toolkit + user_flags, version)
    groups = _dedupe_embedding(groups)
    argv = ["vllm", "serve", MODEL_DIR, "--served-model-name", spec.served_model_name,
            "-tp", str(spec.tp_size), "-pp", str(spec.pp_size), "--max-model-len", str(spec.max_model_len),
            "--max-num-seqs", str(spec.max_batch_size)]
    argv += [token for group in groups for token in group]
    argv += ["--host", "0.0.0.0", "--port", str(CONTAINER_PORT)]
    return (argv, notes) if with_notes else argv


def command_string(argv: list[str]) -> str:
    """argv as one shell line (tokens quoted only where the shell needs it)."""
    return " ".join(shlex.quote(token) for token in argv)


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
