"""Embedders: anything that turns texts into vectors behind one interface (:class:`Embedder`).

``http`` (clients for any OpenAI-compatible ``/v1/embeddings`` endpoint: vLLM, the local server, a cluster LB),
``local`` (the offline model in-process, sentence-transformers on CPU), ``lexical`` (a TF-IDF baseline) and
``api`` (the embeddings API's pure request/response logic the clients share). Imported on first use, so
``import tke_playbook.embed`` loads neither httpx nor torch.
"""

from __future__ import annotations

import importlib

from .base import Embedder

_WHERE = {"EmbeddingClient": "http", "AsyncEmbeddingClient": "http", "LocalEmbedder": "local",
          "LexicalEmbedder": "lexical"}
__all__ = ["AsyncEmbeddingClient", "Embedder", "EmbeddingClient", "LexicalEmbedder", "LocalEmbedder"]


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
