"""Synced segment bytes are dropped from the page cache (StoragePolicy.drop_synced_pages),
never bytes that are not durable yet, and reading still returns everything."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from logserver.storage import DiskIO, StoragePolicy
from tests.storage.conftest import OpenStorage, messages, read_all, segment_files

PAGE = os.sysconf("SC_PAGE_SIZE")
# Incompressible: the segment grows by about 50 KB a batch.
_rng = random.Random(100)
BATCH = [("app", _rng.randbytes(100)) for _ in range(500)]


class RecordingDisk(DiskIO):
    """Real I/O, with a log of which calls happened in which order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int]] = []

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        written = super().pwrite(fd, data, offset)
        self.calls.append(("write", offset, offset + written))
        return written

    def fdatasync(self, fd: int) -> None:
        super().fdatasync(fd)
        self.calls.append(("sync", 0, 0))

    def drop_cache(self, fd: int, offset: int, length: int) -> None:
        super().drop_cache(fd, offset, length)
        self.calls.append(("drop", offset, offset + length))


def test_only_synced_whole_pages_are_dropped_and_all_of_them(open_storage: OpenStorage) -> None:
    """Each drop follows a sync, covers whole pages that were written before that sync,
    starts where the previous one ended; by the end everything but the last partial page
    has been dropped."""
    disk = RecordingDisk()
    storage = open_storage(StoragePolicy(fsync="always"), disk=disk)
    for sequence in range(20):
        storage.append(BATCH, producer="p", sequence=sequence)
    written_before_sync = 0
    synced = 0
    dropped_to = 0
    for kind, start, end in disk.calls:
        if kind == "write":
            written_before_sync = max(written_before_sync, end)
        elif kind == "sync":
            synced = written_before_sync
        else:
            assert start == dropped_to, "drops are contiguous"
            assert start % PAGE == 0 and end % PAGE == 0, "whole pages only"
            assert end <= synced, "never a byte that is not durable yet"
            dropped_to = end
    assert dropped_to == synced - synced % PAGE
    assert len(messages(read_all(storage, "app"))) == 20 * len(BATCH)


@pytest.mark.parametrize(
    "policy",
    [StoragePolicy(fsync="never"), StoragePolicy(fsync="always", drop_synced_pages=False)],
    ids=["fsync-never", "keep"],
)
def test_nothing_is_dropped_unsynced_or_when_told_to_keep(
    open_storage: OpenStorage, policy: StoragePolicy
) -> None:
    disk = RecordingDisk()
    storage = open_storage(policy, disk=disk)
    for sequence in range(5):
        storage.append(BATCH, producer="p", sequence=sequence)
    assert not [c for c in disk.calls if c[0] == "drop"]


@pytest.mark.process  # runs util-linux fincore
@pytest.mark.skipif(shutil.which("fincore") is None, reason="util-linux fincore not installed")
def test_the_kernel_really_lets_the_pages_go(open_storage: OpenStorage, data_dir: Path) -> None:
    """fincore (util-linux) shows the segment's pages leave the page cache with the default
    policy and stay with drop_synced_pages=False."""

    def resident_pages(storage_dir: Path) -> int:
        (segment,) = segment_files(storage_dir, "app")
        out = subprocess.run(
            ["fincore", "--bytes", "--noheadings", "--raw", "--output", "PAGES", str(segment)],
            capture_output=True,
            text=True,
            check=True,
        )
        return int(out.stdout.split()[0])

    dropping = open_storage(StoragePolicy(fsync="always"))
    keeping = open_storage(
        StoragePolicy(fsync="always", drop_synced_pages=False), path=data_dir.parent / "keep"
    )
    for sequence in range(40):
        dropping.append(BATCH, producer="p", sequence=sequence)
        keeping.append(BATCH, producer="p", sequence=sequence)
    (segment,) = segment_files(data_dir, "app")
    total_pages = segment.stat().st_size // PAGE
    assert total_pages > 100
    assert resident_pages(data_dir) <= 2
    assert resident_pages(data_dir.parent / "keep") >= total_pages // 2
