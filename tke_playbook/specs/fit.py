"""Does a model fit a GPU under vLLM? An estimate with its numbers and a plain recommendation.

vLLM may use ``gpu_memory_utilization`` × the GPU's total memory. Out of that it needs the weights (fp16/bf16,
split over tensor-parallel GPUs), the activations of one scheduler step (profiled at start-up), a runtime
overhead (CUDA context, cuBLAS workspaces, CUDA graphs) and, for decoder models, a paged KV cache that holds
at least one sequence of ``max_model_len`` tokens. Encoder models (BERT, XLM-R) get no KV cache. A reranker is
counted the same way: a cross-encoder's weights, and a step of query-document pairs (each pair one sequence).
All figures are per GPU and are estimates: they err on the safe side by about a gibibyte.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..errors import InvalidSpecError
from .catalog import ModelInfo, get_model
from .hardware import GPUS, MAX_GPUS_PER_NODE, NODE_TYPES, GiB, GpuType, NodeType, get_gpu, get_node_type
from .names import unknown

RUNTIME_OVERHEAD_BYTES = 1 * GiB  # CUDA context, NCCL/cuBLAS workspaces, CUDA graphs (estimate)
ACTIVATION_BYTES_PER_HIDDEN = 12 * 2  # peak activations ≈ step tokens × hidden size × 12 values × 2 bytes
DECODER_STEP_TOKENS = 8192  # vLLM's default token budget per step for online serving
ENCODER_STEP_TOKENS = 16384  # what the toolkit sets --max-num-batched-tokens to for encoder models
TIGHT_FRACTION = 0.10  # less headroom than this share of usable memory is "tight"


def default_batched_tokens(model: str | ModelInfo, max_model_len: int) -> int:
    """The token budget of one scheduler step: at least one full sequence, more for batching."""
    info = get_model(model)
    return max(max_model_len, ENCODER_STEP_TOKENS if info.is_encoder else DECODER_STEP_TOKENS)


@dataclass(frozen=True)
class FitVerdict:
    """The outcome of :func:`check_fit`; byte figures are per GPU."""

    fits: bool
    model: str
    gpu: str
    gpu_count: int
    max_model_len: int
    gpu_memory_utilization: float
    total_bytes: int
    usable_bytes: int
    weights_bytes: int
    kv_cache_bytes: int
    activation_bytes: int
    overhead_bytes: int
    headroom_bytes: int
    kv_capacity_sequences: int
    recommendation: str
    notes: tuple[str, ...] = ()
    kind: str = "embedding"  # the model's kind (catalog.ModelKind): "embedding" or "reranker"

    @property
    def needed_bytes(self) -> int:
        return self.weights_bytes + self.kv_cache_bytes + self.activation_bytes + self.overhead_bytes

    def summary(self) -> str:
        """One plain sentence. Figures are rounded to 0.01 GiB and the total is the sum of the rounded parts, so the
        parts add up to it as shown."""
        verb = "fits" if self.fits else "does not fit"
        weights, kv, rest = (_round_gib(b) for b in (self.weights_bytes, self.kv_cache_bytes,
                                                     self.activation_bytes + self.overhead_bytes))
        what = " (cross-encoder reranker)" if self.kind == "reranker" else ""
        return (f"{self.model}{what} {verb} on {self.gpu_count} × {self.gpu} at max_model_len {self.max_model_len}: "
                f"needs about {weights + kv + rest:.2f} of {_round_gib(self.usable_bytes):.2f} GiB usable per GPU "
                f"(weights {weights:.2f}, KV cache {kv:.2f}, activations and runtime {rest:.2f}), headroom "
                f"{_gib(self.headroom_bytes)} GiB.")

    def as_rows(self) -> list[dict]:
        """The numbers as rows (item, GiB, note) for a table."""
        util = f"{self.gpu_memory_utilization:.2f}"
        if not self.kv_cache_bytes:
            kv_note = "encoder model: no KV cache"
        elif self.fits:
            kv_note = f"room for {self.kv_capacity_sequences} sequences of {self.max_model_len} tokens"
        else:
            kv_note = f"at least one sequence of {self.max_model_len} tokens"
        reranker = self.kind == "reranker"
        rows = [("GPU memory", self.total_bytes, f"{self.gpu}, as the driver reports it"),
                ("usable", self.usable_bytes, f"gpu_memory_utilization {util}"),
                ("weights", self.weights_bytes, ("cross-encoder, " if reranker else "") +
                 f"fp16/bf16, split over {self.gpu_count} GPU(s)"),
                ("KV cache (minimum)", self.kv_cache_bytes, kv_note),
                ("activations", self.activation_bytes, "one scheduler step" +
                 (" of query-document pairs" if reranker else "") + " (estimate)"),
                ("runtime overhead", self.overhead_bytes, "CUDA context, workspaces, CUDA graphs (estimate)"),
                ("headroom", self.headroom_bytes, "fits" if self.fits else "does not fit")]
        return [{"item": item, "GiB": round(value / GiB, 2), "note": note} for item, value, note in rows]


def _gib(value: int) -> str:
    return f"{value / GiB:.1f}"


def _round_gib(value: int) -> float:
    return round(value / GiB, 2)


def tensor_parallel_choices(model: str | ModelInfo, most: int | None = None) -> list[int]:
    """The tensor-parallel sizes vLLM accepts for ``model`` (divisors of its attention heads), up to ``most``."""
    heads = get_model(model).num_attention_heads
    top = most if most is not None else heads
    return [tp for tp in range(1, (top or 0) + 1) if heads and heads % tp == 0]


def check_tensor_parallel(model: str | ModelInfo, tensor_parallel, node_gpus: int | None = None,
                          node: str = "the node") -> int:
    """The one tensor-parallel rule: a whole number of at least 1 that divides the model's attention heads (vLLM
    stops otherwise: "Total number of attention heads (16) must be divisible by tensor parallel size (3)") and,
    with ``node_gpus``, no more than the GPUs of one node. Returns it; InvalidSpecError says what to use."""
    info = get_model(model)
    tp = tensor_parallel
    if isinstance(tp, bool) or not isinstance(tp, int) or tp < 1:
        raise InvalidSpecError(f"tensor_parallel {tp!r} must be a whole number of at least 1, such as 1",
                               field="tensor_parallel", value=tp)
    heads = info.num_attention_heads
    if heads and heads % tp:
        choices = ", ".join(str(c) for c in tensor_parallel_choices(info, node_gpus))
        raise InvalidSpecError(f"tensor_parallel {tp} does not divide {info.short_name}'s {heads} attention heads "
                               f"(vLLM refuses to start): use one of {choices}", field="tensor_parallel", value=tp)
    if node_gpus is not None and tp > node_gpus:
        raise InvalidSpecError(f"tensor_parallel {tp} needs {tp} GPUs but {node} has {node_gpus}: lower it to at "
                               f"most {node_gpus} or choose a node type with more GPUs", field="tensor_parallel",
                               value=tp)
    return tp


def _resolve_gpu(gpu: str | GpuType | NodeType) -> tuple[GpuType, int | None]:
    if isinstance(gpu, GpuType):
        return gpu, None
    if isinstance(gpu, NodeType):
        node = gpu
    else:
        try:
            return get_gpu(gpu), None
        except LookupError:
            try:
                node = get_node_type(gpu)
            except LookupError:
                raise get_gpu_or_node_error(str(gpu)) from None
    if node.gpu is None or node.gpu_count < 1:
        raise InvalidSpecError(f"Node type '{node.name}' has no GPU: choose a GPU node such as PNV5b.8XLARGE96",
                               field="gpu", value=node.name)
    return node.gpu, node.gpu_count


def get_gpu_or_node_error(name: str) -> LookupError:
    return unknown("GPU or node type", name, [g.name for g in GPUS] + [n.name for n in NODE_TYPES])


def _estimate(info: ModelInfo, gpu: GpuType, max_model_len: int, util: float, tp: int, step_tokens: int):
    usable = int(gpu.memory_bytes * util)
    weights = -(-info.serving_bytes // tp)
    kv_per_token = info.kv_bytes_per_token / tp
    kv = int(kv_per_token * max_model_len)
    activations = step_tokens * info.hidden_size * ACTIVATION_BYTES_PER_HIDDEN
    headroom = usable - weights - kv - activations - RUNTIME_OVERHEAD_BYTES
    sequences = int((headroom + kv) // kv) if kv and headroom >= 0 else 0
    return usable, weights, kv, activations, headroom, sequences


def _checked_length(info: ModelInfo, max_model_len) -> int:
    """``max_model_len`` (default: the model's recommended, else its limit), refused when it is not a positive
    whole number within the model's limit."""
    max_len = max_model_len if max_model_len is not None else (info.recommended_max_tokens or info.max_tokens)
    if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1:
        raise InvalidSpecError(f"max_model_len {max_len!r} must be a positive whole number of tokens, such as 2048",
                               field="max_model_len", value=max_len)
    if max_len > info.max_tokens:
        raise InvalidSpecError(f"max_model_len {max_len} is above {info.hf_id}'s limit of {info.max_tokens} tokens: "
                               f"use at most {info.max_tokens}", field="max_model_len", value=max_len)
    return max_len


def _checked_utilisation(util) -> float:
    if isinstance(util, bool) or not isinstance(util, (int, float)) or not 0 < util <= 1:
        raise InvalidSpecError(f"gpu_memory_utilization {util!r} must be a fraction in (0, 1], such as 0.9",
                               field="gpu_memory_utilization", value=util)
    return float(util)


def _node_words(gpu, node_gpus: int | None) -> str:
    """How a message names where the GPUs are: the node type given, or "the node" for a bare GPU."""
    if isinstance(gpu, NodeType):
        return f"node type {gpu.name}"
    return "the node" if node_gpus is None else f"node type {gpu}"


def _gpu_notes(gpu: GpuType, info: ModelInfo) -> tuple[str, ...]:
    notes = [] if not info.is_reranker else [
        "a cross-encoder reads the query and the document together, one sequence per pair: max_model_len must hold "
        "the query plus the longest document (a longer pair is refused like an over-long input)"]
    if not gpu.bf16 and info.dtype == "bfloat16":
        notes.append(f"{gpu.name} has no bfloat16: vLLM serves this model in float16 (check its outputs)")
    if not gpu.verified:
        notes.append(f"{gpu.name}: {gpu.note}")
    return tuple(notes)


def check_fit(model: str | ModelInfo, gpu: str | GpuType | NodeType, max_model_len: int | None = None,
              gpu_memory_utilization: float | None = 0.9, tensor_parallel: int | None = 1,
              max_num_batched_tokens: int | None = None) -> FitVerdict:
    """Estimate whether ``model`` serves on ``gpu`` (a GPU, a node type or either's name) and say what to do.
    ``None`` for an option means its default (the model's recommended length, 0.9, one GPU)."""
    info = get_model(model)
    tensor_parallel = 1 if tensor_parallel is None else tensor_parallel
    gpu_type, node_gpus = _resolve_gpu(gpu)
    max_len = _checked_length(info, max_model_len)
    util = _checked_utilisation(0.9 if gpu_memory_utilization is None else gpu_memory_utilization)
    check_tensor_parallel(info, tensor_parallel, node_gpus, _node_words(gpu, node_gpus))
    step = max_num_batched_tokens or default_batched_tokens(info, max_len)
    usable, weights, kv, act, headroom, seqs = _estimate(info, gpu_type, max_len, util, tensor_parallel, step)
    verdict = FitVerdict(headroom >= 0, info.hf_id, gpu_type.name, tensor_parallel, max_len, util,
                         gpu_type.memory_bytes, usable, weights, kv, act, RUNTIME_OVERHEAD_BYTES, headroom, seqs, "",
                         _gpu_notes(gpu_type, info), info.kind.value)
    return _with_recommendation(verdict, info, gpu_type, step)


def _fits_text(v: FitVerdict, gpu: GpuType) -> str:
    """What a verdict that fits says: tight (little spare memory, or room for few sequences) or comfortable."""
    if v.kv_cache_bytes:
        room = f"the KV cache has room for about {v.kv_capacity_sequences} sequences of {v.max_model_len} tokens"
    else:
        room = "an encoder model needs no KV cache"
    if v.headroom_bytes < TIGHT_FRACTION * v.usable_bytes and v.kv_cache_bytes == 0:
        return (f"Fits tightly on {gpu.name}: only {_gib(v.headroom_bytes)} GiB spare; raise "
                f"gpu_memory_utilization or choose a larger GPU if start-up runs out of memory.")
    if v.kv_cache_bytes and v.kv_capacity_sequences < 4:
        return (f"Fits tightly on {gpu.name}: {room}, so requests will queue; lower max_model_len or use a "
                f"larger GPU for more concurrency.")
    return f"Fits on {gpu.name} with {_gib(v.headroom_bytes)} GiB to spare; {room}."


def _fits_with(v: FitVerdict, info: ModelInfo, gpu: GpuType, step: int, *, util: float | None = None,
               tp: int | None = None) -> bool:
    return _estimate(info, gpu, v.max_model_len, util or v.gpu_memory_utilization, tp or v.gpu_count, step)[4] >= 0


def _bigger_gpu(v: FitVerdict, info: ModelInfo, gpu: GpuType, step: int) -> str | None:
    bigger = [g for g in sorted(GPUS, key=lambda g: g.memory_bytes)
              if g.memory_bytes > gpu.memory_bytes and _fits_with(v, info, g, step)]
    return f"use {bigger[0].name} ({bigger[0].memory_gib:.0f} GiB) or a larger GPU" if bigger else None


def _more_gpus(v: FitVerdict, info: ModelInfo, gpu: GpuType, step: int) -> str | None:
    tp = next((tp for tp in tensor_parallel_choices(info, MAX_GPUS_PER_NODE)
               if tp > v.gpu_count and _fits_with(v, info, gpu, step, tp=tp)), None)
    return f"shard it over {tp} × {gpu.name} with tensor parallel {tp}" if tp else None


def _shorter_length(v: FitVerdict, info: ModelInfo, gpu: GpuType, step: int) -> str | None:
    if not v.kv_cache_bytes:
        return None
    spare = v.headroom_bytes + v.kv_cache_bytes
    shorter = int(spare // (info.kv_bytes_per_token / v.gpu_count)) // 256 * 256 if spare > 0 else 0
    return f"lower max_model_len to {shorter}" if shorter >= 512 else None


def _more_memory(v: FitVerdict, info: ModelInfo, gpu: GpuType, step: int) -> str | None:
    if v.gpu_memory_utilization < 0.95 and _fits_with(v, info, gpu, step, util=0.95):
        return "raise gpu_memory_utilization to 0.95"
    return None


# what a verdict that does not fit suggests, in this order (each: an option in words, or None)
_REMEDIES = (_bigger_gpu, _more_gpus, _shorter_length, _more_memory)


def _with_recommendation(v: FitVerdict, info: ModelInfo, gpu: GpuType, step: int) -> FitVerdict:
    if v.fits:
        return replace(v, recommendation=_fits_text(v, gpu))
    options = [text for remedy in _REMEDIES if (text := remedy(v, info, gpu, step))]
    what = "; or ".join(options) if options else "choose a smaller model"
    text = (f"Does not fit: {info.short_name} needs about {_gib(v.needed_bytes)} GiB per GPU but {gpu.name} offers "
            f"{_gib(v.usable_bytes)} GiB at gpu_memory_utilization {v.gpu_memory_utilization:.2f} (vLLM would stop "
            f"with CUDA out of memory). {what[0].upper() + what[1:]}.")
    return replace(v, recommendation=text)
