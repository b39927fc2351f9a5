"""The contract between downloading and serving: when is a model folder complete, and are its files still intact.

State lives BESIDE the model folder, never in it: for ``.../intfloat/e5-mistral-7b-instruct`` the toolkit keeps
``.../intfloat/.tke-playbook/e5-mistral-7b-instruct/`` (manifest, marker, download progress). A hub listing names
paths inside the model folder only (``..`` is refused), so no listing can name or overwrite the toolkit's state.

The completion rule (:func:`completeness_problem`; :func:`is_complete` / :func:`require_complete`): the marker
``COMPLETE`` holds the sha256 of ``manifest.json``'s bytes, the manifest parses, and every file it lists is a
regular file of its recorded size. :func:`verify_folder` adds a re-hash of every file. Serving on both targets
uses the same rule: the local server through :func:`require_complete`, the vLLM init container by running this
very file (:func:`readiness_command`). Standard library only: shipped to download pods and init containers.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import json
import os
import stat
import sys
import time
import uuid
from pathlib import Path

STATE_DIR = ".tke-playbook"
MANIFEST_NAME = "manifest.json"
MARKER_NAME = "COMPLETE"
MARKER_PREFIX = "complete sha256:"
HASH_BLOCK = 8 << 20
TRUSTED = "trusted (not checked against a hub)"


def _abs(folder) -> Path:
    return Path(os.path.abspath(os.fspath(folder)))


def state_path(folder: str | os.PathLike) -> Path:
    """The toolkit's state for ``folder``: ``<parent>/.tke-playbook/<folder name>`` (outside the model folder)."""
    path = _abs(folder)
    return path.parent / STATE_DIR / path.name


def manifest_path(folder: str | os.PathLike) -> Path:
    return state_path(folder) / MANIFEST_NAME


def marker_path(folder: str | os.PathLike) -> Path:
    return state_path(folder) / MARKER_NAME


# --- reading files that a listing, a copy or another process may have replaced -----------------------------
# A model folder and its state are written by other processes (workers, other tools, the user). Every read here
# checks the type of what it opens before reading: a symlink (to /dev/zero, or a folder leading outside), a FIFO
# (which blocks until a writer comes) or a device would otherwise hang the reader or never end. Reads are bounded
# by the size the manifest lists, or by MAX_STATE_BYTES for the toolkit's own JSON.

MAX_STATE_BYTES = 256 << 20  # a manifest or plan of a 20,000-file repository is a few MB
MAX_MARKER_BYTES = 4096
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)


class NotRegularFile(OSError):
    """What was opened is not a regular file (a folder, a FIFO, a device, a socket)."""


def _kind(mode: int) -> str:
    for test, word in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symlink")):
        if test(mode):
            return word
    return "not a regular file"


def _regular(fd: int, name) -> tuple[int, os.stat_result]:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise NotRegularFile(errno.EINVAL, f"is {_kind(st.st_mode)}, not a regular file", str(name))
    return fd, st


def open_regular(path) -> tuple[int, os.stat_result]:
    """(fd, stat) of the regular file ``path``, opened read-only, never through a symlink at its last component
    and never blocking (a FIFO is refused, not waited on). OSError otherwise (NotRegularFile for a folder, FIFO,
    device or socket)."""
    return _regular(os.open(path, _READ_FLAGS | _NOFOLLOW), path)


def open_in_folder(folder, rel: str) -> tuple[int, os.stat_result]:
    """(fd, stat) of the regular file ``folder/rel`` reached without following any symlink below ``folder``
    (each folder on the way is opened with O_NOFOLLOW, so a symlinked subfolder leading elsewhere is refused)."""
    parts = rel.split("/")
    if os.open not in os.supports_dir_fd:  # not Linux: the last component at least
        return open_regular(os.path.join(folder, *parts))
    dir_fd = os.open(folder, _DIR_FLAGS)
    try:
        for part in parts[:-1]:
            inner = os.open(part, _DIR_FLAGS | _NOFOLLOW, dir_fd=dir_fd)
            os.close(dir_fd)
            dir_fd = inner
        fd = os.open(parts[-1], _READ_FLAGS | _NOFOLLOW, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)
    return _regular(fd, rel)


