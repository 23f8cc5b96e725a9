"""Rotation by size; retention by total bytes and by age; positions stay stable."""

from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path

from logserver.storage import Storage, StoragePolicy
from logserver.storage._blocks import SEGMENT_HEADER_BYTES
from logserver.tools.launcher import wait_for
from tests.storage.conftest import (
    JournalDisk,
    OpenStorage,
    messages,
    read_all,
    segment_files,
)

# Incompressible, so that sizes on disk follow the records: about 270 bytes each.
RECORD = random.Random(200).randbytes(200)


def _append(storage: Storage, count: int, start: int = 0) -> None:
    for i in range(start, start + count):
        storage.append([("c", RECORD + str(i).encode())], "p", i)


def test_rotation_keeps_positions_contiguous(open_storage: OpenStorage, data_dir: Path) -> None:
    """Segments rotate before exceeding segment_bytes; each is named by its first position,
    which is the previous one's end, and reads cross segments seamlessly, also after reopen."""
    policy = StoragePolicy(segment_bytes=4096)
    storage = open_storage(policy)
    _append(storage, 100)
    files = segment_files(data_dir, "c")
    assert len(files) >= 6
    expected_base = 0
    for f in files:
        assert int(f.stem) == expected_base
        assert f.stat().st_size <= 4096
        expected_base += f.stat().st_size
    records = read_all(storage, "c", page=7)
    assert [r.message for r in records] == [RECORD + str(i).encode() for i in range(100)]
    storage.close()
    again = open_storage(policy)
    assert read_all(again, "c") == records
    _append(again, 10, start=100)
    assert len(read_all(again, "c")) == 110


def test_batch_bigger_than_a_segment_gets_its_own(
    open_storage: OpenStorage, data_dir: Path
) -> None:
    """A batch larger than segment_bytes is not split: it fills a segment of its own."""
    storage = open_storage(StoragePolicy(segment_bytes=4096))
    storage.append([("c", b"small")])
    rng = random.Random(1)
    storage.append([("c", rng.randbytes(1000)) for _ in range(10)])
    storage.append([("c", b"small again")])
    sizes = [f.stat().st_size for f in segment_files(data_dir, "c")]
    assert len(sizes) == 3 and sizes[1] > 4096
    assert len(read_all(storage, "c")) == 12


def test_retention_by_bytes_deletes_oldest_closed_segments(
    open_storage: OpenStorage, data_dir: Path
) -> None:
    """Over retention_bytes, the oldest closed segments are deleted on rotation; the active one
    never is; a read from position 0 starts at the oldest kept record, whose position is
    unchanged."""
    storage = open_storage(StoragePolicy(segment_bytes=4096, retention_bytes=10_000))
    _append(storage, 40)
    before = read_all(storage, "c")
    _append(storage, 200, start=40)
    files = segment_files(data_dir, "c")
    assert int(files[0].stem) > 0
    assert sum(f.stat().st_size for f in files) <= 10_000 + 4096
    kept = read_all(storage, "c")
    assert kept[0].position == int(files[0].stem) + SEGMENT_HEADER_BYTES
    assert messages(kept)[-1] == RECORD + b"239"
    assert storage.stats().segments_deleted > 0
    assert storage.read("c", before[0].position).records[0] == kept[0]


def test_active_segment_is_never_deleted(open_storage: OpenStorage, data_dir: Path) -> None:
    """Even with a limit smaller than one segment, the segment being written stays."""
    storage = open_storage(StoragePolicy(segment_bytes=4096, retention_bytes=1))
    _append(storage, 50)
    assert len(segment_files(data_dir, "c")) == 1
    assert read_all(storage, "c")[-1].message == RECORD + b"49"


def test_retention_by_age_runs_in_the_background(open_storage: OpenStorage, data_dir: Path) -> None:
    """Closed segments older than retention_age_s are deleted by the background thread,
    without any new append; the active segment stays."""
    storage = open_storage(
        StoragePolicy(segment_bytes=4096, retention_age_s=0.3, retention_check_s=0.05)
    )
    _append(storage, 60)
    assert len(segment_files(data_dir, "c")) > 1
    wait_for(lambda: len(segment_files(data_dir, "c")) == 1, 10.0)
    records = read_all(storage, "c")
    assert records and records[-1].message == RECORD + b"59"


def test_age_of_recovered_segments_is_their_mtime(
    open_storage: OpenStorage, data_dir: Path
) -> None:
    """After a restart, a closed segment's age comes from its modification time, and old ones
    are deleted at the next rotation."""
    storage = open_storage(StoragePolicy(segment_bytes=4096))
    _append(storage, 40)
    storage.close()
    old = time.time() - 3600
    aged = segment_files(data_dir, "c")[:-1]
    assert aged
    for f in aged:
        os.utime(f, (old, old))
    again = open_storage(StoragePolicy(segment_bytes=4096, retention_age_s=600))
    _append(again, 20, start=40)  # rotates, which applies retention
    assert not any(f.exists() for f in aged)
    assert messages(read_all(again, "c"))[-1] == RECORD + b"59"


def test_reads_racing_retention_never_fail(open_storage: OpenStorage) -> None:
    """A reader that starts from the oldest position while retention deletes segments under
    it starts again from the newer snapshot; it never sees a deleted file's FileNotFoundError.
    (Retention used to unlink files before publishing the snapshot without them.)"""
    storage = open_storage(StoragePolicy(segment_bytes=4096, retention_bytes=8192))
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                storage.read("c", 0, 1000)
            except BaseException as exc:  # the test reports any
                errors.append(exc)
                return

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        _append(storage, 600)  # about 40 rotations, each deleting the oldest segments
    finally:
        stop.set()
        thread.join(10)
    assert errors == []
    assert messages(read_all(storage, "c"))[-1] == RECORD + b"599"


def test_retention_waits_for_a_segments_commit_round(
    open_storage: OpenStorage, data_dir: Path
) -> None:
    """With retention_bytes below segment_bytes every rotation wants to delete the segment
    it just retired, whose batches may still wait for their fdatasync (8 threads append at
    once, on a disk whose syncs are slow). Retention waits for that round: every deleted
    segment was synced after its last write and before it was unlinked (the figure: 0
    segments deleted early), no round failed, and the background pass deletes what a
    rotation had to leave, down to the active segment."""
    disk = JournalDisk(sync_delay_s=0.002)
    policy = StoragePolicy(segment_bytes=4096, retention_bytes=1000, retention_check_s=0.05)
    storage = open_storage(policy, disk=disk)

    def write(t: int) -> None:
        for i in range(40):
            storage.append([("c", RECORD + f"{t}-{i}".encode())], f"w{t}", i)

    threads = [threading.Thread(target=write, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert storage.stats().sync_errors == 0
    deleted_early = []
    synced_since_write: set[str] = set()
    for kind, path, _ in list(disk.journal):
        if ".seg" not in path:
            continue
        if kind == "write":
            synced_since_write.discard(path)
        elif kind == "sync" and path.endswith(" (deleted)"):
            deleted_early.append(path)  # a round synced a file retention had deleted
        elif kind == "sync":
            synced_since_write.add(path)
        elif path not in synced_since_write:  # unlink
            deleted_early.append(path)
    assert len([c for c in disk.calls("unlink") if c[1].endswith(".seg")]) >= 10
    assert deleted_early == []
    wait_for(lambda: len(segment_files(data_dir, "c")) == 1, 10.0)
