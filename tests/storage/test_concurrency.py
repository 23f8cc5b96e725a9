"""Readers and writers at the same time."""

from __future__ import annotations

import threading

from logserver.storage import SegmentRecord, StoragePolicy
from tests.storage.conftest import FaultyDisk, OpenStorage, read_all


def test_tailing_reader_sees_every_record_once_in_order(open_storage: OpenStorage) -> None:
    """A reader following next_position while 4 threads append (with rotations) never errs,
    never sees a partial record, and ends with exactly the records a full read returns."""
    storage = open_storage(StoragePolicy(segment_bytes=8192, fsync="always"))
    stop = threading.Event()
    seen: list[SegmentRecord] = []
    errors: list[BaseException] = []

    def tail() -> None:
        position = 0
        try:
            while True:
                finished = stop.is_set()
                batch = storage.read("c", position, limit=50)
                seen.extend(batch.records)
                position = batch.next_position
                if finished and batch.end_of_log:
                    return
        except BaseException as exc:
            errors.append(exc)

    def write(t: int) -> None:
        for i in range(60):
            storage.append([("c", f"{t}-{i}-{j}".encode() * 5) for j in range(3)], f"w{t}", i)

    reader = threading.Thread(target=tail)
    reader.start()
    writers = [threading.Thread(target=write, args=(t,)) for t in range(4)]
    for w in writers:
        w.start()
    for w in writers:
        w.join(timeout=60)
    stop.set()
    reader.join(timeout=60)
    assert not errors, errors
    assert seen == read_all(storage, "c")
    assert len(seen) == 4 * 60 * 3
    assert len({r.position for r in seen}) == len(seen)


class BlockingSync(FaultyDisk):
    """fdatasync waits until the test releases it."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def fdatasync(self, fd: int) -> None:
        self.entered.set()
        assert self.release.wait(timeout=30)
        super().fdatasync(fd)


def test_reader_does_not_see_a_batch_before_it_is_durable(open_storage: OpenStorage) -> None:
    """fsync="always": a batch written but not yet synced is invisible to readers, so nobody
    reads a record that a power loss could still take back; it is visible when append returns."""
    disk = BlockingSync()
    storage = open_storage(StoragePolicy(fsync="always"), disk=disk)
    disk.release.set()
    storage.append([("c", b"first")])
    disk.release.clear()
    disk.entered.clear()

    appender = threading.Thread(target=storage.append, args=([("c", b"second")],))
    appender.start()
    assert disk.entered.wait(timeout=10)
    assert [r.message for r in read_all(storage, "c")] == [b"first"]
    disk.release.set()
    appender.join(timeout=10)
    assert not appender.is_alive()
    assert [r.message for r in read_all(storage, "c")] == [b"first", b"second"]
