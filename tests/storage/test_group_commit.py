"""Durability modes: group commit under fsync="always", background sync, no sync."""

from __future__ import annotations

import threading

from logserver.storage import Storage, StoragePolicy
from logserver.tools.launcher import wait_for
from tests.storage.conftest import FaultyDisk, OpenStorage, read_all

THREADS = 16
APPENDS = 50


def _hammer(storage: Storage, threads: int, appends: int) -> None:
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            barrier.wait()
            for i in range(appends):
                storage.append([(f"cat{t % 3}", f"{t}:{i}".encode())], f"producer-{t}", i)
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    assert not errors, errors


def test_concurrent_appends_share_fsyncs(open_storage: OpenStorage) -> None:
    """16 threads x 50 appends with fsync="always": every batch is stored and acknowledged
    after a sync, and group commit makes far fewer fdatasync calls than appends."""
    disk = FaultyDisk()
    storage = open_storage(StoragePolicy(fsync="always"), disk=disk)
    _hammer(storage, THREADS, APPENDS)

    stats = storage.stats()
    total = THREADS * APPENDS
    assert stats.batches_stored == stats.records_stored == total
    stored = {r.message for c in ("cat0", "cat1", "cat2") for r in read_all(storage, c)}
    assert stored == {f"{t}:{i}".encode() for t in range(THREADS) for i in range(APPENDS)}
    assert stats.fsyncs == disk.syncs
    # One sync per category per round at most; a round covers every batch that waited.
    assert stats.fsyncs < total / 2, stats
    assert stats.sync_rounds < total / 2, stats


def test_single_append_is_synced_before_it_returns(open_storage: OpenStorage) -> None:
    """fsync="always": one append alone costs one fdatasync, made before append returns."""
    disk = FaultyDisk()
    storage = open_storage(StoragePolicy(fsync="always"), disk=disk)
    storage.append([("c", b"x")])
    assert disk.syncs == 1
    assert storage.stats().fsyncs == 1


def test_never_mode_does_not_fsync_until_asked(open_storage: OpenStorage) -> None:
    """fsync="never": appends make no fdatasync (yet are readable at once); sync() does."""
    disk = FaultyDisk()
    storage = open_storage(StoragePolicy(fsync="never"), disk=disk)
    for i in range(20):
        storage.append([("a", b"x"), ("b", b"y")], "p", i)
    assert disk.syncs == 0
    assert len(read_all(storage, "a")) == 20
    storage.sync()
    assert disk.syncs == 2  # one per dirty segment
    storage.sync()
    assert disk.syncs == 2  # nothing new to sync


def test_interval_mode_syncs_in_the_background(open_storage: OpenStorage) -> None:
    """fsync="interval": append returns without syncing; the background thread syncs soon."""
    disk = FaultyDisk()
    storage = open_storage(StoragePolicy(fsync="interval", fsync_interval_s=0.05), disk=disk)
    storage.append([("c", b"x")])
    wait_for(lambda: disk.syncs >= 1, 10.0)
    assert read_all(storage, "c")[0].message == b"x"
    storage.close()
    assert not any(
        t.name.startswith("storage-maintenance") and t.is_alive() for t in threading.enumerate()
    )


def test_no_thread_per_append(open_storage: OpenStorage) -> None:
    """Appending starts no threads; "always" needs no background thread at all."""
    before = threading.active_count()
    storage = open_storage(StoragePolicy(fsync="always"))
    for i in range(50):
        storage.append([("c", b"x")], "p", i)
    assert threading.active_count() == before
