"""The system calls that change files, behind one small seam.

Storage never calls ``os.pwrite``/``os.fdatasync``/``os.ftruncate`` directly but
through a :class:`DiskIO`, so a test can make a write fail with ENOSPC or an
fsync fail with EIO at an exact moment, without root and without monkeypatching
the ``os`` module for the whole process.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DiskIO"]


class DiskIO:
    """Plain unbuffered file I/O on raw descriptors: whatever returned has reached the kernel,
    so it survives the death of the process."""

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        """Write ``data`` at ``offset``; return how many bytes the kernel took."""
        return os.pwrite(fd, data, offset)

    def fdatasync(self, fd: int) -> None:
        """Make the file's data (and its size) durable."""
        os.fdatasync(fd)

    def drop_cache(self, fd: int, offset: int, length: int) -> None:
        """Tell the kernel the file's pages in this range are not needed (they are synced).

        Advice only: a platform without ``posix_fadvise`` (macOS) keeps its cache.
        """
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)

    def ftruncate(self, fd: int, length: int) -> None:
        """Cut the file back to ``length`` bytes."""
        os.ftruncate(fd, length)

    def open_segment(self, path: Path, *, create: bool) -> int:
        """Open a segment for writing; ``create`` insists the file is new.

        New segments are readable by their owner and group only (0640, less
        what the umask takes): they hold the logs, and the resync marker that
        must stay secret (see ``_blocks``)."""
        flags = os.O_RDWR | os.O_CLOEXEC
        if create:
            flags |= os.O_CREAT | os.O_EXCL
        return os.open(path, flags, 0o640)

    def unlink(self, path: Path) -> None:
        """Delete a file (retention deleting a segment); a missing file is not an error."""
        path.unlink(missing_ok=True)

    def mkdir(self, path: Path) -> None:
        """Create a directory (its parent exists)."""
        path.mkdir(exist_ok=True)

    def sync_path(self, path: Path) -> None:
        """fdatasync a file or directory by name: for a segment whose descriptor is closed, and
        for directories, so a new file's name survives a power loss."""
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if path.is_dir():
                os.fsync(fd)
            else:
                os.fdatasync(fd)
        finally:
            os.close(fd)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"
