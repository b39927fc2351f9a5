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
import hashlib
import json
import os
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


def hash_file(path, size: int | None = None, on_bytes=None) -> tuple[str, str]:
    """(sha256, git blob sha1) of a file in one pass; the git id is sha1(b"blob <size>\\0" + content)."""
    size = os.stat(path).st_size if size is None else size
    sha256, sha1 = hashlib.sha256(), hashlib.sha1(b"blob %d\0" % size)
    with open(path, "rb") as fh:
        while block := fh.read(HASH_BLOCK):
            sha256.update(block)
            sha1.update(block)
            if on_bytes is not None:
                on_bytes(len(block))
    return sha256.hexdigest(), sha1.hexdigest()


def _inside(rel) -> bool:
    parts = rel.split("/") if isinstance(rel, str) else [""]
    return bool(rel) and not rel.startswith("/") and all(p not in ("", ".", "..") for p in parts)


def _manifest_files(manifest) -> list[dict]:
    files = manifest.get("files") if isinstance(manifest, dict) else None
    return files if isinstance(files, list) else []


def completeness_problem(folder: str | os.PathLike) -> str | None:
    """None when ``folder`` is complete by the rule above; else what is wrong, in words."""
    path = _abs(folder)
    if path.exists() and not path.is_dir():
        return f"{path} is a file, not a model folder"
    if not path.is_dir():
        return f"model folder {path} does not exist"
    if not marker_path(path).is_file():
        return f"model folder {path} has no completion marker ({marker_path(path)})"
    try:
        raw = manifest_path(path).read_bytes()
        manifest = json.loads(raw)
        marker = marker_path(path).read_text(encoding="utf-8").strip()
    except (OSError, ValueError) as exc:
        return f"the completion record of {path} cannot be read ({type(exc).__name__}: {exc})"
    if marker != MARKER_PREFIX + hashlib.sha256(raw).hexdigest():
        return f"the completion marker of {path} does not match its manifest (a download changed it since)"
    for entry in _manifest_files(manifest):
        rel, size = (entry.get("path"), entry.get("size")) if isinstance(entry, dict) else (None, None)
        if not _inside(rel) or not isinstance(size, int):
            return f"the manifest of {path} holds a malformed entry {entry!r:.120}"
        target = path / rel
        if not target.is_file() or target.is_symlink():
            return f"{rel} is missing from {path}"
        if target.stat().st_size != size:
            return f"{rel} has {target.stat().st_size} bytes, the manifest recorded {size}"
    return None


def is_complete(folder: str | os.PathLike) -> bool:
    return completeness_problem(folder) is None


def read_manifest(folder: str | os.PathLike) -> dict:
    return json.loads(manifest_path(folder).read_text(encoding="utf-8"))


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
        digest = hashlib.sha256(manifest_path(folder).read_bytes()).hexdigest()
        _atomic_write(marker_path(folder), f"{MARKER_PREFIX}{digest}\n".encode())
        if hashlib.sha256(manifest_path(folder).read_bytes()).hexdigest() == digest:
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
    if not marker_path(path).is_file():
        raise IncompleteModelError(
            f"Model folder {path} has no completion marker ({marker_path(path)}): the download has not finished "
            f"or was not verified. Wait for the download to complete, or run it again - it resumes; for files "
            f"fetched by other means run 'tke-playbook verify --adopt {path}'.", obj=path)
    raise IncompleteModelError(f"Model folder {path} is not complete: {problem}. Run the download again (it keeps "
                               f"every intact file), or 'tke-playbook verify {path}' for details.", obj=path)


def verify_folder(folder: str | os.PathLike, on_progress=None) -> dict:
    """Re-hash every file of a complete folder against its manifest. ``on_progress(done_bytes, total_bytes, path)``
    after each block. Returns {'files', 'bytes', 'checks': {check: count}}; raises IncompleteModelError or
    VerificationError (naming the first bad file)."""
    from ..errors import VerificationError  # here, as above: download pods need only this file

    path = require_complete(folder)
    files = _manifest_files(read_manifest(path))
    total, done, checks = sum(f["size"] for f in files), [0], {}
    for entry in files:
        def advance(n, rel=entry["path"]):
            done[0] += n
            if on_progress is not None:
                on_progress(done[0], total, rel)

        sha256, sha1 = hash_file(path / entry["path"], entry["size"], advance)
        for key, got in (("sha256", sha256), ("git_sha1", sha1)):
            if entry.get(key) and entry[key] != got:
                raise VerificationError(f"{entry['path']}: {key} is {got}, the download recorded {entry[key]}: the "
                                        f"file changed after it was verified; run the download again (it fetches "
                                        f"only what is damaged)", obj=entry["path"])
        checks[entry.get("check", "sha256")] = checks.get(entry.get("check", "sha256"), 0) + 1
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
