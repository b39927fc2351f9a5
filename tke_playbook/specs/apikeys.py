"""The one rule for API keys, wherever a key enters: an environment variable, a key file, the playbook's key store,
``serve --api-key-file``, a generated key.

An API key travels as ``Authorization: Bearer <key>`` (RFC 6750's b64token), is written into the auth proxy's
nginx configuration and into a Secret. A key with a trailing newline would be stored in the Secret with it, and
then no client could ever send the right key; a one-character key is guessed at once. So a key is checked here,
once, with :data:`API_KEY_RULE`, before it is stored or used.

Key files (``serve --api-key-file``, the playbook's ``secrets/<name>``) are read by :func:`read_key_file` only:
a regular file (never a FIFO or a device, which would block or never end), small, readable by its owner alone
(as ssh insists for private keys), holding one key and at most one line ending.

The pods' ``api-key-revision`` annotation restarts them when the key changes. It must tell nothing about the key,
even a weak one, so it is an HMAC under a random salt that never leaves this machine (:func:`key_revision`,
:func:`annotation_salt`): nothing in the rendered YAML can be computed from a guessed key.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import stat
from pathlib import Path

from ..errors import InvalidSpecError
from .files import open_user_file, read_fd
from .target import state_dir

KEY_MIN_LENGTH = 16          # 16 characters of a bearer token: far beyond guessing over the network
KEY_MAX_LENGTH = 4096        # one HTTP header line stays well under nginx's 8 KiB buffers
KEY_BYTES = 24               # secrets.token_urlsafe(24): 32 characters
_BEARER_TOKEN = re.compile(r"[A-Za-z0-9._~+/-]+=*")  # RFC 6750 b64token (used with fullmatch: no "$" before "\n")
API_KEY_RULE = (f"an API key is {KEY_MIN_LENGTH} to {KEY_MAX_LENGTH} characters of letters, digits and '-._~+/' "
                f"('=' only at the end), with no spaces, newlines or other control characters")
GENERATE_HINT = "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(24))'"
KEY_FILE_MAX_BYTES = KEY_MAX_LENGTH + 2  # the key and one line ending
SALT_FILE = ".api-key-annotation-salt"   # not a valid Secret name, so no key file can have it
SALT_BYTES = 32
KEY_STORE = "secrets"                    # <state_dir>/secrets: the local stand-in for Secrets, 0700


def api_key_problem(key) -> str | None:
    """What is wrong with ``key`` by :data:`API_KEY_RULE`, in words that never repeat the key; None when it is
    fine."""
    if not isinstance(key, str):
        return f"is a {type(key).__name__}, not a string"
    if not key:
        return "is empty"
    if key[-1] in "\r\n":
        return "ends with a line break"
    if any(ch.isspace() for ch in key):
        return "contains whitespace"
    if any(ord(ch) < 32 or ord(ch) == 127 or not ch.isprintable() for ch in key):
        return "contains a control character"
    if not _BEARER_TOKEN.fullmatch(key):
        return "contains characters a bearer token cannot hold"
    if len(key) < KEY_MIN_LENGTH:
        return f"has {len(key)} character{'s' if len(key) != 1 else ''}, too short to resist guessing"
    if len(key) > KEY_MAX_LENGTH:
        return f"has {len(key)} characters, more than fit one request header"
    return None


def check_api_key(key, where: str = "The API key") -> str:
    """``key`` if it follows :data:`API_KEY_RULE`; else InvalidSpecError "<where> <problem>: <rule>; generate
    ...", one line that never shows the key."""
    problem = api_key_problem(key)
    if problem is not None:
        raise InvalidSpecError(f"{where} {problem}: {API_KEY_RULE}; {GENERATE_HINT}", field="api_key",
                               value="<hidden>")
    return key


def generate_api_key() -> str:
    """A new random key (32 URL-safe characters), which always follows the rule."""
    return check_api_key(secrets.token_urlsafe(KEY_BYTES), "A generated API key")


def read_key_file(path, where: str | None = None) -> str:
    """The key in the file ``path``, checked: a regular file, at most :data:`KEY_FILE_MAX_BYTES`, not readable
    by group or others (like ssh with private keys: "permissions 0644 for 'FILE' are too open: chmod 600 FILE"),
    UTF-8, one key followed by at most one line ending. ``where`` names it in messages (default: the path)."""
    path = Path(os.path.expanduser(os.fspath(path)))
    where = where or str(path)
    fd, st = open_user_file(path, where, "api_key_file")
    if st.st_mode & 0o077:
        os.close(fd)
        raise InvalidSpecError(f"permissions {stat.S_IMODE(st.st_mode):04o} for '{path}' are too open: "
                               f"chmod 600 {path}", field="api_key_file", value=str(path))
    data = read_fd(fd, st, where, "api_key_file", KEY_FILE_MAX_BYTES)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidSpecError(f"{where} is not text: put the key in it as one line", field="api_key_file",
                               value=str(path)) from None
    for ending in ("\r\n", "\n"):  # one line ending, as editors and `echo KEY > FILE` write it
        if text.endswith(ending):
            text = text[:-len(ending)]
            break
    if not text:
        raise InvalidSpecError(f"{where} is empty: put the key in it", field="api_key_file", value=str(path))
    return check_api_key(text, f"The key in {where}")


def write_key_file(path, key: str) -> Path:
    """Write ``key`` (checked) to ``path`` atomically, mode 0600 in a 0700 folder."""
    check_api_key(key)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(key + "\n")
    os.replace(tmp, path)
    return path


def key_store_dir(root=None) -> Path:
    """The folder of the local key files and the annotation salt: ``<root or state_dir()>/secrets``."""
    return Path(root if root is not None else state_dir()) / KEY_STORE


def _read_salt(path: Path) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            salt = fh.read(SALT_BYTES + 1)
    except FileNotFoundError:
        return None
    return salt if len(salt) == SALT_BYTES else None


def annotation_salt(folder=None) -> bytes:
    """The secret salt of :func:`key_revision`, kept in ``folder`` (default: :func:`key_store_dir`, 0700) as a 0600
    file and made on first use. It never appears in rendered YAML."""
    folder = Path(folder) if folder is not None else key_store_dir()
    path = folder / SALT_FILE
    salt = _read_salt(path)
    if salt is not None:
        return salt
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    tmp = folder / f"{SALT_FILE}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(secrets.token_bytes(SALT_BYTES))
    try:
        if os.path.lexists(path):
            os.replace(tmp, path)  # a damaged salt: a new one (the pods restart once)
        else:
            os.link(tmp, path)  # the first writer wins: two kernels starting at once agree on one salt
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    salt = _read_salt(path)
    if salt is None:
        raise InvalidSpecError(f"{path} does not hold {SALT_BYTES} bytes: remove it and run again (a new salt is "
                               f"made)", field="key_salt", value=str(path))
    return salt


def key_revision(api_key: str, salt: bytes) -> str:
    """What the pods' annotation holds for ``api_key``: HMAC-SHA256 under the secret ``salt``, shortened. The same
    key and salt give the same value (no needless restart); another key gives another; without the salt nothing
    about the key can be learnt from it."""
    if not isinstance(salt, bytes) or len(salt) < 16:
        raise InvalidSpecError("The annotation salt must be at least 16 random bytes, kept secret",
                               field="key_salt", value="<hidden>")
    return hmac.new(salt, api_key.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


__all__ = ["API_KEY_RULE", "KEY_MIN_LENGTH", "annotation_salt", "api_key_problem", "check_api_key",
           "generate_api_key", "key_revision", "key_store_dir", "read_key_file", "write_key_file"]
