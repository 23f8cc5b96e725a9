"""The per-segment time index: reads of a time range or of the last N records cost what the
range holds, the index survives restarts, and a missing or damaged one is rebuilt."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from logserver.storage import Storage, StoragePolicy, StoredBlock
from logserver.storage._timeindex import SegmentIndex, index_path
from logwire.compression import CompressionPolicy
from tests.storage.conftest import OpenStorage, segment_files

# Uncompressed 5 KB batches, 192 KiB segments: several segments of several 64 KiB stretches.
SMALL = StoragePolicy(
    segment_bytes=192 * 1024, fsync="never", compression=CompressionPolicy(algorithm="none")
)


def _batches(storage: Storage, category: str, count: int, size: int = 100) -> None:
    for b in range(count):
        storage.append(
            [(category, f"batch {b:04d} record {i:03d} ".encode() + os.urandom(8).hex().encode())
             for i in range(size)],
            producer=f"p-{category}",
            sequence=b,
        )  # fmt: skip


def _all_blocks(storage: Storage, category: str, **query: int | None) -> list[StoredBlock]:
    """Every block a query returns, following next_position."""
    found: list[StoredBlock] = []
    position = -1
    for _ in range(10_000):
        batch = storage.query_blocks(category, position, 64 * 1024, **query)  # type: ignore[arg-type]
        found += batch.blocks
        if batch.end_of_log:
            return found
        position = batch.next_position
    raise AssertionError("the query never reached the end of the log")


def _sequences(blocks: list[StoredBlock]) -> list[int]:
    return sorted({b.sequence for b in blocks})


def test_a_time_range_returns_exactly_the_batches_received_in_it(
    open_storage: OpenStorage,
) -> None:
    """since is inclusive, until exclusive, at every batch boundary, over several segments."""
    storage = open_storage(SMALL)
    _batches(storage, "app", 200)
    times = {b.sequence: b.received_ns for b in _all_blocks(storage, "app")}
    assert len(times) == 200 and len(segment_files(storage._data_dir, "app")) >= 2
    for since, until in ((0, 200), (50, 51), (199, 200), (10, 150), (120, 200)):
        blocks = _all_blocks(
            storage, "app", since_ns=times[since], until_ns=times[until] if until < 200 else None
        )
        expected = [
            s
            for s in range(200)
            if times[since] <= times[s] and (until == 200 or times[s] < times[until])
        ]
        assert _sequences(blocks) == expected, (since, until)  # fmt: skip


def test_a_recent_range_reads_only_the_stretches_that_hold_it(
    open_storage: OpenStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading the last batches of a category walks the index, not the older data: the
    blocks parsed are those of the range (and the stretch it starts in)."""
    storage = open_storage(SMALL)
    _batches(storage, "app", 300)
    times = [b.received_ns for b in _all_blocks(storage, "app")]
    from logserver.storage import _reading

    parsed = 0
    real = _reading.walk_blocks

    def counting(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        nonlocal parsed
        for item in real(*args, **kwargs):  # type: ignore[arg-type]
            parsed += 1
            yield item

    monkeypatch.setattr(_reading, "walk_blocks", counting)
    blocks = _all_blocks(storage, "app", since_ns=times[-3])
    assert _sequences(blocks) == [297, 298, 299]
    assert parsed < 25, parsed  # a stretch is 64 KiB: about a dozen blocks


def test_the_last_n_records_start_where_they_should(open_storage: OpenStorage) -> None:
    """last=N starts at the N-th last record, inside a block and across segments; more
    than there are means all of them."""
    storage = open_storage(SMALL)
    _batches(storage, "app", 120)  # 12,000 records
    for n in (1, 99, 100, 101, 1000, 11_999, 12_000, 20_000):
        first = storage.query_blocks("app", -1, 64 * 1024, last=n)
        start = first.start_position
        records = 0
        for block in _all_blocks_from(storage, "app", start):
            records += sum(1 for p in block.record_positions() if p >= start)
        assert records == min(n, 12_000), n


def _all_blocks_from(storage: Storage, category: str, position: int) -> list[StoredBlock]:
    found: list[StoredBlock] = []
    while True:
        batch = storage.query_blocks(category, position, 64 * 1024)
        found += batch.blocks
        if batch.end_of_log:
            return found
        position = batch.next_position


def test_the_index_survives_a_restart_and_a_damaged_one_is_rebuilt(
    open_storage: OpenStorage, data_dir: Path
) -> None:
    """Closed segments leave a sidecar that the next open uses as it is; a sidecar that is
    truncated, flipped or of another size is ignored, the segment scanned and the sidecar
    written again; either way queries answer the same."""
    storage = open_storage(SMALL)
    _batches(storage, "app", 150)
    times = [b.received_ns for b in _all_blocks(storage, "app")]
    before = _sequences(_all_blocks(storage, "app", since_ns=times[100]))
    storage.close()
    segments = segment_files(data_dir, "app")
    sidecars = [index_path(p) for p in segments]
    assert all(s.exists() for s in sidecars)
    first = segments[0]
    loaded = SegmentIndex.load(index_path(first), _marker(first), first.stat().st_size)
    assert loaded is not None and loaded.records > 0

    damaged = index_path(segments[1])
    data = bytearray(damaged.read_bytes())
    data[40] ^= 0xFF
    damaged.write_bytes(bytes(data))
    index_path(segments[2]).unlink()
    index_path(segments[3]).write_bytes(b"garbage")

    storage = open_storage(SMALL)
    assert _sequences(_all_blocks(storage, "app", since_ns=times[100])) == before
    assert _sequences(_all_blocks(storage, "app")) == list(range(150))
    stats = storage.category_stats()
    assert [(s.category, s.records) for s in stats] == [("app", 150 * 100)]
    storage.close()
    for sidecar, segment in zip(sidecars[:4], segments[:4], strict=True):
        again = SegmentIndex.load(sidecar, _marker(segment), segment.stat().st_size)
        assert again is not None, sidecar


def test_a_clean_last_segment_without_its_sidecar_is_indexed_before_new_writes(
    open_storage: OpenStorage, data_dir: Path
) -> None:
    """After a clean close the last segment is not read again (the clean-shutdown record
    vouches for it; a scan budget of 0 reads nothing else); if its sidecar is gone, its
    index is built at the open, before the next writes: the last N and a time range that
    span the old and the new records are exact."""
    from dataclasses import replace

    policy = replace(SMALL, dedup_scan_bytes=0)
    storage = open_storage(policy)
    _batches(storage, "app", 10)
    storage.close()
    last = segment_files(data_dir, "app")[-1]
    index_path(last).unlink()

    storage = open_storage(policy)
    assert storage.recovery.clean_categories == 1 and storage.recovery.scanned_bytes == 0
    # Built at the open, not on first use: an index built by a read while writes go on
    # would miss the writes made between its scan and its taking over.
    assert storage._table.logs()["app"].segments[-1].index is not None
    for b in range(10, 20):
        storage.append([("app", b"after %d" % b)], producer="later", sequence=b)
    assert storage.category_stats()[0].records == 10 * 100 + 10
    start = storage.query_blocks("app", -1, 64 * 1024, last=105).start_position
    tail = _all_blocks_from(storage, "app", start)
    assert sum(1 for b in tail for p in b.record_positions() if p >= start) == 105
    first_new = _all_blocks(storage, "app", last=10)[0].received_ns
    assert [b.sequence for b in _all_blocks(storage, "app", since_ns=first_new)] == list(
        range(10, 20)
    )


def _marker(segment: Path) -> bytes:
    from logserver.storage._blocks import segment_format

    return segment_format(segment.read_bytes()[:32]).marker


def test_retention_deletes_the_index_with_its_segment(
    open_storage: OpenStorage, data_dir: Path
) -> None:
    storage = open_storage(
        StoragePolicy(
            segment_bytes=64 * 1024,
            retention_bytes=200 * 1024,
            fsync="never",
            compression=CompressionPolicy(algorithm="none"),
        )
    )
    _batches(storage, "app", 200)
    storage.close()
    directory = data_dir / "categories" / "app"
    seg = {p.stem for p in directory.glob("*.seg")}
    idx = {p.stem for p in directory.glob("*.idx")}
    assert idx <= seg and len(seg) < 10


def test_category_stats_come_from_the_index(open_storage: OpenStorage) -> None:
    """Records, bytes and first/last time per category, without reading records."""
    storage = open_storage(SMALL)
    _batches(storage, "a", 30)
    _batches(storage, "b", 3, size=5)
    blocks = _all_blocks(storage, "a")
    stats = {s.category: s for s in storage.category_stats()}
    assert stats["a"].records == 3000 and stats["b"].records == 15
    assert stats["a"].first_ns == blocks[0].received_ns
    assert stats["a"].last_ns == blocks[-1].received_ns
    assert stats["a"].bytes == sum(p.stat().st_size for p in segment_files(storage._data_dir, "a"))


def test_a_waiting_reader_is_woken_by_the_next_write(open_storage: OpenStorage) -> None:
    """wait_for_records returns as soon as a record is published past the position (a
    long poll), and at its timeout when nothing comes."""
    import threading

    storage = open_storage(StoragePolicy(fsync="always"))
    storage.append([("app", b"one")], producer="p", sequence=0)
    end = storage.query_blocks("app", -1).next_position
    assert not storage.wait_for_records("app", end, 0.05, lambda: False)
    woke = threading.Event()

    def waiter() -> None:
        if storage.wait_for_records("app", end, 30, lambda: False):
            woke.set()

    thread = threading.Thread(target=waiter)
    thread.start()
    storage.append([("app", b"two")], producer="p", sequence=1)
    thread.join(30)
    assert woke.is_set()
