"""Embed one shard of a corpus through an embeddings endpoint and write the vectors as ``.npy`` - resumable,
verified, standard library only.

One code path for both targets: each pod of the embedding Job runs this file from its ConfigMap (shard =
``JOB_COMPLETION_INDEX``), talking to the deployed service; the local target runs the same file as processes
talking to the local server. The plan (``embed-plan.json``) names the corpus folder on the volume, its chunk shards
(``chunks/shard-NNNNN.jsonl``: one ``{"id", "text"}`` per line, with each shard's rows and sha256), the endpoint,
the served model, the document prompt, batch size and requests in flight, and the output folder.

* The input shard is checked against its sha256 before a request is sent.
* Vectors go to ``.state/shard-NNNNN.partial.npy`` (a float32 ``.npy`` whose header is written first, rows written
  in place as batches return, up to ``concurrency`` requests in flight); ``.state/shard-NNNNN.json`` records the
  rows synced to disk, so a killed worker resumes from there.
* A finished shard is hashed and moved to ``shard-NNNNN.npy`` beside its record ``shard-NNNNN.json`` (rows,
  dimensions, sha256, the input's sha256, the plan key). A rerun keeps every shard whose record matches (same plan
  key, input and size) and redoes only what is missing.
* The last shard to finish re-hashes every output against its record and writes ``manifest.json`` (shards in
  order, rows, sha256), printing it as one ``TKE-EMBED-MANIFEST {json}`` line for whoever reads the pod log.
* Transient failures (429, 5xx, dropped connections, timeouts) are retried with backoff; 400 fails naming the
  chunk; 401 says the key is wrong.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.client
import json
import os
import random
import socket
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

try:
    from .progress import read_json, write_json
    from .transfer import log
    from .worker import die_with_parent
except ImportError:  # running from the ConfigMap in a pod
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from progress import read_json, write_json
    from transfer import log
    from worker import die_with_parent

PLAN_FORMAT = 1
MANIFEST = "manifest.json"
MARKER = "TKE-EMBED-MANIFEST "
SHARD_MARKER = "TKE-EMBED-SHARD "
API_KEY_ENV = "TKE_EMBED_API_KEY"
RUNNING, DONE, FAILED = "running", "done", "failed"
RETRYABLE = {429, 500, 502, 503, 504}
NETWORK = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError, socket.timeout)
HASH_BLOCK = 1 << 22


class EmbedError(Exception):
    """A shard cannot be embedded: the message says why and what to do."""


class Retry(Exception):
    pass


# --- .npy, written by hand -------------------------------------------------------------------------------------


def npy_header(rows: int, dim: int) -> bytes:
    """The header of a little-endian float32 C-order ``.npy`` (format 1.0) of ``rows`` × ``dim``."""
    text = f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {dim}), }}"
    pad = 64 - (10 + len(text) + 1) % 64
    body = (text + " " * pad + "\n").encode("latin-1")
    return b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(HASH_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


# --- paths ------------------------------------------------------------------------------------------------------


class Layout:
    """Where shard ``index`` of a plan reads and writes, under the volume ``root``."""

    def __init__(self, plan: dict, root, index: int):
        self.plan, self.index = plan, index
        self.corpus = Path(root) / plan["corpus"]
        self.out = self.corpus / plan["output"]
        self.shard = plan["shards"][index]
        name = f"shard-{index:05d}"
        self.input = self.corpus / self.shard["file"]
        self.final, self.record = self.out / f"{name}.npy", self.out / f"{name}.json"
        self.partial, self.state = self.out / ".state" / f"{name}.partial.npy", self.out / ".state" / f"{name}.json"


def record_matches(layout: Layout, record: dict | None) -> bool:
    """Our record says this shard's output is the plan's (same key, input and rows) and the file is the one
    recorded (same size and mtime: a changed file is checked again by its hash at the end)."""
    if not record or record.get("key") != layout.plan["key"] or record.get("input_sha256") != layout.shard["sha256"]:
        return False
    try:
        st = os.stat(layout.final)
    except FileNotFoundError:
        return False
    return record.get("rows") == layout.shard["rows"] and [st.st_size, st.st_mtime_ns] == record.get("stat")


# --- the endpoint -----------------------------------------------------------------------------------------------


def _post(url: str, body: dict, api_key: str | None, timeout: float) -> dict:
    data = json.dumps(body).encode("utf-8")
    headers = {"Content-Type": "application/json", "User-Agent": "tke-playbook-embed/1"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers), timeout=timeout) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:400].decode("utf-8", errors="replace")
        exc.close()
        if exc.code in RETRYABLE:
            raise Retry(f"HTTP {exc.code}") from None
        if exc.code == 401:
            raise EmbedError(f"the endpoint refused the API key (HTTP 401): check the Secret / ${API_KEY_ENV}") \
                from None
        raise EmbedError(f"HTTP {exc.code}: {detail}") from None
    except ValueError as exc:  # a body cut short is not JSON
        raise Retry(f"unreadable answer ({exc})") from None


def embed_batch(texts: list[str], first_id: str, opts) -> list[bytes]:
    """The float32 little-endian bytes of each text's vector, retried on transient failures."""
    plan = opts.plan
    body = {"model": plan["model"], "input": texts, "encoding_format": "base64"}
    url = plan["endpoint"].rstrip("/") + "/v1/embeddings"
    for attempt in range(opts.retries + 1):
        try:
            answer = _post(url, body, opts.api_key, opts.timeout)
            rows = sorted(answer["data"], key=lambda item: item["index"])
            return [base64.b64decode(row["embedding"]) for row in rows]
        except (Retry, *NETWORK) as exc:
            if attempt == opts.retries:
                raise EmbedError(f"giving up on the batch starting at chunk {first_id!r} after {opts.retries} "
                                 f"retries: {type(exc).__name__}: {exc}") from exc
            delay = min(opts.max_backoff, opts.backoff * 2 ** attempt) * (0.5 + random.random())
            log(opts.index, f"{type(exc).__name__}: {exc}; retry {attempt + 1}/{opts.retries} in {delay:.1f}s")
            time.sleep(delay)
        except EmbedError as exc:
            raise EmbedError(f"the batch starting at chunk {first_id!r} was refused: {exc}") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise EmbedError(f"the endpoint's answer is not an embeddings list ({type(exc).__name__}: {exc})") \
                from None
    raise AssertionError("unreachable")