def os_problem(exc: OSError) -> str:
    """An OSError from the functions above, in words: 'is missing', 'is a symlink ...', 'is a FIFO, ...'."""
    if isinstance(exc, NotRegularFile):
        return exc.strerror
    if isinstance(exc, FileNotFoundError):
        return "is missing"
    if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
        return "is a symlink, or lies in a symlinked folder (only plain files and folders count)"
    return f"cannot be read ({exc.strerror or exc})"


def read_bounded(fd: int, limit: int) -> bytes:
    """At most ``limit`` bytes from ``fd``; ValueError when there are more."""
    chunks, got = [], 0
    while got <= limit:
        block = os.read(fd, min(HASH_BLOCK, limit + 1 - got))
        if not block:
            break
        chunks.append(block)
        got += len(block)
    if got > limit:
        raise ValueError(f"larger than {limit} bytes")
    return b"".join(chunks)


def read_small(path, limit: int = MAX_STATE_BYTES) -> bytes:
    """The bytes of the regular file ``path`` (no symlink, FIFO or device), at most ``limit``; OSError or
    ValueError otherwise."""
    fd, st = open_regular(path)
    try:
        if st.st_size > limit:
            raise ValueError(f"{path} has {st.st_size} bytes, more than {limit}")
        return read_bounded(fd, limit)
    finally:
        os.close(fd)


