"""Reading a file the user named (a kubeconfig, a key file): one rule, so that no such file can hang or flood us.

A path given on the command line or in a setting may name anything: a folder, a FIFO (opening it waits for a
writer, for ever), ``/dev/zero`` (reading never ends), a multi-gigabyte file, binary bytes. :func:`open_user_file`
opens it without blocking and checks it is a regular file; :func:`read_user_file` also bounds the read. Problems
are :class:`~tke_playbook.errors.InvalidSpecError` in one line that names the file and says what to give.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..errors import InvalidSpecError

_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def open_user_file(path, what: str, field: str) -> tuple[int, os.stat_result]:
    """(fd, stat) of the regular file ``path`` (symlinks followed, as for any file the user names), opened
    read-only without blocking; InvalidSpecError "<what>: cannot read it (...)" / "<what> is a FIFO: ..."."""
    path = Path(os.path.expanduser(os.fspath(path)))
    try:
        fd = os.open(path, _FLAGS)
    except OSError as exc:
        raise InvalidSpecError(f"{what}: cannot read it ({exc.strerror or exc}): give a readable file", field=field,
                               value=str(path)) from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise InvalidSpecError(f"{what} is {_kind(st.st_mode)}: give a regular file", field=field, value=str(path))
    return fd, st


def read_fd(fd: int, st: os.stat_result, what: str, field: str, limit: int) -> bytes:
    """At most ``limit`` bytes of an open file (closed here); InvalidSpecError when it holds more."""
    try:
        if st.st_size > limit:
            raise InvalidSpecError(f"{what} has {st.st_size} bytes, more than such a file can hold ({limit}): give "
                                   f"the right file", field=field, value=what)
        chunks, got = [], 0
        while got <= limit:
            block = os.read(fd, min(1 << 20, limit + 1 - got))
            if not block:
                break
            chunks.append(block)
            got += len(block)
    except OSError as exc:
        raise InvalidSpecError(f"{what}: cannot read it ({exc.strerror or exc}): give a readable file", field=field,
                               value=what) from None
    finally:
        os.close(fd)
    if got > limit:
        raise InvalidSpecError(f"{what} grew past {limit} bytes while it was read: give a file that stays put",
                               field=field, value=what)
    return b"".join(chunks)


def read_user_text(path, what: str, field: str, limit: int) -> str:
    """The UTF-8 text of the regular file ``path``, at most ``limit`` bytes; InvalidSpecError otherwise."""
    fd, st = open_user_file(path, what, field)
    try:
        return read_fd(fd, st, what, field, limit).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidSpecError(f"{what} is not text (UTF-8): give the right file", field=field,
                               value=str(path)) from None


__all__ = ["open_user_file", "read_fd", "read_user_text"]
