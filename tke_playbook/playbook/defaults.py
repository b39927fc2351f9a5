"""The starting values the forms and the steps share: the tutorial's GPU node type, a model's default length."""

from __future__ import annotations

from ..specs.catalog import get_model

PREFERRED_NODE = "PNV5b.8XLARGE96"  # the tutorial's GPU node type: what a node-type choice starts from


def default_max_model_len(model: str) -> int:
    """The max_model_len a form starts from for ``model``: the tutorial's 2048, capped at the model's limit.
    Call it again when the model changes, so the length follows the model."""
    return min(2048, get_model(model).max_tokens)


def model_id(name: str | None, default: str) -> str:
    """``name`` as a catalog id, or ``default`` when empty."""
    return get_model(name).hf_id if name else default

