"""Hub tokens for private models, never printed: read from the environment by
:func:`tke_playbook.hostenv.token_from_env` (local) or from a Secret in the pod (cluster)."""

from __future__ import annotations

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


def reveal(token) -> str | None:
    """The plain value of a HubToken or str (None stays None)."""
    if token is None:
        return None
    return token.reveal() if isinstance(token, HubToken) else (str(token).strip() or None)
