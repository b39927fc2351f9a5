"""The model behind the local server: a sentence-transformers folder, tokenised and encoded as vLLM would.

Text is tokenised here (so the server can refuse over-long inputs and count prompt tokens before queueing);
token ids are fed to the transformer as given, without decoding. :meth:`Encoder.encode_ids` sorts a batch by
length and encodes it in chunks of similar length, so padding wastes little and results match
``SentenceTransformer.encode`` (max abs difference ~1e-7). A ``checkpoint`` given to it is called before each
chunk and each layer of the model (a stack of layers: every ``nn.ModuleList``'s members), so the batcher can pause
a bulk step for a query or stop one whose clients left between sub-steps (:mod:`.batcher`).
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ServerError
from ..hostenv import offline_model_dir
from ..podworker.modelfolder import read_manifest, require_complete
from ..specs.catalog import OFFLINE_MODEL

DEFAULT_CHUNK = 32
_MANIFEST_ID_KEYS = ("model", "hf_id", "model_id", "repo_id")


def default_model_name(model_dir: str | os.PathLike) -> str:
    """The name a folder is served under by default: its model id from the download manifest, else its name."""
    path = Path(model_dir).resolve()
    try:
        if path == offline_model_dir().resolve():
            return OFFLINE_MODEL
    except Exception:  # the offline package is optional for serving other folders
        pass
    try:
        manifest = read_manifest(path)  # checked and bounded: a FIFO or /dev/zero in its place cannot hang serve
    except (OSError, ValueError):
        manifest = {}
    for key in _MANIFEST_ID_KEYS:
        value = manifest.get(key) if isinstance(manifest, dict) else None
        if isinstance(value, str) and value:
            return value
    return path.name


def resolve_model_dir(model_dir: str | os.PathLike | None = None, *, require_marker: bool = True) -> Path:
    """The folder to serve: ``model_dir``, else the packaged offline model (trusted without a marker).

    Any other folder must carry the download's completion marker (IncompleteModelError otherwise), unless
    ``require_marker`` is False.
    """
    if model_dir is None:
        return offline_model_dir()
    path = Path(model_dir).expanduser()
    try:
        offline = offline_model_dir().resolve()
    except Exception:  # the offline package is not installed: every folder needs its marker
        offline = None
    if path.resolve() == offline:
        return path
    if require_marker:
        require_complete(path)
    elif not path.is_dir():
        raise ServerError(f"Model folder {path} does not exist: give the folder the download produced.", obj=path)
    return path


def length_chunks(sorted_lengths: list[int], limit: int, *, waste: float = 0.15,
                  min_rows: int = 4) -> list[range]:
    """Cut length-sorted rows into chunks of at most ``limit`` rows whose padding stays under ``waste``.

    A chunk grows while padding every row to its longest would cost at most ``waste`` more tokens than the rows
    hold (a chunk of fewer than ``min_rows`` rows always grows, as tiny forward passes cost more than padding).
    """
    chunks, start, total = [], 0, 0
    for i, length in enumerate(sorted_lengths):
        rows = i - start
        if rows and (rows >= limit or (rows >= min_rows and length * (rows + 1) > (1 + waste) * (total + length))):
            chunks.append(range(start, i))
            start, total = i, 0
        total += length
    if start < len(sorted_lengths):
        end = len(sorted_lengths)
        if chunks and end - start < min_rows and end - chunks[-1].start <= limit:
            start = chunks.pop().start  # a short tail joins the chunk before it
        chunks.append(range(start, end))
    return chunks


@dataclass(frozen=True)
class ModelFacts:
    """What the API needs to know about the loaded model."""

    path: str
    dim: int
    max_model_len: int
    vocab_size: int
    normalize: bool = True  # the model normalises its output (a Normalize module): vLLM's default activation
    is_matryoshka: bool = False
    matryoshka_dimensions: tuple[int, ...] | None = None
    has_chat_template: bool = False
    architecture: str = "BertModel"  # config.json's first architecture (vLLM names it in some refusals)
    task_instructions: dict | None = None  # Cohere input_type -> prefix (the model's sentence-transformers prompts)


class NoChatTemplate(ServerError):
    """The model's tokenizer has no chat template, so ``messages`` cannot become a prompt."""


