"""Cut documents into chunks by tokens, with overlap, using the served model's own tokenizer.

Sizes follow the model: a chunk plus the model's document prompt and special tokens fits its ``max_model_len``
(the served value from ``/v1/models`` when there is an endpoint, else the catalog's), capped at
:data:`MAX_CHUNK_TOKENS` (long chunks blur retrieval); the overlap is an eighth of the chunk. Locally that is the
packaged all-MiniLM-L6-v2 tokenizer: 256 tokens, less its two special tokens.

Chunk edges fall on word starts and ends where the tokenizer marks words, so the text of a chunk, tokenized on its
own, gives the same tokens (a cut inside a word would re-tokenize differently and could run past the limit). A
chunk keeps its document and the character offsets of its text in the document's text.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidSpecError, PlaybookError
from ..hostenv import offline_model_dir
from ..specs.catalog import OFFLINE_MODEL, ModelInfo, get_model

MAX_CHUNK_TOKENS = 512
OVERLAP_FRACTION = 8  # overlap = chunk // 8


@dataclass(frozen=True)
class ChunkSettings:
    """How chunks were cut: tokens per chunk, overlap, the tokenizer (by name) and the length it was sized for."""

    chunk_tokens: int
    overlap_tokens: int
    tokenizer: str
    max_model_len: int

    def __post_init__(self) -> None:
        for name in ("chunk_tokens", "max_model_len"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 8:
                raise InvalidSpecError(f"{name}={value!r}: use a whole number of tokens of at least 8, e.g. 256",
                                       field=name, value=value)
        if isinstance(self.overlap_tokens, bool) or not isinstance(self.overlap_tokens, int) or \
                not 0 <= self.overlap_tokens < self.chunk_tokens // 2:
            raise InvalidSpecError(f"overlap_tokens={self.overlap_tokens!r}: use 0 up to half the chunk "
                                   f"({self.chunk_tokens // 2 - 1}), e.g. {self.chunk_tokens // OVERLAP_FRACTION}",
                                   field="overlap_tokens", value=self.overlap_tokens)

    def key(self) -> str:
        return f"{self.tokenizer}|{self.chunk_tokens}|{self.overlap_tokens}"


def _load_tokenizer(tokenizer_dir: Path | None, model: ModelInfo):
    from tokenizers import Tokenizer  # late: loaded by whoever chunks

    try:
        if tokenizer_dir is not None:
            path = Path(tokenizer_dir) / "tokenizer.json"
            if not path.is_file():
                raise InvalidSpecError(f"{tokenizer_dir} has no tokenizer.json: pass the model folder (a fast "
                                       "tokenizer)", field="tokenizer_dir", value=str(tokenizer_dir))
            tok = Tokenizer.from_file(str(path))
        else:
            tok = Tokenizer.from_pretrained(model.hf_id)
    except InvalidSpecError:
        raise
    except Exception as exc:  # noqa: BLE001 - the hub or the file: one clear line either way
        raise PlaybookError(f"No tokenizer for {model.hf_id} here ({type(exc).__name__}): pass tokenizer_dir= (the "
                            "model folder on this machine) or connect to the hub", obj=model.hf_id, cause=exc) from exc
    tok.no_truncation()
    tok.no_padding()
    return tok


class Chunker:
    """Token windows of ``settings.chunk_tokens`` with ``settings.overlap_tokens`` overlap, on word edges."""

    def __init__(self, tokenizer, settings: ChunkSettings):
        self.tokenizer, self.settings = tokenizer, settings

    @classmethod
    def for_model(cls, model: str | ModelInfo = OFFLINE_MODEL, *, tokenizer_dir: str | os.PathLike | None = None,
                  max_model_len: int | None = None, chunk_tokens: int | None = None,
                  overlap_tokens: int | None = None) -> "Chunker":
        """The chunker for ``model``'s tokenizer (``tokenizer_dir``, else the packaged folder for the offline model,
        else the hub), sized by ``max_model_len`` (default: the catalog's)."""
        info = get_model(model)
        if tokenizer_dir is None and info.hf_id == OFFLINE_MODEL:
            tokenizer_dir = offline_model_dir()
        tok = _load_tokenizer(Path(tokenizer_dir) if tokenizer_dir is not None else None, info)
        length = int(max_model_len or info.recommended_max_tokens or info.max_tokens)
        budget = length - len(tok.encode("", add_special_tokens=True).ids) - \
            len(tok.encode(info.format_document(""), add_special_tokens=False).ids)
        if chunk_tokens is not None and chunk_tokens > budget:
            raise InvalidSpecError(f"chunk_tokens={chunk_tokens} is over what {info.short_name} takes ({budget} "
                                   f"tokens of text in max_model_len {length}): use at most {budget}",
                                   field="chunk_tokens", value=chunk_tokens)
        size = int(chunk_tokens or min(budget, MAX_CHUNK_TOKENS))
        overlap = size // OVERLAP_FRACTION if overlap_tokens is None else overlap_tokens
        return cls(tok, ChunkSettings(size, overlap, info.hf_id, length))

    def count(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text on its own (no special tokens)."""
        return [len(e.ids) for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def spans_of(self, encodings) -> list[list[tuple[int, int, int]]]:
        return [windows(e.offsets, e.word_ids, self.settings.chunk_tokens, self.settings.overlap_tokens)
                for e in encodings]

    def spans(self, texts: Sequence[str]) -> list[list[tuple[int, int, int]]]:
        """For each text: ``(start_char, end_char, tokens)`` of every chunk."""
        return self.spans_of(self.tokenizer.encode_batch(list(texts), add_special_tokens=False))


def _word_end(word_ids: Sequence, start: int, end: int) -> int:
    """Move a cut at token ``end`` back to the start of the word it would split (not past ``start + 1``); a word
    that fills the whole window is cut where it is."""

    def inside(i: int) -> bool:
        return word_ids[i] is not None and word_ids[i] == word_ids[i - 1]

    cut = end
    while cut > start + 1 and inside(cut):
        cut -= 1
    return end if inside(cut) else cut


def windows(offsets: Sequence[tuple[int, int]], word_ids: Sequence, size: int,
            overlap: int) -> list[tuple[int, int, int]]:
    """Token windows over one encoded text as ``(start_char, end_char, tokens)``: ``size`` tokens at most, each
    starting ``overlap`` tokens before the previous one ended, edges moved back onto word boundaries."""
    total = len(offsets)
    out, start = [], 0
    while start < total:
        end = min(start + size, total)
        if end < total:
            end = _word_end(word_ids, start, end)
        out.append((offsets[start][0], offsets[end - 1][1], end - start))
        if end >= total:
            break
        nxt = max(end - overlap, start + 1)
        start = _word_end(word_ids, start, nxt) if 0 < nxt < total else nxt
    return out


def served_limits(url: str, api_key: str | None = None, timeout: float = 10.0) -> tuple[str | None, int | None]:
    """``(served model, max_model_len)`` from an endpoint's ``/v1/models`` (as vLLM answers it)."""
    import httpx  # late: only when an endpoint is asked

    from ..embed.api import root_url

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = httpx.get(root_url(url) + "/v1/models", headers=headers, timeout=timeout)
        response.raise_for_status()
        card = (response.json().get("data") or [{}])[0]
    except (httpx.HTTPError, ValueError, AttributeError) as exc:
        raise PlaybookError(f"{url} did not list its model (/v1/models: {type(exc).__name__}): check the URL and "
                            "the API key", obj=url, cause=exc) from exc
    length = card.get("max_model_len")
    return card.get("id"), int(length) if isinstance(length, int) and length > 0 else None


def served_chunker(url: str | None = None, api_key: str | None = None, *, tokenizer_dir=None,
                   chunk_tokens: int | None = None, overlap_tokens: int | None = None) -> Chunker:
    """The chunker for what ``url`` serves: its model's tokenizer (``tokenizer_dir``, the packaged one for the
    offline model, else the hub's) sized by its served ``max_model_len``. Without a URL, or for a model the catalog
    does not know, the packaged all-MiniLM-L6-v2 tokenizer (pass ``tokenizer_dir`` for the real one)."""
    from ..errors import UnknownNameError

    model, length = served_limits(url, api_key) if url else (None, None)
    try:
        info = get_model(model) if model else get_model(OFFLINE_MODEL)
    except UnknownNameError:
        info = get_model(OFFLINE_MODEL)
        length = length if tokenizer_dir is not None else None
    return Chunker.for_model(info, tokenizer_dir=tokenizer_dir, max_model_len=length, chunk_tokens=chunk_tokens,
                             overlap_tokens=overlap_tokens)