def parse_json(raw: bytes | str):
    """JSON from the toolkit's own files; ValueError (never RecursionError) for anything malformed, however deep."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError("nested too deeply to be the toolkit's JSON") from None


def hash_fd(fd: int, size: int, on_bytes=None) -> tuple[str, str, int]:
    """(sha256, git blob sha1 for ``size`` bytes, bytes read) of an open file, reading at most ``size + 1`` bytes:
    a file that grew or shrank gives hashes that match nothing listed, and never an endless read."""
    sha256, sha1 = hashlib.sha256(), hashlib.sha1(b"blob %d\0" % size)
    got = 0
    while got <= size:
        block = os.read(fd, min(HASH_BLOCK, size + 1 - got))
        if not block:
            break
        got += len(block)
        sha256.update(block)
        sha1.update(block)
        if on_bytes is not None:
            on_bytes(len(block))
    return sha256.hexdigest(), sha1.hexdigest(), got


def hash_file(path, size: int | None = None, on_bytes=None) -> tuple[str, str]:
    """(sha256, git blob sha1) of a regular file in one pass, reading at most ``size`` (default: its size) plus
    one byte; the git id is sha1(b"blob <size>\\0" + content). OSError for a symlink, FIFO, device or folder."""
    fd, st = open_regular(path)
    try:
        sha256, sha1, _ = hash_fd(fd, st.st_size if size is None else size, on_bytes)
    finally:
        os.close(fd)
    return sha256, sha1


def _inside(rel) -> bool:
    parts = rel.split("/") if isinstance(rel, str) else [""]
    return bool(rel) and not rel.startswith("/") and all(p not in ("", ".", "..") for p in parts)


def _manifest_files(manifest) -> list[dict]:
    files = manifest.get("files") if isinstance(manifest, dict) else None
    return files if isinstance(files, list) else []


def entry_problem(entry) -> str | None:
    """What is malformed in one manifest entry (a dict with a relative ``path`` inside the folder and a size)."""
    rel, size = (entry.get("path"), entry.get("size")) if isinstance(entry, dict) else (None, None)
    if not _inside(rel) or "\0" in rel or type(size) is not int or size < 0:
        return f"a malformed entry {entry!r:.120}"
    return None


def file_problem(folder: Path, rel: str, size: int) -> str | None:
    """None when ``folder/rel`` is a regular file of ``size`` bytes reached through no symlink; else what is wrong."""
    try:
        fd, st = open_in_folder(folder, rel)
    except OSError as exc:
        return f"{rel} {os_problem(exc)} {'from' if isinstance(exc, FileNotFoundError) else 'in'} {folder}"
    os.close(fd)
    if st.st_size != size:
        return f"{rel} has {st.st_size} bytes, the manifest recorded {size}"
    return None


def _completion_record(path: Path) -> tuple[dict | list, str | None]:
    """(manifest, problem): the manifest when the marker names its sha256; else the problem in words."""
    try:
        marker = read_small(marker_path(path), MAX_MARKER_BYTES).decode("utf-8").strip()
        raw = read_small(manifest_path(path))
        manifest = parse_json(raw)
    except OSError as exc:
        return {}, f"the completion record of {path} {os_problem(exc)}"
    except ValueError as exc:
        return {}, f"the completion record of {path} cannot be read ({type(exc).__name__}: {exc})"
    if marker != MARKER_PREFIX + hashlib.sha256(raw).hexdigest():
        return {}, f"the completion marker of {path} does not match its manifest (a download changed it since)"
    files = manifest.get("files", []) if isinstance(manifest, dict) else None
    if not isinstance(files, list):
        return {}, f"the manifest of {path} lists no files"
    return manifest, None


def _complete_manifest(folder) -> tuple[dict, str | None]:
    """(manifest, None) when ``folder`` is complete by the rule above; else ({}, what is wrong, in words)."""
    path = _abs(folder)
    if path.exists() and not path.is_dir():
        return {}, f"{path} is a file, not a model folder"
    if not path.is_dir():
        return {}, f"model folder {path} does not exist"
    if not os.path.lexists(marker_path(path)):
        return {}, f"model folder {path} has no completion marker ({marker_path(path)})"
    manifest, problem = _completion_record(path)
    if problem is not None:
        return {}, problem
    for entry in _manifest_files(manifest):
        problem = entry_problem(entry)
        if problem is not None:
            return {}, f"the manifest of {path} holds {problem}"
        problem = file_problem(path, entry["path"], entry["size"])
        if problem is not None:
            return {}, problem
    return manifest, None


def completeness_problem(folder: str | os.PathLike) -> str | None:
    """None when ``folder`` is complete by the rule above; else what is wrong, in words. Every file it looks at
    is checked for its type before it is opened: nothing here can block or read without end."""
    return _complete_manifest(folder)[1]


def is_complete(folder: str | os.PathLike) -> bool:
    return completeness_problem(folder) is None


def read_manifest(folder: str | os.PathLike) -> dict:
    """The manifest beside ``folder`` (a regular file, bounded, however it is nested); OSError or ValueError."""
    return parse_json(read_small(manifest_path(folder)))


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_completion(folder: str | os.PathLike, manifest: dict) -> Path:
    """Write the manifest, then the marker naming the manifest's sha256, each atomically. Several workers may
    finish together: each writes its own temporary files, and a writer that finds the manifest changed under
    its marker writes the marker again, so the last marker always matches the last manifest."""
    state = state_path(folder)
    state.mkdir(parents=True, exist_ok=True)
    _atomic_write(manifest_path(folder), json.dumps(manifest, indent=2, sort_keys=True).encode())
    for _ in range(20):
        digest = hashlib.sha256(read_small(manifest_path(folder))).hexdigest()
        _atomic_write(marker_path(folder), f"{MARKER_PREFIX}{digest}\n".encode())
        if hashlib.sha256(read_small(manifest_path(folder))).hexdigest() == digest:
            break
    return marker_path(folder)


def clear_completion(folder: str | os.PathLike) -> None:
    """Forget that a folder was complete: the marker first, then the manifest."""
    for path in (marker_path(folder), manifest_path(folder)):
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def require_complete(folder: str | os.PathLike) -> Path:
    """Return the folder if it is complete by the rule above; otherwise raise IncompleteModelError."""
    from ..errors import IncompleteModelError  # imported here so download pods need only this file

    path = Path(folder)
    problem = completeness_problem(path)
    if problem is None:
        return path
    if path.exists() and not path.is_dir():
        raise IncompleteModelError(f"{path} is a file, not a model folder: give the folder holding the model's files",
                                   obj=path)
    if not path.is_dir():
        raise IncompleteModelError(
            f"Model folder {path} does not exist: download the model first (notebook 02_download_model), "
            f"or check the PVC path.", obj=path)
    if not os.path.lexists(marker_path(path)):
        raise IncompleteModelError(
            f"Model folder {path} has no completion marker ({marker_path(path)}): the download has not finished "
            f"or was not verified. Wait for the download to complete, or run it again - it resumes; for files "
            f"fetched by other means run 'tke-playbook verify --adopt {path}'.", obj=path)
    raise IncompleteModelError(f"Model folder {path} is not complete: {problem}. Run the download again (it keeps "
                               f"every intact file), or 'tke-playbook verify {path}' for details.", obj=path)


def verify_folder(folder: str | os.PathLike, on_progress=None) -> dict:
    """Re-hash every file of a complete folder against its manifest. ``on_progress(done_bytes, total_bytes, path)``
    after each block. Returns {'files', 'bytes', 'checks': {check: count}}; raises IncompleteModelError or
    VerificationError (naming the first bad file, also one replaced, removed or turned into a folder, FIFO or
    symlink while verify runs). Each file is opened once, checked for its type and read up to its listed size."""
    from ..errors import VerificationError  # here, as above: download pods need only this file

    path = require_complete(folder)
    manifest, problem = _complete_manifest(path)  # the manifest the check above accepted (read once more)
    if problem is not None:
        require_complete(path)
    files = _manifest_files(manifest)
    total, done, checks = sum(f["size"] for f in files), [0], {}
    for entry in files:
        rel, size = entry["path"], entry["size"]

        def advance(n, rel=rel):
            done[0] += n
            if on_progress is not None:
                on_progress(done[0], total, rel)

        try:
            fd, st = open_in_folder(path, rel)
        except OSError as exc:
            raise VerificationError(f"{rel} {os_problem(exc)}: it changed while verify ran; run the download again "
                                    f"(it fetches only what is damaged)", obj=rel) from None
        try:
            sha256, sha1, got = hash_fd(fd, size, advance) if st.st_size == size else ("", "", st.st_size)
        finally:
            os.close(fd)
        if got != size:
            raise VerificationError(f"{rel} has {f'more than {size}' if got > size else got} bytes, the download "
                                    f"recorded {size}: the file changed after it was verified; run the download "
                                    f"again (it fetches only what is damaged)", obj=rel)
        for key, value in (("sha256", sha256), ("git_sha1", sha1)):
            if entry.get(key) and entry[key] != value:
                raise VerificationError(f"{rel}: {key} is {value}, the download recorded {str(entry[key]):.80}: the "
                                        f"file changed after it was verified; run the download again (it fetches "
                                        f"only what is damaged)", obj=rel)
        check = entry.get("check") if isinstance(entry.get("check"), str) else "sha256"
        checks[check] = checks.get(check, 0) + 1
    return {"folder": str(path), "files": len(files), "bytes": total, "checks": checks}


def readiness_command(folder: str, timeout_s: int, every_s: int = 10, python: str = "python3") -> list[str]:
    """The argv an init container runs to wait until ``folder`` (a path inside the container) is complete:
    this module's own source under ``python -c``, so the container applies exactly :func:`completeness_problem`."""
    source = Path(__file__).read_text(encoding="utf-8")
    return [python, "-c", source, "wait", folder, "--timeout", str(int(timeout_s)), "--every", str(int(every_s))]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="modelfolder", description="Is a model folder complete?")
    parser.add_argument("action", choices=("check", "wait"))
    parser.add_argument("folder")
    parser.add_argument("--timeout", type=int, default=7200)
    parser.add_argument("--every", type=int, default=10)
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.timeout
    while True:
        problem = completeness_problem(args.folder)
        if problem is None:
            print(f"model folder {args.folder} is complete", flush=True)
            return 0
        if args.action == "check" or time.monotonic() >= deadline:
            print(f"not ready after {args.timeout}s: {problem}. Run the download Job, or adopt files fetched by "
                  f"other means (tke-playbook verify --adopt)" if args.action == "wait" else problem, flush=True)
            return 1
        print(f"waiting for the model download to finish: {problem}", flush=True)
        time.sleep(max(1, args.every))


if __name__ == "__main__":
    sys.exit(main())
