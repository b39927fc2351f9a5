"""Read a customer's documents: a folder of ``.txt``, ``.md``, ``.html`` and ``.pdf`` files, or one JSONL, CSV/TSV
or Parquet file with an id and a text column (a folder may hold such files too).

Bad input never stops the rest from loading: each file or record that cannot be used becomes one row of the
skipped table (:class:`Skipped`: where, and why in one line saying what to do) and reading goes on. Nothing is
read blindly: a file larger than ``max_doc_bytes`` is skipped from its size alone, and a JSONL line longer than
that is streamed past in blocks, never held in memory. Binary junk (NUL bytes, or text that is not UTF-8) and
PDFs that ``pypdf`` cannot open or that have no text layer are skipped with the reason. Ids are unique: a
repeated id keeps the first record and skips the later ones.

Document ids: a file's path relative to the folder (``guide/intro.md``); a record's own id.
"""

from __future__ import annotations

import csv
import html.parser
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InvalidSpecError

TEXT_KINDS = {".txt": "txt", ".text": "txt", ".md": "md", ".markdown": "md", ".rst": "txt", ".html": "html",
              ".htm": "html", ".pdf": "pdf"}
TABLE_KINDS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet"}
ID_FIELDS = ("id", "_id", "doc_id", "docid", "docno")
TEXT_FIELDS = ("text", "contents", "content", "body", "passage")
TITLE_FIELDS = ("title",)
DEFAULT_MAX_DOC_BYTES = 32 * 2 ** 20
SNIFF_BYTES = 8192
BLOCK = 1 << 20


@dataclass(frozen=True)
class Document:
    """One document: its id, where it came from (a path relative to what was loaded, with ``:line`` for a
    record), its kind, optional title, and its text."""

    doc_id: str
    source: str
    kind: str
    text: str
    title: str = ""


@dataclass(frozen=True)
class Skipped:
    """Something that was not loaded: where, and why (one line saying what to do)."""

    source: str
    reason: str


@dataclass(frozen=True)
class ReadOptions:
    """How to read: the id/text/title columns of tabular files (None: the first of the usual names present) and the
    largest document or record read (bytes)."""

    id_field: str | None = None
    text_field: str | None = None
    title_field: str | None = None
    max_doc_bytes: int = DEFAULT_MAX_DOC_BYTES

    def __post_init__(self) -> None:
        if isinstance(self.max_doc_bytes, bool) or not isinstance(self.max_doc_bytes, int) or self.max_doc_bytes < 1:
            raise InvalidSpecError(f"max_doc_bytes={self.max_doc_bytes!r}: use a positive number of bytes such as "
                                   f"{DEFAULT_MAX_DOC_BYTES}", field="max_doc_bytes", value=self.max_doc_bytes)


@dataclass
class Reading:
    """What a read pass saw: the documents come from :meth:`documents`; ``skipped`` fills as it goes."""

    path: Path
    options: ReadOptions = field(default_factory=ReadOptions)
    skipped: list[Skipped] = field(default_factory=list)
    _seen: dict[str, str] = field(default_factory=dict)

    def skip(self, source: str, reason: str) -> None:
        self.skipped.append(Skipped(source, reason))

    def documents(self) -> Iterator[Document]:
        """Every usable document, in a stable order (sorted paths, records in file order), ids unique."""
        for doc in _walk(self):
            first = self._seen.get(doc.doc_id)
            if first is not None:
                self.skip(doc.source, f"duplicate id {doc.doc_id!r} (first seen at {first}): kept the first; give "
                                      "each document its own id")
                continue
            self._seen[doc.doc_id] = doc.source
            yield doc


def _mb(n: int) -> str:
    for unit, scale in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def _too_big(size: int, options: ReadOptions) -> str:
    return (f"{_mb(size)} is over the {_mb(options.max_doc_bytes)} limit for one document: split it, or raise "
            "max_doc_bytes")


def check_path(path) -> Path:
    """The corpus path as given: an existing folder or a supported file, else one clear error."""
    where = Path(os.fspath(path)).expanduser()
    if not where.exists():
        raise InvalidSpecError(f"{path} does not exist: give a folder of documents or a .jsonl/.csv/.parquet file",
                               field="docs", value=str(path))
    if where.is_file() and where.suffix.lower() not in TABLE_KINDS and where.suffix.lower() not in TEXT_KINDS:
        raise InvalidSpecError(f"{where.name} is not a corpus file: give a folder, or a file ending in "
                               f"{', '.join(sorted(TABLE_KINDS))}", field="docs", value=where.name)
    return where


def _walk(reading: Reading) -> Iterator[Document]:
    root = reading.path
    if root.is_file():
        yield from _read_file(reading, root, root.name)
        return
    for dirpath, dirnames, filenames in os.walk(root):  # symlinked folders are not followed (no loops)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                full = Path(dirpath) / name
                yield from _read_file(reading, full, full.relative_to(root).as_posix())


