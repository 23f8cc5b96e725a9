"""Helpers for the storage tests: real files in tmp_path, storages closed after each test."""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from logserver.storage import DiskIO, SegmentRecord, Storage, StoragePolicy

OpenStorage = Callable[..., Storage]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def open_storage(data_dir: Path) -> Iterator[OpenStorage]:
    """Open a Storage on this test's data directory (or another); every one is closed after."""
    opened: list[Storage] = []

    def open_(
        policy: StoragePolicy | None = None, *, path: Path | None = None, disk: DiskIO | None = None
    ) -> Storage:
        storage = Storage.open(path or data_dir, policy or StoragePolicy(), disk=disk)
        opened.append(storage)
        return storage

    yield open_
    for storage in opened:
        storage.close()


def read_all(storage: Storage, category: str, *, page: int = 1000) -> list[SegmentRecord]:
    """Every readable record of a category, following next_position."""
    records: list[SegmentRecord] = []
    position = 0
    while True:
        batch = storage.read(category, position, limit=page)
        records.extend(batch.records)
        if batch.end_of_log:
            return records
        assert batch.next_position > position or batch.records
        position = batch.next_position


def messages(records: list[SegmentRecord]) -> list[bytes]:
    return [r.message for r in records]


def segment_files(data_dir: Path, category: str) -> list[Path]:
    return sorted((data_dir / "categories" / category).glob("*.seg"))


class FaultyDisk(DiskIO):
    """A DiskIO whose writes or syncs fail on demand, like a full or broken disk."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.write_error: int | None = None  # errno for the next writes, while set
        self.short_write = False  # write half the bytes, then report success
        self.partial_then_fail = False  # write half for real, then raise write_error
        self.sync_error: int | None = None
        self.truncate_error: int | None = None
        self.fail_writes_after = -1  # let this many writes succeed, then fail with write_error
        self.writes = 0
        self.syncs = 0

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        with self.lock:
            self.writes += 1
            if self.fail_writes_after >= 0:
                if self.fail_writes_after == 0:
                    raise OSError(errno.ENOSPC, "No space left on device (injected)")
                self.fail_writes_after -= 1
            if self.short_write:
                return super().pwrite(fd, data[: len(data) // 2], offset)
            if self.write_error is not None:
                if self.partial_then_fail:
                    super().pwrite(fd, data[: len(data) // 2], offset)
                raise OSError(self.write_error, f"{errno.errorcode[self.write_error]} (injected)")
        return super().pwrite(fd, data, offset)

    def fdatasync(self, fd: int) -> None:
        with self.lock:
            self.syncs += 1
            if self.sync_error is not None:
                raise OSError(self.sync_error, f"{errno.errorcode[self.sync_error]} (injected)")
        super().fdatasync(fd)

    def ftruncate(self, fd: int, length: int) -> None:
        if self.truncate_error is not None:
            raise OSError(self.truncate_error, "injected")
        super().ftruncate(fd, length)


def fd_path(fd: int) -> str:
    """The file a descriptor is open on (``... (deleted)`` once it was unlinked)."""
    return os.readlink(f"/proc/self/fd/{fd}")


class JournalDisk(DiskIO):
    """Real I/O with a journal of what reached which file, in order: ``("write", path, end)``,
    ``("sync", path, 0)`` once an fdatasync (by descriptor or by name) returned,
    ``("unlink", path, 0)``. ``sync_delay_s`` makes every segment sync that much slower
    (more batches pile up behind a round, as on a slow disk)."""

    def __init__(self, sync_delay_s: float = 0.0) -> None:
        self.lock = threading.Lock()
        self.journal: list[tuple[str, str, int]] = []
        self.sync_delay_s = sync_delay_s

    def _note(self, kind: str, path: str, end: int = 0) -> None:
        with self.lock:
            self.journal.append((kind, path, end))

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        written = super().pwrite(fd, data, offset)
        self._note("write", fd_path(fd), offset + written)
        return written

    def fdatasync(self, fd: int) -> None:
        path = fd_path(fd)
        if self.sync_delay_s:
            time.sleep(self.sync_delay_s)
        super().fdatasync(fd)
        self._note("sync", path)

    def sync_path(self, path: Path) -> None:
        super().sync_path(path)
        if not path.is_dir():
            self._note("sync", os.path.realpath(path))

    def unlink(self, path: Path) -> None:
        real = os.path.realpath(path)
        super().unlink(path)
        self._note("unlink", real)

    def calls(self, kind: str) -> list[tuple[str, str, int]]:
        with self.lock:
            return [call for call in self.journal if call[0] == kind]
