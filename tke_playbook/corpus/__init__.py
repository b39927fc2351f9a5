"""Your own documents: read a folder or a JSONL/CSV/Parquet file, cut it into token chunks with the served model's
tokenizer, read queries and relevance labels, embed it in bulk through an endpoint with a resumable cache, and
search it exactly in blocks. The bulk embedding also runs as an Indexed Job on a cluster (or as the same worker in
local processes): :mod:`tke_playbook.corpus.shards` and :mod:`tke_playbook.corpus.bulk`.

    from tke_playbook.corpus import load_corpus, read_queries, read_qrels
    corpus = load_corpus("~/contracts")
    corpus.skipped                                 # what was not loaded, and why
"""

from .chunking import Chunker, ChunkSettings
from .loading import Corpus, corpus_from_documents, load_corpus
from .pydocs import pydoc_queries, pydoc_topics, write_pydoc_corpus
from .queries import label_unit, queries_from_texts, read_qrels, read_queries, write_qrels
from .sources import Document, ReadOptions, Skipped
from .topk import run_from_topk, search_memory_bytes, topk_search
from .vectors import EmbedStats, VectorCache, embed_texts

__all__ = ["Chunker", "ChunkSettings", "Corpus", "corpus_from_documents", "load_corpus", "pydoc_queries",
           "pydoc_topics", "write_pydoc_corpus", "label_unit", "queries_from_texts", "read_qrels", "read_queries",
           "write_qrels", "Document", "ReadOptions", "Skipped", "run_from_topk", "search_memory_bytes", "topk_search",
           "EmbedStats", "VectorCache", "embed_texts"]
