"""Linux inotify through ctypes: a directory watch that wakes a thread when a file is replaced.

No C extension and no new dependency: three libc calls, and ``os.read`` for
the events. :func:`open_inotify` returns None where inotify does not exist
(not Linux, no libc symbol) and raises OSError where it cannot be had now
(the per-user instance limit reached); the caller then polls with ``stat``.

The directory is watched, not the file: the agent replaces the file by
renaming a new one over it, which a watch on the old file's inode would
never report. Only events that can mean new content are asked for: a file
closed after writing, renamed in or out, deleted; and the directory itself
going away. Attribute changes (the agent's heartbeat sets the mtime) are not,
so a heartbeat wakes nobody.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import struct
import sys
from dataclasses import dataclass

__all__ = ["Inotify", "InotifyEvent", "open_inotify"]

IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_UNMOUNT = 0x00002000
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = 0o2000000  # O_CLOEXEC on Linux

#: What a directory watch asks for: every way the file in it can get new content or go.
DIRECTORY_MASK = (
    IN_CLOSE_WRITE
    | IN_MOVED_TO
    | IN_MOVED_FROM
    | IN_DELETE
    | IN_DELETE_SELF
    | IN_MOVE_SELF
    | IN_ONLYDIR
)

_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len (struct inotify_event)
_READ_SIZE = 64 * 1024


@dataclass(frozen=True)
class InotifyEvent:
    """One event: the watch it belongs to, what happened, and the name in the directory."""

    wd: int
    mask: int
    name: bytes

    @property
    def overflow(self) -> bool:
        """Events were lost: every watched file must be looked at again."""
        return bool(self.mask & IN_Q_OVERFLOW)

    @property
    def watch_gone(self) -> bool:
        """The kernel dropped this watch (directory deleted, moved or unmounted)."""
        return bool(self.mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT))


class Inotify:
    """One inotify instance: a file descriptor to ``select`` on, and its watches."""

    def __init__(self, libc: ctypes.CDLL, fd: int) -> None:
        self._libc = libc
        self.fd = fd

    def __repr__(self) -> str:
        return f"<Inotify fd={self.fd}>"

    def add_watch(self, directory: str) -> int:
        """Watch ``directory``; raises OSError (ENOENT, ENOTDIR, ENOSPC for too many watches)."""
        wd = int(self._libc.inotify_add_watch(self.fd, os.fsencode(directory), DIRECTORY_MASK))
        if wd < 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), directory)
        return wd

    def remove_watch(self, wd: int) -> None:
        """Stop a watch; one the kernel already dropped is no error."""
        self._libc.inotify_rm_watch(self.fd, wd)

    def read(self) -> list[InotifyEvent]:
        """The events waiting now (none if there are none: the descriptor never blocks)."""
        try:
            data = os.read(self.fd, _READ_SIZE)
        except BlockingIOError:
            return []
        except InterruptedError:
            return []
        events = []
        offset = 0
        while offset + _HEADER.size <= len(data):
            wd, mask, _cookie, length = _HEADER.unpack_from(data, offset)
            offset += _HEADER.size
            name = data[offset : offset + length].rstrip(b"\0")
            offset += length
            events.append(InotifyEvent(wd, mask, name))
        return events

    def close(self) -> None:
        """Close the descriptor (every watch goes with it); idempotent."""
        fd, self.fd = self.fd, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)


def open_inotify() -> Inotify | None:
    """A new inotify instance; None where inotify does not exist (then poll).

    Raises OSError when it exists but cannot be had now: EMFILE once this
    user's instances are used up (``fs.inotify.max_user_instances``, 128 by
    default on many distributions: one per process that watches).
    """
    libc = _libc()
    if libc is None:
        return None
    fd = int(libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC))
    if fd < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return Inotify(libc, fd)


_LIBC: ctypes.CDLL | None = None
_LIBC_LOADED = False


def _libc() -> ctypes.CDLL | None:
    """The C library already in the process, with the inotify calls typed; None if absent.

    ``CDLL(None)`` looks symbols up in what the interpreter already loaded, libc
    included. Not ``ctypes.util.find_library``: it runs ``ldconfig`` (or a
    compiler) in a child process, and a library must not spawn processes
    behind an app's back (an app reaping its children with ``waitpid(-1)``
    would reap ours, and ``subprocess`` then loses track of it).
    """
    global _LIBC, _LIBC_LOADED
    if _LIBC_LOADED:
        return _LIBC
    _LIBC_LOADED = True
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.inotify_init1.argtypes = [ctypes.c_int]
        libc.inotify_init1.restype = ctypes.c_int
        libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        libc.inotify_add_watch.restype = ctypes.c_int
        libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.inotify_rm_watch.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None
    _LIBC = libc
    return libc
