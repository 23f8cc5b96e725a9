"""The data directory belongs to one process: an ``flock`` on its ``LOCK`` file.

Two storages writing one directory would interleave their appends and each
trust its own idea of every segment's end. The lock is an ``flock``, so the
kernel releases it when the process dies however it dies (a SIGKILLed server
restarts at once, with no stale lock to clear); the file holds the owner's pid
for a person looking.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from logserver.errors import StorageLockedError

__all__ = ["LOCK_FILE", "lock_directory", "unlock_directory"]

LOCK_FILE = "LOCK"


def lock_directory(data_dir: Path) -> int:
    """Take the data directory for this process (flock: released by the kernel on death)."""
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StorageLockedError(f"{data_dir} is in use by another storage") from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def unlock_directory(fd: int) -> None:
    """Release the directory taken by :func:`lock_directory` and close its descriptor."""
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