# --- one shard --------------------------------------------------------------------------------------------------


def _batches(layout: Layout, start_row: int, size: int, prompt: str):
    """(first row, ids, texts) of each batch from ``start_row`` on, reading the shard line by line."""
    ids, texts, first = [], [], start_row
    with open(layout.input, encoding="utf-8") as fh:
        for row, line in enumerate(fh):
            if row < start_row:
                continue
            item = json.loads(line)
            ids.append(str(item["id"]))
            texts.append(prompt.format(text=item["text"]))
            if len(texts) == size:
                yield first, ids, texts
                first, ids, texts = row + 1, [], []
    if texts:
        yield first, ids, texts


class ShardWriter:
    """The partial ``.npy`` of one shard: rows written in place, the synced prefix recorded in the state file."""

    def __init__(self, layout: Layout):
        self.layout = layout
        state = read_json(layout.state) or {}
        same = state.get("key") == layout.plan["key"] and state.get("input_sha256") == layout.shard["sha256"]
        self.done = int(state.get("rows_done", 0)) if same and layout.partial.exists() else 0
        self.dim = int(state["dim"]) if same and state.get("dim") else None
        self.fd = None
        self.finished: dict[int, int] = {}  # first row -> rows of a batch written after the synced prefix

    def open(self, dim: int) -> None:
        if self.dim not in (None, dim):
            raise EmbedError(f"the endpoint now returns {dim}-dimensional vectors, {self.dim} before: the model "
                             "changed - delete the output folder and run again")
        self.dim = dim
        self.layout.partial.parent.mkdir(parents=True, exist_ok=True)
        header = npy_header(self.layout.shard["rows"], dim)
        self.fd = os.open(self.layout.partial, os.O_RDWR | os.O_CREAT, 0o644)
        os.pwrite(self.fd, header, 0)
        os.ftruncate(self.fd, len(header) + 4 * dim * self.layout.shard["rows"])
        self.base = len(header)

    def write(self, first: int, vectors: list[bytes]) -> None:
        if self.fd is None:
            self.open(len(vectors[0]) // 4)
        if any(len(v) != 4 * self.dim for v in vectors):
            raise EmbedError(f"the endpoint returned vectors of mixed sizes (expected {self.dim} floats)")
        os.pwrite(self.fd, b"".join(vectors), self.base + 4 * self.dim * first)
        self.finished[first] = len(vectors)
        while self.done in self.finished:
            self.done += self.finished.pop(self.done)

    def save(self, status: str, error: str | None = None) -> None:
        if self.fd is not None:
            os.fsync(self.fd)
        layout = self.layout
        write_json(layout.state, {"key": layout.plan["key"], "input_sha256": layout.shard["sha256"],
                                  "index": layout.index, "rows": layout.shard["rows"], "rows_done": self.done,
                                  "dim": self.dim, "status": status, "error": error, "host": socket.gethostname(),
                                  "updated": time.time()})

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _embed_rows(writer: ShardWriter, opts) -> None:
    layout, plan = writer.layout, opts.plan
    last_save, in_flight = time.monotonic(), {}
    with ThreadPoolExecutor(max_workers=plan["concurrency"]) as pool:
        batches = _batches(layout, writer.done, plan["batch"], plan.get("document_prompt") or "{text}")
        for first, ids, texts in batches:
            while len(in_flight) >= plan["concurrency"]:
                _land(wait(in_flight, return_when=FIRST_COMPLETED).done, in_flight, writer)
            in_flight[pool.submit(embed_batch, texts, ids[0], opts)] = first
            if time.monotonic() - last_save > 1.0:
                writer.save(RUNNING)
                last_save = time.monotonic()
        while in_flight:
            _land(wait(in_flight, return_when=FIRST_COMPLETED).done, in_flight, writer)
    writer.save(RUNNING)


def _land(done, in_flight: dict, writer: ShardWriter) -> None:
    for future in done:
        first = in_flight.pop(future)
        writer.write(first, future.result())


def _check_input(layout: Layout) -> None:
    try:
        digest = sha256_file(layout.input)
    except FileNotFoundError:
        raise EmbedError(f"{layout.shard['file']} is missing from the corpus folder: stage the corpus again") \
            from None
    if digest != layout.shard["sha256"]:
        raise EmbedError(f"{layout.shard['file']} changed since the plan was made (sha256 {digest[:12]}, planned "
                         f"{layout.shard['sha256'][:12]}): stage the corpus and plan again")


def embed_shard(layout: Layout, opts) -> dict:
    """Embed (or keep) one shard; its record."""
    record = read_json(layout.record)
    if record_matches(layout, record):
        log(layout.index, f"{layout.shard['file']}: {record['rows']} rows already embedded, kept")
        return record
    _check_input(layout)
    writer = ShardWriter(layout)
    if writer.done:
        log(layout.index, f"resuming at row {writer.done} of {layout.shard['rows']}")
    try:
        writer.save(RUNNING)
        if writer.done < layout.shard["rows"]:
            _embed_rows(writer, opts)
        if writer.fd is None:  # everything was synced before a kill: open to finish
            writer.fd = os.open(layout.partial, os.O_RDWR)
        writer.save(RUNNING)
    except EmbedError as exc:
        writer.save(FAILED, str(exc))
        raise
    finally:
        writer.close()
    return _publish(layout, writer.dim)


def _publish(layout: Layout, dim: int) -> dict:
    layout.out.mkdir(parents=True, exist_ok=True)
    digest = sha256_file(layout.partial)
    os.replace(layout.partial, layout.final)
    st = os.stat(layout.final)
    record = {"index": layout.index, "file": layout.final.name, "rows": layout.shard["rows"], "dim": dim,
              "sha256": digest, "input_sha256": layout.shard["sha256"], "key": layout.plan["key"],
              "stat": [st.st_size, st.st_mtime_ns]}
    write_json(layout.record, record)
    write_json(layout.state, {"key": layout.plan["key"], "input_sha256": layout.shard["sha256"],
                              "index": layout.index, "rows": layout.shard["rows"], "rows_done": layout.shard["rows"],
                              "dim": dim, "status": DONE, "error": None, "updated": time.time()})
    print(SHARD_MARKER + json.dumps(record), flush=True)
    log(layout.index, f"{layout.shard['rows']} rows embedded ({dim} dims), sha256 {digest[:12]}")
    return record


# --- the manifest -----------------------------------------------------------------------------------------------


def finish_embedding(plan: dict, root, index) -> dict | None:
    """When every shard has its record: re-hash each output against it and write the manifest (once)."""
    layouts = [Layout(plan, root, i) for i in range(len(plan["shards"]))]
    records = [read_json(layout.record) for layout in layouts]
    waiting = [i for i, (layout, r) in enumerate(zip(layouts, records)) if not record_matches(layout, r)]
    if waiting:
        log(index, f"waiting for shard(s) {waiting[:10]} before the manifest")
        return None
    manifest_path = layouts[0].out / MANIFEST
    manifest = read_json(manifest_path)
    if manifest and manifest.get("key") == plan["key"] and [s["sha256"] for s in manifest["shards"]] == \
            [r["sha256"] for r in records]:
        return manifest
    for layout, record in zip(layouts, records):
        if sha256_file(layout.final) != record["sha256"]:
            layout.record.unlink(missing_ok=True)
            raise EmbedError(f"{layout.final.name} does not match its recorded sha256: it was changed or damaged; "
                             "run again (that shard is embedded anew)")
    manifest = {"format": PLAN_FORMAT, "key": plan["key"], "model": plan["model"], "dim": records[0]["dim"],
                "rows": sum(r["rows"] for r in records), "corpus": plan["corpus"], "output": plan["output"],
                "shards": [{"file": r["file"], "rows": r["rows"], "sha256": r["sha256"],
                            "input": layout.shard["file"]} for layout, r in zip(layouts, records)]}
    write_json(manifest_path, manifest)
    print(MARKER + json.dumps(manifest), flush=True)
    log(index, f"all {len(records)} shards verified: wrote {MANIFEST} ({manifest['rows']} rows)")
    return manifest


class Options:
    """How one worker runs: its shard, the retry policy, the request timeout and the API key."""

    def __init__(self, plan: dict, index, *, retries: int = 5, backoff: float = 0.5, max_backoff: float = 20.0,
                 timeout: float = 120.0, api_key: str | None = None):
        self.plan, self.index, self.retries, self.backoff = plan, index, retries, backoff
        self.max_backoff, self.timeout, self.api_key = max_backoff, timeout, api_key


def check_plan(plan: dict) -> dict:
    if plan.get("format") != PLAN_FORMAT or not plan.get("shards"):
        raise EmbedError(f"not an embedding plan of format {PLAN_FORMAT}: render it again with this toolkit")
    return plan


def run(plan: dict, root, index: int, **options) -> dict | None:
    """Embed shard ``index`` of ``plan`` into ``root``; the manifest when this worker completed the corpus."""
    check_plan(plan)
    if not 0 <= index < len(plan["shards"]):
        raise EmbedError(f"shard {index} does not exist: the plan has {len(plan['shards'])}")
    opts = Options(plan, index, **options)
    embed_shard(Layout(plan, root, index), opts)
    return finish_embedding(plan, root, index)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Embed one shard of a tke-playbook corpus.")
    parser.add_argument("--plan", required=True, help="embed-plan.json")
    parser.add_argument("--root", required=True, help="the volume root; the corpus is <root>/<plan corpus>")
    parser.add_argument("--index", type=int, default=None, help="shard (default $JOB_COMPLETION_INDEX)")
    parser.add_argument("--retries", type=int, default=int(os.environ.get("TKE_EMBED_RETRIES", 5)))
    parser.add_argument("--backoff", type=float, default=float(os.environ.get("TKE_EMBED_BACKOFF", 0.5)))
    parser.add_argument("--timeout", type=float, default=float(os.environ.get("TKE_EMBED_TIMEOUT", 120)))
    parser.add_argument("--parent-pid", type=int, default=int(os.environ.get("TKE_PARENT_PID") or 0))
    args = parser.parse_args(argv)
    die_with_parent(args.parent_pid)
    index = args.index if args.index is not None else int(os.environ.get("JOB_COMPLETION_INDEX", "0"))
    try:
        plan = json.loads(Path(args.plan).read_text(encoding="utf-8"))
        run(plan, args.root, index, retries=args.retries, backoff=args.backoff, timeout=args.timeout,
            api_key=os.environ.get(API_KEY_ENV) or None)
    except (EmbedError, OSError, ValueError, KeyError) as exc:
        print(f"[shard {index}] FAILED: {type(exc).__name__ + ': ' if not isinstance(exc, EmbedError) else ''}{exc}",
              file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
