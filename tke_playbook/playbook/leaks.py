"""Find API keys and tokens in notebook outputs, so none is ever saved or exported.

:func:`find_secrets` looks at what a notebook shows - stream text, rich outputs (not images), errors and stored
widget state - for known keys and for what keys look like: ``Authorization: Bearer <token>``, ``sk-…``,
``hf_…``, ``token=…`` in URLs and long mixed-case URL-safe strings such as ``secrets.token_urlsafe`` makes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PATTERNS = {
    "bearer token": re.compile(r"Bearer\s+(?![$<{])[A-Za-z0-9._~+/=-]{8,}"),
    "sk- key": re.compile(r"\bsk-[A-Za-z0-9_-]{16,}"),
    "hugging face token": re.compile(r"\bhf_[A-Za-z0-9]{20,}"),
    "token in URL": re.compile(r"[?&](?:token|api_key|apikey)=[A-Za-z0-9._~-]{12,}"),
}
_LONG = re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{32,}(?![A-Za-z0-9_-])")
_SKIP_MIME = ("image/", "application/vnd.jupyter.widget-view+json")


@dataclass(frozen=True)
class Finding:
    """A secret-looking string: where (``cell`` index, or -1 for notebook metadata), what kind, a masked excerpt."""

    cell: int
    kind: str
    excerpt: str


_WIDGET_REF = re.compile(r"^IPY_MODEL_[0-9a-f]+$")  # widget state refers to models by id


def _looks_random(token: str) -> bool:
    if _WIDGET_REF.fullmatch(token):
        return False
    return bool(re.search(r"[A-Z]", token) and re.search(r"[a-z]", token) and re.search(r"\d", token))


def find_in_text(text: str, known: Iterable[str] = ()) -> list[tuple[str, str]]:
    """(kind, masked excerpt) for every secret-looking string in ``text``."""
    found = [("known API key", key[:4] + "…") for key in known if key and key in text]
    for kind, pattern in PATTERNS.items():
        found += [(kind, m.group(0)[:12] + "…") for m in pattern.finditer(text)]
    found += [("long random token", m.group(0)[:4] + "…") for m in _LONG.finditer(text) if _looks_random(m.group(0))]
    return found


def _output_texts(output: dict) -> Iterable[str]:
    if "text" in output:
        yield "".join(output["text"]) if isinstance(output["text"], list) else str(output["text"])
    for mime, value in (output.get("data") or {}).items():
        if not mime.startswith(_SKIP_MIME):
            yield value if isinstance(value, str) else json.dumps(value)
    if output.get("output_type") == "error":
        yield str(output.get("evalue", ""))
        yield "\n".join(output.get("traceback") or [])


def find_secrets(notebook, known: Iterable[str] = ()) -> list[Finding]:
    """Secrets in a notebook's outputs and widget state; ``notebook`` is a path or a loaded notebook dict."""
    if isinstance(notebook, (str, Path)):
        notebook = json.loads(Path(notebook).read_text(encoding="utf-8"))
    known = [k for k in known if k]
    findings = []
    for index, cell in enumerate(notebook.get("cells", [])):
        for output in cell.get("outputs", []) or []:
            for text in _output_texts(output):
                findings += [Finding(index, kind, excerpt) for kind, excerpt in find_in_text(text, known)]
    widgets = (notebook.get("metadata") or {}).get("widgets")
    if widgets:
        findings += [Finding(-1, kind, excerpt) for kind, excerpt in find_in_text(json.dumps(widgets), known)]
    return findings
