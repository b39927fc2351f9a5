"""Hub tokens for private models: read from the environment (local) or a Secret (cluster), never printed."""

from __future__ import annotations

import os

from .download import Source

TOKEN_ENV_IN_POD = "HUB_TOKEN"


class HubToken:
    """A secret string whose ``repr`` and ``str`` are masked; :meth:`reveal` gives the value to HTTP code."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = str(value).strip()

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "HubToken('***')" if self._value else "HubToken('')"

    __str__ = __repr__

    def __eq__(self, other) -> bool:
        return isinstance(other, HubToken) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("HubToken", self._value))


def token_from_env(source: Source | str, env=None) -> HubToken | None:
    """The token for ``source`` from ``HF_TOKEN`` / ``MODELSCOPE_API_TOKEN`` (or ``HUB_TOKEN``), if set."""
    env = os.environ if env is None else env
    src = Source.parse(source)
    names = (src.token_env, TOKEN_ENV_IN_POD) + (("HUGGING_FACE_HUB_TOKEN",) if src is Source.HUGGINGFACE else ())
    value = next((env[n] for n in names if env.get(n, "").strip()), "")
    return HubToken(value) if value else None


def reveal(token) -> str | None:
    """The plain value of a HubToken or str (None stays None)."""
    if token is None:
        return None
    return token.reveal() if isinstance(token, HubToken) else (str(token).strip() or None)
