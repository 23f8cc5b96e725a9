"""The servers file on disk: one writer (a lock), atomic replacement, the heartbeat.

- **One writer.** ``PATH.lock`` is held with ``flock`` for the agent's life
  and carries its pid: a second agent for the same file fails at once with a
  clear error instead of two agents overwriting each other. The kernel drops
  the lock when the process dies, however it dies.
- **Atomic.** Every write goes to a temporary file in the same directory
  (``.NAME.PID.tmp``), is fsync'd, renamed over the file, and the directory
  is fsync'd, so that readers see the old content or the new, never part,
  and a power loss leaves one or the other (on a file system that keeps
  data, e.g. ``/var/lib``; on tmpfs the fsyncs cost nothing and keep nothing).
  Temporary files left by a killed agent are removed at start.
- **The heartbeat** sets the file's mtime without rewriting it: readers that
  watch for writes and renames are not woken (see ``logwire.serversfile``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from logserver.errors import DiscoveryAgentError
from logwire.serversfile import MAX_FILE_BYTES, ServersFile, ServersFileError, parse

__all__ = ["ServersFileWriter"]


class ServersFileWriter:
    """Writes one servers file for one agent process; :meth:`acquire` before anything else."""

    def __init__(self, path: Path, mode: int = 0o644) -> None:
        self.path = Path(os.path.abspath(path))
        self.mode = mode
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._lock_fd: int | None = None
        self._inode: tuple[int, int] | None = None  # of the file we last wrote

    def __repr__(self) -> str:
        held = "held" if self._lock_fd is not None else "not held"
        return f"<ServersFileWriter {self.path} lock {held}>"

    def acquire(self) -> None:
        """Take the writer's lock (creating the directory if needed), or raise."""
        directory = self.path.parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise DiscoveryAgentError(
                f"cannot use {directory} for {self.path.name}: {exc}", file=str(self.path)
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise DiscoveryAgentError(
                f"another discovery agent (pid {holder or 'unknown'}) writes {self.path}",
                file=str(self.path),
            ) from None
        except OSError as exc:
            os.close(fd)
            raise DiscoveryAgentError(
                f"cannot lock {self.lock_path}: {exc}", file=str(self.path)
            ) from exc
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def release(self) -> None:
        """Give up the lock (the lock file stays: removing it would race a starting agent)."""
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def remove_leftovers(self) -> list[Path]:
        """Delete temporary files a killed agent left behind (we hold the lock: none is live)."""
        removed = []
        for leftover in self.path.parent.glob(f".{self.path.name}.*.tmp"):
            with contextlib.suppress(OSError):
                leftover.unlink()
                removed.append(leftover)
        return removed

    def read_existing(self) -> tuple[ServersFile | None, str | None]:
        """The file as a previous agent left it, or None and why it cannot be used."""
        try:
            with open(self.path, "rb") as f:
                data = f.read(MAX_FILE_BYTES + 1)
        except FileNotFoundError:
            return None, "missing"
        except OSError as exc:
            return None, str(exc)
        try:
            return parse(data), None
        except ServersFileError as exc:
            return None, str(exc)

    def write(self, document: ServersFile) -> None:
        """Replace the file with ``document``, atomically and durably; OSError on failure."""
        if self._lock_fd is None:
            raise DiscoveryAgentError("write() before acquire()", file=str(self.path))
        data = document.to_json()
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            fd = os.open(
                tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, self.mode
            )
            try:
                os.fchmod(fd, self.mode)  # the umask must not hide it from the apps' users
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
                st = os.fstat(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        self._inode = (st.st_dev, st.st_ino)
        _fsync_directory(self.path.parent)

    def touch(self) -> bool:
        """The heartbeat: set the mtime to now. False if the file is no longer the one we wrote.

        Someone may have deleted or replaced it; the caller then writes it again
        rather than vouch for content it did not write.
        """
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        if (st.st_dev, st.st_ino) != self._inode:
            return False
        os.utime(self.path)
        return True


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip() or "0") or None
    except (OSError, ValueError):
        return None
