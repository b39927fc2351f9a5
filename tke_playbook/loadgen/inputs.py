"""Deterministic inputs of a chosen length in tokens, and the request bodies that carry them.

A text of about N tokens is N words drawn (seeded) from common short English words, each of which is one token
in the BERT/XLM-R WordPiece and the Mistral/Qwen BPE vocabularies. The tokenizer adds its special tokens (one to
three: [CLS]/[SEP], <s>, </s>), so the server's count is N plus a few. This is an approximation: the records keep
the requested length as ``input_tokens`` and the server's ``usage.prompt_tokens`` as the truth.
"""

from __future__ import annotations

import json
import math
import random

from ..errors import InvalidSpecError

WORDS = ("the of and to in is was for on that with as by at from it an be this are or his had not but which one "
         "have all were they her she there been if more when will would who so no time day man way year work "
         "life hand part place case week point world home water room area money story fact month lot night "
         "end city book eye job word side kind head house game line car law name team war door").split()


def make_text(tokens: int, variant: int = 0) -> str:
    """About ``tokens`` tokens of English words; ``variant`` picks another deterministic text of that length."""
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
        raise InvalidSpecError(f"input length {tokens!r} must be a whole number of tokens, at least 1",
                               field="input_tokens", value=tokens)
    rng = random.Random(tokens * 1_000_003 + variant)
    return " ".join(rng.choice(WORDS) for _ in range(tokens))


def build_body(model: str | None, texts: list[str]) -> dict:
    """An embeddings request asking for base64 (smaller answers, less client work than float lists)."""
    body: dict = {"input": texts[0] if len(texts) == 1 else texts, "encoding_format": "base64"}
    if model:
        body["model"] = model
    return body


def encoded_bodies(model: str | None, tokens: int, *, batch_size: int = 1, variants: int = 16) -> list[bytes]:
    """``variants`` distinct pre-encoded request bodies of ``batch_size`` texts of about ``tokens`` tokens each.

    Distinct texts keep a server from answering repeats from a cache; requests cycle through them.
    """
    if batch_size < 1:
        raise InvalidSpecError(f"batch_size {batch_size} must be at least 1", field="batch_size", value=batch_size)
    bodies = []
    for v in range(variants):
        texts = [make_text(tokens, v * batch_size + k) for k in range(batch_size)]
        bodies.append(json.dumps(build_body(model, texts), ensure_ascii=False, separators=(",", ":")).encode())
    return bodies


def check_levels(values, what: str, *, kind=int) -> list:
    """A non-empty list of positive numbers (concurrency levels, rates, input lengths)."""
    items = [values] if isinstance(values, (int, float)) and not isinstance(values, bool) else list(values)
    if not items or any(isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0 for v in items):
        raise InvalidSpecError(f"{what} must be positive numbers, got {values!r}: pass e.g. [1, 4, 16, 64]",
                               field=what, value=values)
    if kind is int and any(int(v) != v for v in items):
        raise InvalidSpecError(f"{what} must be whole numbers, got {values!r}", field=what, value=values)
    return [kind(v) for v in items]


def check_range(value, what: str, low: float, high: float, example, *, whole: bool = False,
                low_inclusive: bool = False) -> float | int:
    """A finite number (not a bool) in ``(low, high]`` (``[low, high]`` with ``low_inclusive``), whole if asked;
    otherwise one line naming the field and the allowed range."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(float(value)) and \
        (value >= low if low_inclusive else value > low) and value <= high and (not whole or int(value) == value)
    if not ok:
        kind = "a whole number" if whole else "a number"
        opening = "[" if low_inclusive else "("
        raise InvalidSpecError(f"{what} {value!r} must be {kind} in {opening}{low:g}, {high:g}], such as {example}",
                               field=what, value=value)
    return int(value) if whole else float(value)
