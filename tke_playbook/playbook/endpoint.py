"""The endpoint a deployment answers on, on either target: URL, served model name and a hidden API key.

``ServiceEndpoint.client()`` gives an :class:`~tke_playbook.embed.http.EmbeddingClient`; ``curl(text)`` runs the
tutorial's ``curl`` request and returns the answer. Neither the repr nor anything printed holds the key.
"""

from __future__ import annotations

import html
import json
import math
import shutil
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from ..embed.api import error_for
from ..embed.http import EmbeddingClient
from ..errors import EmbeddingAPIError, EndpointGoneError, InvalidSpecError
from .state import mask_secret

TUTORIAL_INPUT = "用Python实现快速排序算法"
CURL_CONNECT_FAILURES = {6: "could not resolve the host", 7: "could not connect", 52: "got an empty reply",
                         56: "lost the connection"}
GONE_HINT = "the server is gone: run 03_deploy_vllm (or pb.endpoint() to get the current endpoint)"


@dataclass
class ServiceEndpoint:
    """Where the embedding service answers. ``kind``: ``local-process``, ``load-balancer`` or ``port-forward``."""

    url: str
    model: str
    kind: str
    api_key: str | None = field(default=None, repr=False)
    note: str = ""
    _closer: Any = field(default=None, repr=False)

    @property
    def masked_key(self) -> str:
        return mask_secret(self.api_key)

    def _repr_html_(self) -> str:
        rows = [("URL", self.url), ("served model", self.model), ("kind", self.kind),
                ("API key", self.masked_key)] + ([("note", self.note)] if self.note else [])
        cells = "".join(f'<tr><th style="text-align:left;padding-right:14px">{k}</th>'
                        f'<td style="text-align:left">{html.escape(str(v))}</td></tr>' for k, v in rows)
        return f'<table class="tke-playbook-endpoint">{cells}</table>'

    def gone(self, why: str = "nothing answers") -> EndpointGoneError:
        """The error for an endpoint nobody answers on any more (stopped by cleanup or a redeploy)."""
        return EndpointGoneError(f"{self.url} {why}: {GONE_HINT}", obj=self.url)

    def check(self, timeout: float = 5.0) -> "ServiceEndpoint":
        """This endpoint when its server answers /health; EndpointGoneError (with what to run) otherwise."""
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=timeout):
                return self
        except urllib.error.HTTPError:
            return self  # something answers (an error page is still an answer)
        except (urllib.error.URLError, OSError, ValueError):
            raise self.gone("does not answer") from None

    def client(self, **options: Any):
        """An EmbeddingClient for this endpoint (prompts from the catalog for the served model); raises
        EndpointGoneError when the server is gone."""
        self.check()
        return EmbeddingClient(self.url, self.model, self.api_key, **options)

    def curl_command(self, text: str = TUTORIAL_INPUT, *, reveal: bool = False) -> list[str]:
        """The tutorial's request as a curl argument list; the key is masked unless ``reveal``."""
        key = self.api_key if reveal else "$VLLM_API_KEY"
        body = json.dumps({"model": self.model, "input": text}, ensure_ascii=False)
        command = ["curl", "-sS", "-X", "POST", f"{self.url}/v1/embeddings", "-H", "Content-Type: application/json"]
        if self.api_key:
            command += ["-H", f"Authorization: Bearer {key}"]
        return command + ["-d", body]

    def curl_text(self, text: str = TUTORIAL_INPUT) -> str:
        """The request as you would type it in a shell, one option per line as in the tutorial. The key is
        ``$VLLM_API_KEY``, in double quotes so the shell expands it; everything else is single-quoted."""
        parts = self.curl_command(text)
        lines, i = [" ".join(_quote(p) for p in parts[:parts.index("-X") + 3])], parts.index("-X") + 3
        while i < len(parts):
            option, value = parts[i], parts[i + 1]
            shown = f'"{value}"' if "$VLLM_API_KEY" in value else _quote(value)
            lines.append(f"  {option} {shown}")
            i += 2
        return " \\\n".join(lines)

    def curl(self, text: str = TUTORIAL_INPUT, timeout: float = 60.0) -> dict:
        """Run the tutorial's curl request and return the parsed answer (raises EmbeddingAPIError on an error)."""
        if not isinstance(text, str) or not text.strip():
            raise InvalidSpecError("The text to embed is empty: type a sentence in the box", field="text",
                                   value=text)
        if shutil.which("curl") is None:
            raise EmbeddingAPIError("curl is not installed: install it (apt-get install curl) or use "
                                    "endpoint.client().embed(...) instead", obj=self.url)
        command = self.curl_command(text, reveal=True) + ["-w", "\n%{http_code}", "--max-time", str(int(timeout))]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout + 5)
        body, _, status = done.stdout.rpartition("\n")
        if done.returncode in CURL_CONNECT_FAILURES:
            raise self.gone(f"{CURL_CONNECT_FAILURES[done.returncode]} (curl exit {done.returncode})")
        if done.returncode != 0:
            raise EmbeddingAPIError(f"curl could not reach {self.url}: {done.stderr.strip()}", obj=self.url)
        try:
            answer = json.loads(body)
        except json.JSONDecodeError:
            answer = {"raw": body}
        if not status.startswith("2"):
            error = error_for(int(status or 0), answer, f"{self.url}/v1/embeddings")
            if error.status == 400:
                error = type(error)(f"{error.message}: shorten the text (the model reads at most max_model_len "
                                    "tokens) or fix the request", status=error.status, body=answer, obj=self.url)
            raise error
        return answer

    def close(self) -> None:
        if self._closer is not None:
            self._closer.close()


def _quote(part: str) -> str:
    """``part`` as a shell word: bare when it is plain, else in single quotes."""
    if part.replace("-", "").replace("/", "").isalnum():
        return part
    return "'" + part.replace("'", "'\\''") + "'"


def describe_embedding_answer(answer: dict) -> dict:
    """The parts of an /v1/embeddings answer worth showing: model, vector count and size, the vector's length
    (1.0 when the model normalises), usage. Raw values say nothing to a reader: 04 shows the nearest sentences."""
    data = answer.get("data") or []
    first = (data[0].get("embedding") if data else None) or []
    return {"model": answer.get("model"), "vectors": len(data), "dimension": len(first),
            "norm": round(math.fsum(float(v) * float(v) for v in first) ** 0.5, 4), "usage": answer.get("usage")}
