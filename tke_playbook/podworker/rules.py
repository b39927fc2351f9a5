"""One validation of a hub's file listing, at planning time, before any byte is written.

A listing is the hub's word, not ours: every entry must name a plain relative path inside the model folder (no
``.``/``..``/empty components, no absolute path, no NUL or control character, components of at most 255 bytes and
paths of at most 1024, never the toolkit's state folder name), one size that is a whole number between 0 and
1 TiB, and hashes that look like hashes (sha256: 64 hex digits; git blob sha1: 40). A path may not be both a file
and a folder, and a path listed twice must say the same thing both times. Every error names the hub, the file
and what is wrong. Standard library only: shipped to download pods beside the worker.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

try:
    from .modelfolder import STATE_DIR
    from .transfer import HubError
except ImportError:  # running from the ConfigMap in a download pod
    from modelfolder import STATE_DIR
    from transfer import HubError

MAX_FILE_BYTES = 1 << 40          # 1 TiB: no model file is larger; 2**64 or 10**15 are lies
MAX_TOTAL_BYTES = 16 << 40
MAX_FILES = 100_000
MAX_COMPONENT_BYTES = 255         # NAME_MAX on Linux (and CFS/NFS)
MAX_PATH_BYTES = 1024
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_HEX40 = re.compile(r"^[0-9a-fA-F]{40}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

CHECK_SHA256, CHECK_SHA1, CHECK_NONE = "sha256", "git-sha1", "none (allowed by --allow-unverified)"


@dataclass(frozen=True)
class RepoFile:
    """One file of a hub repository: ``sha256`` (LFS files, ModelScope) or ``blob_id`` (Hugging Face git blob sha1
    of a non-LFS file); ``check`` says which one verifies it."""

    path: str
    size: int
    sha256: str | None = None
    blob_id: str | None = None

    @property
    def check(self) -> str:
        return CHECK_SHA256 if self.sha256 else CHECK_SHA1 if self.blob_id else CHECK_NONE

    @property
    def expected(self) -> str | None:
        return self.sha256 or self.blob_id

    def as_dict(self) -> dict:
        """The fields as a plain dict (what ``dataclasses.asdict`` gives, without its deep copy: a 20,000-file
        plan is converted several times)."""
        return {"path": self.path, "size": self.size, "sha256": self.sha256, "blob_id": self.blob_id}


def path_problem(path) -> str | None:
    """What is wrong with a listed path, or None."""
    if not isinstance(path, str):
        return f"a path that is not text ({type(path).__name__})"
    if not path:
        return "an empty path"
    if "\x00" in path:
        return "a NUL character in the path"
    if _CONTROL.search(path):
        return "a control character in the path"
    if "\\" in path:
        return "a backslash in the path"
    if path.startswith("/"):
        return "an absolute path"
    try:
        encoded = path.encode("utf-8")
    except UnicodeEncodeError:
        return "a path that is not valid UTF-8"
    if len(encoded) > MAX_PATH_BYTES:
        return f"a path of {len(encoded)} bytes (at most {MAX_PATH_BYTES})"
    for part in path.split("/"):
        if part in ("", "."):
            return "an empty or '.' path component"
        if part == "..":
            return "a '..' component (it would leave the model folder)"
        if len(part.encode("utf-8")) > MAX_COMPONENT_BYTES:
            return f"a path component of {len(part.encode('utf-8'))} bytes (at most {MAX_COMPONENT_BYTES})"
        if part.casefold() == STATE_DIR.casefold():
            return f"the toolkit's own state folder name '{STATE_DIR}'"
    return None


def size_problem(size) -> str | None:
    if size is None:
        return "no size (null)"
    if isinstance(size, bool) or not isinstance(size, int):
        return f"a size that is not a whole number ({size!r:.40})"
    if size < 0:
        return f"a negative size ({size})"
    if size > MAX_FILE_BYTES:
        return f"an absurd size ({size} bytes; at most {MAX_FILE_BYTES})"
    return None


def _digest(value, pattern, what: str):
    """(normalised digest or None, problem or None)."""
    if value in (None, ""):
        return None, None
    if not isinstance(value, str) or not pattern.fullmatch(value):
        return None, f"a malformed {what} ({value!r:.80})"
    return value.lower(), None


def check_entry(entry, where: str) -> RepoFile:
    """One listing entry (a dict with path, size, sha256, blob_id) as a RepoFile, or a HubError."""
    if not isinstance(entry, dict):
        raise HubError(f"{where} lists an entry that is not an object ({entry!r:.80}): the listing is refused and "
                       f"nothing was written", obj=repr(entry)[:80])
    path = entry.get("path")
    problem = path_problem(path)
    if problem is None:
        problem = size_problem(entry.get("size"))
    sha256, bad256 = _digest(entry.get("sha256"), _HEX64, "sha256")
    sha1, bad1 = _digest(entry.get("blob_id"), _HEX40, "git blob sha1")
    problem = problem or bad256 or bad1
    if problem:
        shown = path if isinstance(path, str) else repr(path)
        raise HubError(f"{where} lists {shown!r:.300} with {problem}: the listing is refused and nothing was "
                       f"written", obj=shown)
    return RepoFile(path, entry["size"], sha256, sha1)


def check_listing(entries, where: str) -> list[RepoFile]:
    """Validate every entry and the listing as a whole; the files sorted by path."""
    if not isinstance(entries, list):
        raise HubError(f"{where} answered with a malformed listing (not a list of files): check that the endpoint "
                       f"is a model hub or a mirror of one", obj=where)
    if len(entries) > MAX_FILES:
        raise HubError(f"{where} lists {len(entries)} files (at most {MAX_FILES}): the listing is refused", obj=where)
    files: dict[str, RepoFile] = {}
    for entry in entries:
        f = check_entry(entry, where)
        seen = files.get(f.path)
        if seen is not None and seen != f:
            raise HubError(f"{where} lists {f.path!r} twice with different sizes or hashes ({seen.size} and "
                           f"{f.size} bytes): the listing is refused and nothing was written", obj=f.path)
        files[f.path] = f
    for path in files:
        parts = path.split("/")
        for i in range(1, len(parts)):
            folder = "/".join(parts[:i])
            if folder in files:
                raise HubError(f"{where} lists {folder!r} both as a file and as a folder (of {path!r}): the listing "
                               f"is refused and nothing was written", obj=folder)
    if not files:
        raise HubError(f"{where} lists no files: check the model id and revision", obj=where)
    total = sum(f.size for f in files.values())
    if total > MAX_TOTAL_BYTES:
        raise HubError(f"{where} lists {total} bytes in all (at most {MAX_TOTAL_BYTES}): the listing is refused",
                       obj=where)
    return sorted(files.values(), key=lambda f: f.path)


def require_hashes(files, where: str, allow_unverified: bool) -> None:
    """Every file to fetch must have a hash the hub stands behind, unless the user opted in."""
    if allow_unverified:
        return
    bare = [f.path for f in files if not f.expected]
    if bare:
        raise HubError(f"{where} lists no sha256 or git sha1 for {bare[0]!r}" + (f" and {len(bare) - 1} more file(s)"
                       if len(bare) > 1 else "") + ": such a file cannot be verified. Exclude it, or accept "
                       "unverified files with --allow-unverified (DownloadSpec(allow_unverified=True))", obj=bare[0])
