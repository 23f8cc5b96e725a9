"""What categories may cost: caps per batch and per store, a bounded set of open files, and
creations and wide batches that hold up no other writer."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from logserver.storage import (
    BatchTooLargeError,
    InvalidCategoryError,
    Storage,
    StoragePolicy,
)
from logserver.storage._commit import WIDE
from tests.storage.conftest import FaultyDisk, OpenStorage, messages, read_all


def open_segment_files(data_dir: Path) -> int:
    """Descriptors of this process open on segment files under ``data_dir``."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(data_dir)) and target.endswith(".seg"):
            count += 1
    return count


def spread(count: int, prefix: str = "c") -> list[tuple[str, bytes]]:
    return [(f"{prefix}{i:05d}", f"m{i}".encode()) for i in range(count)]


def test_open_segment_files_stay_within_the_limit(
    open_storage: OpenStorage, data_dir: Path
) -> None:
    """One batch over 300 categories, then batches to each of them again: never more than
    max_open_segments segment files open; every record is stored and survives a reopen."""
    policy = StoragePolicy(fsync="always", max_open_segments=8)
    storage = open_storage(policy)
    storage.append(spread(300), "p", 0)
    assert open_segment_files(data_dir) <= 8
    for i in range(0, 300, 7):
        storage.append([(f"c{i:05d}", b"again")], "p", 1 + i)
        assert open_segment_files(data_dir) <= 8
    assert messages(read_all(storage, "c00007")) == [b"m7", b"again"]
    storage.close()
    reopened = Storage.open(data_dir, policy)
    try:
        assert messages(read_all(reopened, "c00299")) == [b"m299"]
        assert len(reopened.categories()) == 300
    finally:
        reopened.close()
    assert open_segment_files(data_dir) == 0


def test_a_batch_naming_too_many_categories_is_refused_whole(open_storage: OpenStorage) -> None:
    """More distinct categories than max_batch_categories: BatchTooLargeError with the limit
    and the count, before any category is created; in rows or in columns alike."""
    storage = open_storage(StoragePolicy(max_batch_categories=3))
    with pytest.raises(BatchTooLargeError, match="too many categories") as refused:
        storage.append(spread(4), "p", 0)
    assert (refused.value.limit, refused.value.actual) == (3, 4)
    runs = [(f"c{i}", 1) for i in range(4)]
    with pytest.raises(BatchTooLargeError, match="too many categories"):
        storage.append_columns(runs, [b"x"] * 4, "p", 0)
    assert storage.categories() == []
    storage.append(spread(3) * 5, "p", 0)  # many records, three categories
    assert len(storage.categories()) == 3


def test_a_store_creates_at_most_max_categories(open_storage: OpenStorage) -> None:
    """Past max_categories a new category is refused (InvalidCategoryError naming the first
    that does not fit, nothing of the batch stored); existing ones keep taking records, and
    a batch of the categories that fit goes through."""
    storage = open_storage(StoragePolicy(max_categories=5))
    storage.append(spread(3), "p", 0)
    with pytest.raises(InvalidCategoryError, match="max-categories") as refused:
        storage.append([("c00000", b"old"), ("n1", b"a"), ("n2", b"b"), ("n3", b"c")], "p", 1)
    assert refused.value.category == "n3"
    assert storage.categories() == ["c00000", "c00001", "c00002"]
    storage.append([("c00000", b"old"), ("n1", b"a"), ("n2", b"b")], "p", 1)
    assert len(storage.categories()) == 5
    with pytest.raises(InvalidCategoryError):
        storage.append([("n4", b"x")], "p", 2)
    storage.append([("n1", b"more")], "p", 3)
    assert messages(read_all(storage, "n1")) == [b"a", b"more"]


class GatedDisk(FaultyDisk):
    """Blocks the first sync of chosen paths until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.blocked = threading.Event()
        self.block_paths: set[Path] = set()
        self.block_fds = False

    def sync_path(self, path: Path) -> None:
        if path in self.block_paths:
            self.block_paths.discard(path)
            self.blocked.set()
            assert self.gate.wait(10)
        super().sync_path(path)

    def fdatasync(self, fd: int) -> None:
        if self.block_fds and "/categories/wide" in os.readlink(f"/proc/self/fd/{fd}"):
            self.blocked.set()
            assert self.gate.wait(10)
        super().fdatasync(fd)


def test_creating_a_category_does_not_wait_for_another_creation(
    open_storage: OpenStorage, data_dir: Path
) -> None:
    """While one batch's new categories wait for their directory sync, another batch creates
    a category of its own and is stored."""
    disk = GatedDisk()
    storage = open_storage(StoragePolicy(fsync="always"), disk=disk)
    storage.append([("warm", b"x")], "p", 0)  # the categories directory exists
    disk.block_paths.add(data_dir / "categories")
    slow = threading.Thread(target=storage.append, args=(spread(50, "slow"), "slow", 0))
    slow.start()
    try:
        assert disk.blocked.wait(10)
        storage.append([("quick", b"y")], "quick", 0)
        assert messages(read_all(storage, "quick")) == [b"y"]
        assert slow.is_alive()
    finally:
        disk.gate.set()
        slow.join(10)
    assert len(storage.categories()) == 52


def test_a_wide_batch_syncs_alone_and_holds_up_no_one(open_storage: OpenStorage) -> None:
    """A batch over more than WIDE categories syncs them in its own thread: while its syncs
    hang, another writer's batch is stored and acknowledged; once they finish, the wide
    batch is acknowledged and readable too."""
    disk = GatedDisk()
    storage = open_storage(StoragePolicy(fsync="always"), disk=disk)
    storage.append([("app", b"first")], "app", 0)
    disk.block_fds = True
    wide = threading.Thread(
        target=storage.append, args=(spread(WIDE + 10, "wide"), "wide", 0), daemon=True
    )
    wide.start()
    try:
        assert disk.blocked.wait(10)
        storage.append([("app", b"second")], "app", 1)
        assert messages(read_all(storage, "app")) == [b"first", b"second"]
        assert wide.is_alive()
    finally:
        disk.gate.set()
        wide.join(10)
    assert messages(read_all(storage, "wide00000")) == [b"m0"]


def test_sync_and_close_wait_for_a_wide_batch_syncing_alone(
    open_storage: OpenStorage, data_dir: Path
) -> None:
    """Storage.sync() (and so close(), which then records a clean shutdown) covers a wide
    batch whose own syncs are still running: it returns only after them, so the clean
    record never vouches for bytes that were not durable yet."""
    disk = GatedDisk()
    storage = open_storage(StoragePolicy(fsync="always"), disk=disk)
    disk.block_fds = True
    wide = threading.Thread(
        target=storage.append, args=(spread(WIDE + 10, "wide"), "wide", 0), daemon=True
    )
    wide.start()
    syncing = threading.Thread(target=storage.sync, daemon=True)
    try:
        assert disk.blocked.wait(10)
        syncing.start()
        syncing.join(0.2)
        assert syncing.is_alive()  # the wide batch's fdatasyncs have not returned
    finally:
        disk.gate.set()
        wide.join(10)
        syncing.join(10)
    assert not syncing.is_alive()
