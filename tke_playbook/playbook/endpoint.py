"""The endpoint a deployment answers on, on either target: URL, served model name and a hidden API key.

``ServiceEndpoint.client()`` gives an :class:`~tke_playbook.embed.http.EmbeddingClient`; ``curl(text)`` runs the
tutorial's ``curl`` request and returns the answer. Neither the repr nor anything printed holds the key.
"""

from __future__ import annotations

import html
import json
import math
import os
import platform
import shlex
import shutil
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..embed.api import build_rerank_body, error_for
from ..embed.http import EmbeddingClient
from ..errors import EmbeddingAPIError, EndpointGoneError, InvalidSpecError
from ..specs.serving import API_KEY_SECRET_KEY
from ..specs.target import Target
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

    def curl_command(self, text: str = TUTORIAL_INPUT, *, reveal: bool = False, path: str = "/v1/embeddings",
                     body: dict | None = None) -> list[str]:
        """The tutorial's request as a curl argument list (or ``body`` sent to ``path``); the key is masked unless
        ``reveal``."""
        key = self.api_key if reveal else "$VLLM_API_KEY"
        body = json.dumps(body if body is not None else {"model": self.model, "input": text}, ensure_ascii=False)
        command = ["curl", "-sS", "-X", "POST", f"{self.url}{path}", "-H", "Content-Type: application/json"]
        if self.api_key:
            command += ["-H", f"Authorization: Bearer {key}"]
        return command + ["-d", body]

    def curl_text(self, text: str = TUTORIAL_INPUT, key_from: str = "", *, path: str = "/v1/embeddings",
                  body: dict | None = None) -> str:
        """The request as you would type it in a shell, one option per line as in the tutorial. The key is
        ``$VLLM_API_KEY``, in double quotes so the shell expands it; everything else is single-quoted.
        ``key_from`` (e.g. :func:`api_key_source`) is a first line that sets the variable without showing it."""
        if key_from and self.api_key and self.api_key in key_from:
            raise InvalidSpecError("key_from must read the key (from its file or Secret), never hold it",
                                   field="key_from", value="<hidden>")
        head = f"{key_from}\n" if key_from and self.api_key else ""
        return head + self._curl_lines(text, path, body)

    def rerank_curl_text(self, query: str, documents, key_from: str = "", *, top_n: int | None = None) -> str:
        """vLLM's ``/rerank`` request for ``query`` and ``documents`` in the same shell form as :meth:`curl_text`
        (vLLM answers it for an embedding model too, scoring each pair by the cosine of their vectors)."""
        body = build_rerank_body(self.model, query, list(documents), top_n)
        return self.curl_text(key_from=key_from, path="/rerank", body=body)

    def _curl_lines(self, text: str, path: str = "/v1/embeddings", body: dict | None = None) -> str:
        parts = self.curl_command(text, path=path, body=body)
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


def describe_embedding_answer(answer: dict, first: int = 4) -> pd.DataFrame:
    """An /v1/embeddings answer as a short table to read: the served model, how many vectors and their dimension,
    the first vector's length (1.0 when the model normalises) and its first ``first`` values, and the tokens the
    server counted. Empty fields (``prompt_tokens_details: None``) are left out."""
    if not isinstance(answer, dict):
        raise InvalidSpecError(f"an embeddings answer is a JSON object, not {type(answer).__name__}: pass what "
                               "endpoint.curl() returned", field="answer", value=type(answer).__name__)
    data = answer.get("data") or []
    vector = [float(v) for v in ((data[0].get("embedding") if data else None) or [])]
    norm = math.fsum(v * v for v in vector) ** 0.5
    usage = answer.get("usage") or {}
    prompt, total = usage.get("prompt_tokens"), usage.get("total_tokens")
    tokens = "not reported" if prompt is None else f"{prompt} prompt tokens" + (
        f" ({total} in total)" if total not in (None, prompt) else "")
    rows = [("served model", answer.get("model") or "not reported"), ("vectors", len(data)),
            ("dimension", len(vector)),
            ("length (L2 norm)", f"{norm:.4f}" + (" - normalised" if vector and abs(norm - 1) < 1e-3 else "")),
            ("first values", ", ".join(f"{v:+.3f}" for v in vector[:first])
             + (f" (first {first} of {len(vector)})" if len(vector) > first else "")),
            ("tokens", tokens)]
    return pd.DataFrame({"value": [str(v) for _, v in rows]}, index=[k for k, _ in rows])


def api_key_source(pb, model: str = "") -> str:
    """A shell line that puts the deployment's API key into ``$VLLM_API_KEY`` without showing it: read from the
    key file locally, from the Secret on a cluster. Empty when the deployment needs no key (or none is
    deployed)."""
    spec = pb.deployed_spec(model)
    if spec is None or not spec.api_key_required:
        return ""
    if Target(pb.target) is Target.LOCAL:
        return f'export VLLM_API_KEY="$(cat {shlex.quote(str(pb.secrets.path(spec.api_key_secret)))})"'
    return (f'export VLLM_API_KEY="$(kubectl get secret {spec.api_key_secret} -n {spec.namespace} '
            f"-o jsonpath='{{.data.{API_KEY_SECRET_KEY}}}' | base64 -d)\"")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith("model name") and ":" in line:
                return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "CPU"


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def measured_on(pb) -> str:
    """What served the endpoint's numbers, for a figure's title: locally this machine's CPU (the local server
    runs here, whatever node type 00 chose); on a cluster the node type chosen in 00 and its GPUs."""
    if Target(pb.target) is Target.LOCAL:
        return f"this machine's CPU ({_cpu_name()}, {_cores()} cores), local server"
    node = pb.node_type()
    if node is None:
        return "the cluster's serving node"
    return f"{node.name} ({node.gpu_count} x {node.gpu.name})" if node.gpu else f"{node.name} (CPU)"