def _read_file(reading: Reading, path: Path, rel: str) -> Iterator[Document]:
    suffix = path.suffix.lower()
    try:
        size = path.stat().st_size
    except OSError as exc:
        reading.skip(rel, f"cannot be read ({exc.strerror}): check its permissions")
        return
    if suffix in TABLE_KINDS:
        yield from _read_table(reading, path, rel, TABLE_KINDS[suffix])
        return
    if suffix not in TEXT_KINDS:
        reading.skip(rel, f"unsupported file type {suffix or '(none)'!r}: convert it to .txt, .md, .html or .pdf")
        return
    if size == 0:
        reading.skip(rel, "empty file: nothing to index")
        return
    if size > reading.options.max_doc_bytes:
        reading.skip(rel, _too_big(size, reading.options))
        return
    kind = TEXT_KINDS[suffix]
    try:
        title, text = _PARSERS[kind](path)
    except (OSError, ValueError) as exc:
        reading.skip(rel, str(exc) if isinstance(exc, ValueError) else f"cannot be read ({exc}): check the file")
        return
    if not text.strip():
        reading.skip(rel, "no text in it (a scanned PDF has only images: run OCR first)" if kind == "pdf"
                     else "no text in it: nothing to index")
        return
    yield Document(rel, rel, kind, text, title)


