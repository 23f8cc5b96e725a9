"""Appending and reading back: positions, paging, reopening, the lock."""

from __future__ import annotations

from pathlib import Path

import pytest

from logserver.errors import StorageLockedError, StorageUnavailableError
from logserver.storage import (
    AppendOutcome,
    InvalidPositionError,
    InvalidRequestError,
    Storage,
    StoragePolicy,
)
from tests.storage.conftest import OpenStorage, messages, read_all, segment_files


def test_round_trip_keeps_order_fields_and_positions(
    open_storage: OpenStorage, data_dir: Path
) -> None:
    """Records come back in append order with their batch metadata; positions are byte
    offsets in the category's stream (the first block follows the segment's header; record i
    of a block sits at its offset + i) and next_position is the end of the last block."""
    storage = open_storage()
    outcome = storage.append([("app", b"one"), ("app", "two"), ("app", b"")], "prod-1", 7)
    assert outcome == AppendOutcome(stored=3, duplicate=False)
    storage.append([("app", b"four")])

    batch = storage.read("app")
    assert messages(batch.records) == [b"one", b"two", b"", b"four"]
    first = batch.records[0]
    assert (first.category, first.producer, first.sequence) == ("app", "prod-1", 7)
    assert [(r.index, r.count) for r in batch.records] == [(0, 3), (1, 3), (2, 3), (0, 1)]
    assert batch.records[3].producer == ""
    assert batch.records[3].sequence == -1
    assert [r.position for r in batch.records[:3]] == [32, 33, 34]
    positions = [r.position for r in batch.records]
    assert positions == sorted(positions) and len(set(positions)) == 4
    assert batch.end_of_log
    assert batch.next_position == sum(p.stat().st_size for p in segment_files(data_dir, "app"))
    assert first.received_ns == batch.records[2].received_ns > 0


def test_read_from_any_record_position_and_paging(open_storage: OpenStorage) -> None:
    """A read may start at any record's position; limit and max_bytes page through the log
    and following next_position visits every record exactly once."""
    storage = open_storage()
    for i in range(20):
        storage.append([("c", f"m{i:02d}".encode())])
    everything = storage.read("c").records
    assert len(everything) == 20

    middle = storage.read("c", everything[7].position, limit=3)
    assert messages(middle.records) == [b"m07", b"m08", b"m09"]
    assert middle.next_position == everything[10].position
    assert not middle.end_of_log

    paged = []
    position = 0
    while True:
        batch = storage.read("c", position, limit=1000, max_bytes=100)
        assert batch.records, "every page holds at least one record"
        paged.extend(batch.records)
        position = batch.next_position
        if batch.end_of_log:
            break
    assert paged == everything

    at_end = storage.read("c", position)
    assert at_end.records == [] and at_end.end_of_log and at_end.next_position == position


def test_one_record_larger_than_max_bytes_is_still_returned(open_storage: OpenStorage) -> None:
    """max_bytes never stops progress: a single larger record is returned alone."""
    storage = open_storage()
    storage.append([("big", b"x" * 10_000), ("big", b"y")])
    batch = storage.read("big", 0, max_bytes=10)
    assert messages(batch.records) == [b"x" * 10_000]
    assert messages(storage.read("big", batch.next_position).records) == [b"y"]


def test_positions_that_are_not_record_boundaries_are_refused(open_storage: OpenStorage) -> None:
    """Inside the segment header, inside a block past its records, past the end, or
    negative: InvalidPositionError (an InvalidRequest)."""
    storage = open_storage()
    storage.append([("c", b"a" * 50) for _ in range(3)])
    storage.append([("c", b"b" * 50) for _ in range(3)])
    records = storage.read("c").records
    end = storage.read("c").next_position
    assert [r.position - records[0].position for r in records[:3]] == [0, 1, 2]
    assert [messages(storage.read("c", r.position).records)[0] for r in records] == messages(
        records
    )
    inside = (1, 31, records[2].position + 1, records[3].position - 1, end + 1, end + 10_000, -1)
    for bad in inside:
        with pytest.raises(InvalidPositionError):
            storage.read("c", bad)
    with pytest.raises(InvalidPositionError):
        storage.read("never-written", 5)
    assert storage.read("never-written", 0).records == []
    with pytest.raises(InvalidRequestError):
        storage.read("c", 0, limit=0)


def test_boundaries_are_checked_far_from_known_marks(open_storage: OpenStorage) -> None:
    """Positions deep inside a large segment are validated exactly (not by a magic number):
    every record position is accepted, every other offset nearby refused."""
    storage = open_storage()
    for i in range(60):
        storage.append([("deep", bytes([i]) * 3000)])
    records = read_all(storage, "deep")
    target = records[45]
    assert messages(storage.read("deep", target.position, limit=1).records) == [target.message]
    for delta in (1, 12, 100, 2999):
        with pytest.raises(InvalidPositionError):
            storage.read("deep", target.position + delta)


def test_reopen_after_close_keeps_everything(open_storage: OpenStorage) -> None:
    """Close then open: same records, same positions, and appends continue after them."""
    storage = open_storage()
    storage.append([("a", b"1"), ("b", b"2")], "p", 1)
    before = read_all(storage, "a")
    end_before_close = storage.read("a").next_position
    storage.close()
    storage.close()  # idempotent

    again = open_storage()
    assert read_all(again, "a") == before
    assert again.categories() == ["a", "b"]
    again.append([("a", b"3")])
    after = read_all(again, "a")
    assert after[:1] == before
    assert messages(after) == [b"1", b"3"]
    assert after[1].position == end_before_close


def test_second_open_of_the_same_directory_is_refused(open_storage: OpenStorage) -> None:
    """One data directory, one storage: a second open raises StorageLockedError until the
    first is closed."""
    first = open_storage()
    with pytest.raises(StorageLockedError):
        open_storage()
    first.close()
    open_storage().append([("c", b"ok")])


def test_closed_storage_refuses_work(open_storage: OpenStorage) -> None:
    """After close, append/read/sync raise StorageUnavailableError (the server maps it to
    "try another server"); close stays idempotent."""
    storage = open_storage()
    storage.close()
    with pytest.raises(StorageUnavailableError):
        storage.append([("c", b"late")])
    with pytest.raises(StorageUnavailableError):
        storage.read("c")
    with pytest.raises(StorageUnavailableError):
        storage.sync()
    storage.close()


def test_context_manager_and_stats(data_dir: Path) -> None:
    """``with Storage.open(...)`` closes; stats count records, batches, bytes and categories."""
    with Storage.open(data_dir, StoragePolicy(fsync="never")) as storage:
        storage.append([("a", b"x"), ("b", b"y")])
        storage.append([])
        stats = storage.stats()
        assert (stats.records_stored, stats.batches_stored, stats.categories) == (2, 1, 2)
        assert stats.bytes_stored == stats.disk_bytes > 0
        assert stats.fsyncs == 0
        assert "fsync=never" in repr(storage)
    with Storage.open(data_dir) as again:
        assert again.categories() == ["a", "b"]
