"""The one rule for API keys, wherever a key enters: an environment variable, a key file, the playbook's key store,
``serve --api-key-file``, a generated key.

An API key travels as ``Authorization: Bearer <key>`` (RFC 6750's b64token), is written into the auth proxy's
nginx configuration and into a Secret. A key with a trailing newline would be stored in the Secret with it, and
then no client could ever send the right key; a one-character key is guessed at once. So a key is checked here,
once, with :data:`API_KEY_RULE`, before it is stored or used.

Key files (``serve --api-key-file``, the playbook's ``secrets/<name>``) are read by
:func:`tke_playbook.hostenv.read_key_file` only: a regular file (never a FIFO or a device, which would block or never
end), small, readable by its owner alone (as ssh insists for private keys), holding one key and at most one line
ending - :func:`key_in_file_text` is the rule for what the file holds.

The pods' ``api-key-revision`` annotation restarts them when the key changes. It must tell nothing about the key,
even a weak one, so it is an HMAC under a random salt that never leaves this machine (:func:`key_revision`; the salt
is kept by :func:`tke_playbook.hostenv.annotation_salt`): nothing in the rendered YAML can be computed from a guessed
key. This module is pure, like the rest of ``specs``: the files, the salt and new keys are ``hostenv``'s.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from ..errors import InvalidSpecError

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
PRIVATE_MODE_BITS = 0o077                # a key file readable or writable by group or others is refused


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


def key_in_file_text(data: bytes, where: str, path: str) -> str:
    """The key a key file's bytes ``data`` hold, checked: UTF-8, one key followed by at most one line ending (as
    editors and ``echo KEY > FILE`` write it). ``where`` names the file in messages, ``path`` is the error's value."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidSpecError(f"{where} is not text: put the key in it as one line", field="api_key_file",
                               value=path) from None
    for ending in ("\r\n", "\n"):
        if text.endswith(ending):
            text = text[:-len(ending)]
            break
    if not text:
        raise InvalidSpecError(f"{where} is empty: put the key in it", field="api_key_file", value=path)
    return check_api_key(text, f"The key in {where}")


def key_file_mode_problem(mode: int, path: str) -> InvalidSpecError | None:
    """The error for a key file whose permission bits ``mode`` let group or others in (like ssh with private keys:
    "permissions 0644 for 'FILE' are too open: chmod 600 FILE"); None when it is private."""
    if not mode & PRIVATE_MODE_BITS:
        return None
    return InvalidSpecError(f"permissions {mode & 0o7777:04o} for '{path}' are too open: chmod 600 {path}",
                            field="api_key_file", value=path)


def key_revision(api_key: str, salt: bytes) -> str:
    """What the pods' annotation holds for ``api_key``: HMAC-SHA256 under the secret ``salt``, shortened. The same
    key and salt give the same value (no needless restart); another key gives another; without the salt nothing
    about the key can be learnt from it."""
    if not isinstance(salt, bytes) or len(salt) < 16:
        raise InvalidSpecError("The annotation salt must be at least 16 random bytes, kept secret",
                               field="key_salt", value="<hidden>")
    return hmac.new(salt, api_key.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


__all__ = ["API_KEY_RULE", "KEY_MIN_LENGTH", "api_key_problem", "check_api_key", "key_file_mode_problem",
           "key_in_file_text", "key_revision"]