def decode_text(data: bytes) -> str:
    """UTF-8 (with or without BOM; UTF-16 with a BOM), else ValueError saying the bytes look binary."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    if b"\x00" in data[:SNIFF_BYTES]:
        raise ValueError("binary data (NUL bytes), not text: convert it to UTF-8 text")
    text = data.decode("utf-8-sig", errors="replace")
    bad = text.count("\ufffd")
    if bad > max(8, len(text) // 100):
        raise ValueError(f"not UTF-8 text ({bad} undecodable bytes): re-save it as UTF-8")
    return text


def _plain(path: Path) -> tuple[str, str]:
    return "", decode_text(path.read_bytes())


class _HTMLText(html.parser.HTMLParser):
    """Visible text of an HTML page (no script/style), with the <title>."""

    SKIP = {"script", "style", "noscript", "template"}
    BREAKS = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "pre"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title: list[str] = []
        self._skip = 0
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self._skip += 1
        self._in_title = self._in_title or tag == "title"
        if tag in self.BREAKS:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in self.SKIP and self._skip:
            self._skip -= 1
        if tag == "title":
            self._in_title = False
        if tag in self.BREAKS:
            self.parts.append("\n")

    def handle_data(self, data):
        if self._in_title:
            self.title.append(data)
        elif not self._skip:
            self.parts.append(data)


def _html(path: Path) -> tuple[str, str]:
    text = decode_text(path.read_bytes())
    parser = _HTMLText()
    for start in range(0, len(text), BLOCK):
        parser.feed(text[start:start + BLOCK])
    parser.close()
    body = "".join(parser.parts)
    lines = [" ".join(line.split()) for line in body.splitlines()]
    return " ".join("".join(parser.title).split()), "\n".join(line for line in lines if line)


def _pdf(path: Path) -> tuple[str, str]:
    import pypdf  # late: only folders with PDFs need it
    from pypdf.errors import PyPdfError

    try:
        reader = pypdf.PdfReader(str(path))
        if reader.is_encrypted and not reader.decrypt(""):
            raise ValueError("an encrypted PDF: save a copy without a password")
        pages = [page.extract_text() or "" for page in reader.pages]
        title = str((reader.metadata or {}).get("/Title") or "")
    except (PyPdfError, KeyError, TypeError, AttributeError, RecursionError, NotImplementedError) as exc:
        raise ValueError(f"pypdf cannot read it ({type(exc).__name__}: {str(exc)[:80]}): re-export the PDF or "
                         "convert it to text") from None
    return title, "\n\n".join(p.strip() for p in pages if p.strip())


_PARSERS = {"txt": _plain, "md": _plain, "html": _html, "pdf": _pdf}


# --- tabular files ------------------------------------------------------------------------------------------


def _pick(names, wanted: str | None, usual: tuple[str, ...], what: str, rel: str) -> str | None:
    names = list(names)
    if wanted is not None:
        if wanted not in names:
            raise ValueError(f"has no {what} column {wanted!r} (columns: {', '.join(map(str, names[:12]))}): pass "
                             f"the right --{what}-field")
        return wanted
    found = next((n for n in usual if n in names), None)
    if found is None and what != "title":
        raise ValueError(f"has no {what} column (looked for {', '.join(usual)}; columns: "
                         f"{', '.join(map(str, names[:12]))}): pass --{what}-field")
    return found


def _record(reading: Reading, row: dict, fields: tuple, where: str, kind: str) -> Document | None:
    id_field, text_field, title_field = fields
    doc_id, text = row.get(id_field), row.get(text_field)
    if doc_id is None or str(doc_id).strip() == "":
        reading.skip(where, f"no id (field {id_field!r} is empty): give every record an id")
        return None
    if not isinstance(text, str):
        reading.skip(where, f"field {text_field!r} is {type(text).__name__}, not text: make it a string")
        return None
    if not text.strip():
        reading.skip(where, "empty text: nothing to index")
        return None
    if len(text) > reading.options.max_doc_bytes:
        reading.skip(where, _too_big(len(text.encode("utf-8")), reading.options))
        return None
    title = row.get(title_field) if title_field else ""
    return Document(str(doc_id), where, kind, text, title if isinstance(title, str) else "")


def _read_table(reading: Reading, path: Path, rel: str, kind: str) -> Iterator[Document]:
    try:
        yield from _TABLES[kind](reading, path, rel, kind)
    except (OSError, ValueError) as exc:
        reading.skip(rel, str(exc) if isinstance(exc, ValueError) else f"cannot be read ({exc}): check the file")


def _lines(path: Path, limit: int) -> Iterator[tuple[int, bytes | None, int]]:
    """(line number, the line or None when longer than ``limit``, its length): an over-long line is read past in
    blocks, never held whole."""
    with open(path, "rb") as fh:
        number = 0
        while True:
            line = fh.readline(limit + 1)
            if not line:
                return
            number += 1
            if len(line) <= limit or line.endswith(b"\n"):
                yield number, line, len(line)
                continue
            length = len(line)
            while not line.endswith(b"\n"):
                line = fh.readline(BLOCK)
                if not line:
                    break
                length += len(line)
            yield number, None, length


def _jsonl(reading: Reading, path: Path, rel: str, kind: str) -> Iterator[Document]:
    fields = None
    for number, line, length in _lines(path, reading.options.max_doc_bytes):
        where = f"{rel}:{number}"
        if line is None:
            reading.skip(where, f"line of {_too_big(length, reading.options)}")
            continue
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            reading.skip(where, f"not valid JSON ({str(exc)[:60]}): fix or remove the line")
            continue
        if not isinstance(row, dict):
            reading.skip(where, f"a JSON {type(row).__name__}, not an object: write one object per line")
            continue
        if fields is None:
            opts = reading.options
            fields = (_pick(row, opts.id_field, ID_FIELDS, "id", rel), _pick(row, opts.text_field, TEXT_FIELDS,
                      "text", rel), _pick(row, opts.title_field, TITLE_FIELDS, "title", rel))
        doc = _record(reading, row, fields, where, kind)
        if doc is not None:
            yield doc


def _bounded_lines(fh, limit: int, on_long) -> Iterator[str]:
    """The lines of a text file; one longer than ``limit`` characters is read past in blocks and reported to
    ``on_long(line number, length)`` instead of being held whole."""
    number = 0
    while True:
        line = fh.readline(limit + 1)
        if not line:
            return
        number += 1
        if len(line) <= limit or line.endswith("\n"):
            yield line
            continue
        length = len(line)
        while line and not line.endswith("\n"):
            line = fh.readline(BLOCK)
            length += len(line)
        on_long(number, length)


def _csv(reading: Reading, path: Path, rel: str, kind: str) -> Iterator[Document]:
    opts = reading.options
    csv.field_size_limit(opts.max_doc_bytes)
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as fh:
        if "\x00" in fh.read(SNIFF_BYTES):
            raise ValueError("binary data (NUL bytes), not CSV text: export it as UTF-8 CSV")
        fh.seek(0)
        lines = _bounded_lines(fh, opts.max_doc_bytes,
                               lambda n, length: reading.skip(f"{rel}:{n}", f"line of {_too_big(length, opts)}"))
        rows = csv.DictReader(lines, delimiter="\t" if kind == "tsv" else ",")
        names = rows.fieldnames or []
        fields = (_pick(names, opts.id_field, ID_FIELDS, "id", rel), _pick(names, opts.text_field, TEXT_FIELDS,
                  "text", rel), _pick(names, opts.title_field, TITLE_FIELDS, "title", rel))
        while True:
            try:
                row = next(rows)
            except StopIteration:
                return
            except csv.Error as exc:
                reading.skip(f"{rel}:{rows.line_num}", f"{exc}: fix the quoting or split the field")
                continue
            doc = _record(reading, row, fields, f"{rel}:{rows.line_num}", kind)
            if doc is not None:
                yield doc


def _parquet(reading: Reading, path: Path, rel: str, kind: str) -> Iterator[Document]:
    import pyarrow.parquet as pq  # late: only Parquet corpora need it

    try:
        table = pq.ParquetFile(str(path))
    except Exception as exc:  # noqa: BLE001 - pyarrow raises its own error types for a damaged file
        raise ValueError(f"not a readable Parquet file ({type(exc).__name__}): re-export it") from None
    opts = reading.options
    names = table.schema_arrow.names
    fields = (_pick(names, opts.id_field, ID_FIELDS, "id", rel), _pick(names, opts.text_field, TEXT_FIELDS, "text",
              rel), _pick(names, opts.title_field, TITLE_FIELDS, "title", rel))
    number = 0
    for batch in table.iter_batches(batch_size=512, columns=[f for f in fields if f]):
        for row in batch.to_pylist():
            number += 1
            doc = _record(reading, row, fields, f"{rel}:{number}", kind)
            if doc is not None:
                yield doc


_TABLES = {"jsonl": _jsonl, "csv": _csv, "tsv": _csv, "parquet": _parquet}