def _matryoshka(config) -> tuple[bool, tuple[int, ...] | None]:
    """vLLM reads ``is_matryoshka`` / ``matryoshka_dimensions`` from the model's config.json."""
    dims = getattr(config, "matryoshka_dimensions", None)
    dims = tuple(int(d) for d in dims) if isinstance(dims, (list, tuple)) and dims else None
    return bool(getattr(config, "is_matryoshka", False) or dims), dims


def _max_model_len(model, config) -> int:
    """The longest input: the model's max_seq_length, at most its position embeddings (RoBERTa-style models lose
    two to the padding index), 512 when neither is known."""
    positions = getattr(config, "max_position_embeddings", None)
    max_len = model.max_seq_length or positions or 512
    if positions and getattr(config, "model_type", "") in ("roberta", "xlm-roberta"):
        positions -= 2  # RoBERTa-style position ids start after the padding index
    return int(min(max_len, positions) if positions else max_len)


def _model_facts(model, path: Path, normalizes: bool) -> ModelFacts:
    """What the API needs to know of a loaded sentence-transformers model, from it and its config.json."""
    config = getattr(getattr(model[0], "auto_model", None), "config", None)
    tokenizer = model.tokenizer
    dimension = (model.get_embedding_dimension() if hasattr(model, "get_embedding_dimension")
                 else model.get_sentence_embedding_dimension())
    is_matryoshka, dimensions = _matryoshka(config)
    return ModelFacts(
        path=str(path), dim=int(dimension), max_model_len=_max_model_len(model, config),
        vocab_size=int(getattr(config, "vocab_size", None) or len(tokenizer)), normalize=normalizes,
        is_matryoshka=is_matryoshka, matryoshka_dimensions=dimensions,
        has_chat_template=bool(getattr(tokenizer, "chat_template", None)),
        architecture=str((getattr(config, "architectures", None) or ["BertModel"])[0]),
        task_instructions={k: v for k, v in (getattr(model, "prompts", None) or {}).items()
                           if isinstance(v, str) and v} or None)


class Encoder:
    """A loaded sentence-transformers model that tokenises text and encodes token-id lists."""

    def __init__(self, model_dir: str | os.PathLike, *, threads: int | None = None, chunk: int = DEFAULT_CHUNK):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        logging.getLogger("transformers.tokenization_utils_base").setLevel(logging.ERROR)
        import torch  # late: seconds to import; the API process needs it only once a model loads
        from sentence_transformers import SentenceTransformer

        self._torch = torch
        torch.set_num_threads(max(1, threads or os.cpu_count() or 1))
        path = Path(model_dir)
        try:
            self.model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        except Exception as exc:
            raise ServerError(f"Could not load the sentence-transformers model in {path}: {exc}. Check that the "
                              f"folder holds a complete model (config.json, weights, tokenizer).", obj=path,
                              cause=exc) from exc
        self.model.eval()
        modules = list(self.model.children())
        normalizes = bool(modules) and type(modules[-1]).__name__ == "Normalize"
        # The API normalises per request (use_activation), so the forward pass stops before a Normalize module.
        self._modules = modules[:-1] if normalizes else modules
        self.tokenizer = self.model.tokenizer
        self.chunk = max(1, int(chunk))
        self._needs_token_types = "token_type_ids" in getattr(self.tokenizer, "model_input_names", ())
        self.facts = _model_facts(self.model, path, normalizes)
        self._step = threading.local()  # the checkpoint of the encode_ids call running in this thread
        for stack in (m for m in self.model.modules() if isinstance(m, torch.nn.ModuleList)):
            for layer in stack:
                layer.register_forward_pre_hook(self._at_layer)

    def _at_layer(self, module, args) -> None:
        checkpoint = getattr(self._step, "checkpoint", None)
        if checkpoint is not None:
            checkpoint()

    # --- tokenising --------------------------------------------------------------------------------------

    def tokenize(self, texts: list[str], *, add_special_tokens: bool = True, max_length: int | None = None,
                 truncation_side: str = "right") -> list[list[int]]:
        """Token ids of each text; cut to ``max_length`` tokens when given, keeping the start (``right``, as vLLM
        by default) or the end (``left``); special tokens stay around what is kept."""
        if max_length is not None and truncation_side == "left":
            return self._tokenize_keeping_end(texts, add_special_tokens=add_special_tokens, max_length=max_length)
        if max_length is None:
            encoded = self.tokenizer(texts, add_special_tokens=add_special_tokens, truncation=False)
        else:
            encoded = self.tokenizer(texts, add_special_tokens=add_special_tokens, truncation=True,
                                     max_length=max_length)
        return encoded["input_ids"]

    def _special_tokens(self) -> tuple[list[int], list[int]]:
        """The special tokens the tokenizer puts before and after a text (e.g. [CLS] and [SEP])."""
        plain = self.tokenizer("a", add_special_tokens=False)["input_ids"]
        full = self.tokenizer("a", add_special_tokens=True)["input_ids"]
        for start in range(len(full) - len(plain) + 1):
            if full[start:start + len(plain)] == plain:
                return full[:start], full[start + len(plain):]
        return [], []

    @property
    def special_token_count(self) -> int:
        """How many special tokens the tokenizer puts around one text ([CLS] and [SEP]: 2)."""
        before, after = self._special_tokens()
        return len(before) + len(after)

    def _tokenize_keeping_end(self, texts: list[str], *, add_special_tokens: bool, max_length: int) -> list[list[int]]:
        plain = self.tokenizer(texts, add_special_tokens=False, truncation=False)["input_ids"]
        if not add_special_tokens:
            return [row[-max_length:] for row in plain]
        before, after = self._special_tokens()
        room = max(0, max_length - len(before) - len(after))
        return [before + (row[-room:] if room else []) + after for row in plain]

    def chat_template(self, requested: str | None = None, tools: list | None = None) -> str:
        """The template a chat request renders with: ``requested`` (a trusted request's own template, or the name
        of one of the model's templates), else the model's (NoChatTemplate without one). Rendering happens in
        :mod:`.chat`, never here."""
        if requested is None and not self.facts.has_chat_template:
            raise NoChatTemplate(f"The model {self.facts.path} has no chat template in its tokenizer config: send "
                                 f"`input` (strings) instead of `messages`.")
        try:
            return self.tokenizer.get_chat_template(requested, tools)
        except ValueError as exc:
            raise NoChatTemplate(str(exc)) from exc

    @property
    def special_tokens(self) -> dict:
        """The tokenizer's special tokens, which transformers hands every chat template (``bos_token`` ...)."""
        return dict(self.tokenizer.special_tokens_map)

    # --- encoding ----------------------------------------------------------------------------------------

    def _forward(self, ids: list[list[int]]) -> np.ndarray:
        torch = self._torch
        width = max(len(row) for row in ids)
        input_ids = torch.zeros((len(ids), width), dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        pad = getattr(self.tokenizer, "pad_token_id", None) or 0
        if pad:
            input_ids.fill_(pad)
        for i, row in enumerate(ids):
            input_ids[i, :len(row)] = torch.tensor(row, dtype=torch.long)
            mask[i, :len(row)] = 1
        features = {"input_ids": input_ids, "attention_mask": mask}
        if self._needs_token_types:
            features["token_type_ids"] = torch.zeros_like(input_ids)
        with torch.inference_mode():
            for module in self._modules:
                features = module(features)
        return features["sentence_embedding"].float().numpy()

    def encode_ids(self, ids: list[list[int]], checkpoint=None) -> np.ndarray:
        """Pooled embeddings before any normalisation (float32, one row per id list, in order), encoded in
        length-sorted chunks. :func:`.protocol.finish_embeddings` normalises them as the request asks.
        ``checkpoint()`` runs before each chunk and layer; whatever it raises stops the encoding."""
        if not ids:
            return np.zeros((0, self.facts.dim), dtype=np.float32)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out = np.empty((len(ids), self.facts.dim), dtype=np.float32)
        self._step.checkpoint = checkpoint
        try:
            for part in length_chunks([len(ids[i]) for i in order], self.chunk):
                if checkpoint is not None:
                    checkpoint()
                rows = [order[i] for i in part]
                out[rows] = self._forward([ids[i] for i in rows])
        finally:
            self._step.checkpoint = None
        return out

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """Direct in-process encoding with the same code path (for benchmarks and tests), normalised as the model
        does by default."""
        raw = self.encode_ids(self.tokenize(texts, max_length=self.facts.max_model_len))
        if not self.facts.normalize or not raw.size:
            return raw
        return raw / np.maximum(np.linalg.norm(raw, axis=1, keepdims=True), np.float32(1e-12))
