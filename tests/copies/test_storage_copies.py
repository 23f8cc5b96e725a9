"""Storage's side of repair: holdings from headers, reading chosen batches, storing copies.

Real files in a temporary directory, storage opened and closed as a server does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from logserver.errors import InvalidRequestError
from logserver.storage import CopiedBlock, Storage, StoragePolicy, StoredBlock
from logwire.holdings import Span, pack_spans, unpack_spans

from ..storage.conftest import read_all


def copied(block: StoredBlock, **change: object) -> CopiedBlock:
    fields = {
        "producer": block.producer,
        "sequence": block.sequence,
        "received_ns": block.received_ns,
        "batch_count": block.batch_count,
        "index_runs": block.index_runs,
        "codec": block.codec,
        "raw_bytes": block.raw_bytes,
        "payload": block.payload,
    }
    fields.update(change)
    return CopiedBlock(**fields)  # type: ignore[arg-type]


def all_batches(storage: Storage, category: str) -> list[StoredBlock]:
    wanted = {p: [(0, 2**62)] for p in storage.copies.holdings(category).producers}
    found = storage.copies.read_batches(category, wanted)
    assert found.done
    return found.blocks


def spans(storage: Storage, category: str) -> dict[str, list[tuple[int, int, int]]]:
    view = storage.copies.holdings(category)
    return {
        p: [(s.first, s.last, s.records) for s in spans.spans()]
        for p, spans in view.producers.items()
    }


def test_holdings_list_each_producers_batches_per_category(tmp_path: Path) -> None:
    """Spans per category: a producer counting up is one span; batches that skip a category
    leave gaps there; Scribe records (no producer) are only counted."""
    with Storage.open(tmp_path / "d") as storage:
        for seq in range(5):
            storage.append([("a", f"a{seq}".encode())] * 2, producer="p", sequence=seq)
        storage.append([("b", b"b5")], producer="p", sequence=5)
        storage.append([("a", b"a6"), ("b", b"b6")], producer="p", sequence=6)
        storage.append([("a", b"q")], producer="q", sequence=9)
        storage.append([("a", b"scribe1"), ("a", b"scribe2")])
        assert spans(storage, "a") == {"p": [(0, 4, 10), (6, 6, 1)], "q": [(9, 9, 1)]}
        assert spans(storage, "b") == {"p": [(5, 6, 2)]}
        assert storage.copies.holdings("a").unidentified == 2
        assert storage.copies.holdings("nothing-here").producers == {}


def test_holdings_built_from_headers_after_a_restart_equal_the_ones_kept_live(
    tmp_path: Path,
) -> None:
    """The index a reopened storage builds from its segments (across rotations, both formats)
    is the index the writes kept, positions included."""
    data = tmp_path / "d"
    policy = StoragePolicy(segment_bytes=4096)
    with Storage.open(data, policy) as storage:
        storage.copies.holdings("a")  # built now, then kept current by the writes
        for seq in range(200):
            storage.append([("a", b"x" * 50), ("a", b"y" * 50)], producer="p", sequence=seq)
            if seq % 3 == 0:
                storage.append([("a", f"r{seq}".encode())], producer="r", sequence=seq)
        live = storage.copies.holdings("a")
    with Storage.open(data, StoragePolicy(segment_bytes=4096, segment_format=1)) as storage:
        storage.append([("a", b"v1")], producer="p", sequence=200)
        with_v1 = storage.copies.holdings("a")
    with Storage.open(data, policy) as storage:
        rebuilt = storage.copies.holdings("a")
        assert len(storage.copies.holdings("a").producers["r"]) == 67
    assert {p: s.spans() for p, s in rebuilt.producers.items()} == {
        p: s.spans() for p, s in with_v1.producers.items()
    }
    assert live.producers["p"].spans()[0][:3] == (0, 199, 400)
    assert rebuilt.producers["p"].spans()[0][:3] == (0, 200, 401)


def test_a_write_during_a_build_is_not_missed(tmp_path: Path) -> None:
    """Writers keep writing while the index is built; every batch ends up in it."""
    with Storage.open(tmp_path / "d", StoragePolicy(segment_bytes=8192)) as storage:
        for seq in range(300):
            storage.append([("a", b"z" * 100)], producer="p", sequence=seq)
        stop = threading.Event()

        def write() -> None:
            seq = 300
            while not stop.is_set() and seq < 2000:
                storage.append([("a", b"w")], producer="p", sequence=seq)
                seq += 1

        writer = threading.Thread(target=write)
        writer.start()
        try:
            storage.copies.holdings("a")
        finally:
            stop.set()
            writer.join(30)
        last = max(r.sequence for r in read_all(storage, "a"))
        assert [s[:2] for s in storage.copies.holdings("a").producers["p"].spans()] == [(0, last)]


def test_retention_drops_what_it_deleted_from_the_holdings(tmp_path: Path) -> None:
    policy = StoragePolicy(segment_bytes=4096, retention_bytes=8192)
    with Storage.open(tmp_path / "d", policy) as storage:
        storage.copies.holdings("a")
        for seq in range(100):
            storage.append([("a", b"x" * 200)], producer="p", sequence=seq)
        first_kept = read_all(storage, "a")[0].sequence
        assert first_kept > 0
        assert [s[:2] for s in storage.copies.holdings("a").producers["p"].spans()] == [
            (first_kept, 99)
        ]


def test_read_batches_ships_only_the_batches_asked_for_whole(tmp_path: Path) -> None:
    """Wanted ranges select blocks by producer and sequence; a multi-block batch part comes
    whole even past max_bytes; paging by next_position gets everything once."""
    with Storage.open(tmp_path / "d", StoragePolicy()) as storage:
        for seq in range(50):
            storage.append([("a", f"p{seq}".encode() * 10)], producer="p", sequence=seq)
            storage.append([("a", f"q{seq}".encode())], producer="q", sequence=seq)
        big = [("a", bytes([i % 251]) * 100_000) for i in range(100)]  # > 4 MiB: several blocks
        storage.append(big, producer="big", sequence=0)
        wanted = {"p": [(10, 12), (40, 41)], "big": [(0, 0)]}
        found = []
        position = 0
        for _ in range(100):
            page = storage.copies.read_batches("a", wanted, position, max_bytes=1)
            found += page.blocks
            position = page.next_position
            if page.done:
                break
        keys = [(b.producer, b.sequence) for b in found]
        assert keys.count(("big", 0)) > 1  # several blocks, all of them
        assert sorted(set(keys)) == sorted({("p", s) for s in (10, 11, 12, 40, 41)} | {("big", 0)})
        assert sum(b.records for b in found if b.producer == "big") == 100


def test_restore_keeps_the_original_identity_and_receive_time(tmp_path: Path) -> None:
    """A copied part reads back with the source's producer, sequence, indexes, batch size and
    receive time; a second copy of it is a duplicate; the source's other category is untouched."""
    with Storage.open(tmp_path / "src") as source, Storage.open(tmp_path / "dst") as target:
        source.append([("a", b"0"), ("b", b"1"), ("a", b"2")], producer="p", sequence=7)
        blocks = all_batches(source, "a")
        outcome = target.copies.restore("a", [copied(b) for b in blocks])
        assert (outcome.stored, outcome.duplicates, outcome.records) == (1, 0, 2)
        again = target.copies.restore("a", [copied(b) for b in blocks])
        assert (again.stored, again.duplicates) == (0, 1)
        original = [
            (r.message, r.producer, r.sequence, r.index, r.count, r.received_ns)
            for r in read_all(source, "a")
        ]
        copy = [
            (r.message, r.producer, r.sequence, r.index, r.count, r.received_ns)
            for r in read_all(target, "a")
        ]
        assert (
            copy
            == original
            == [
                (b"0", "p", 7, 0, 3, original[0][5]),
                (b"2", "p", 7, 2, 3, original[0][5]),
            ]
        )
        assert target.categories() == ["a"]
        assert spans(target, "a") == {"p": [(7, 7, 2)]}


def test_copies_are_in_the_time_index_at_their_original_times(tmp_path: Path) -> None:
    """Copies of several batches restored in one call: the category's first and last time and
    time-range queries go by their original receive times (the index notes a write of
    copies by its earliest and latest), also once the target's own newer batch follows."""
    with Storage.open(tmp_path / "src") as source, Storage.open(tmp_path / "dst") as target:
        for seq in range(3):
            source.append([("a", f"old{seq}".encode())], producer="p", sequence=seq)
        old = all_batches(source, "a")
        times = [b.received_ns for b in old]
        assert target.copies.restore("a", [copied(b) for b in old]).stored == 3
        (stats,) = target.category_stats()
        assert (stats.records, stats.first_ns, stats.last_ns) == (3, times[0], times[2])
        target.append([("a", b"new")], producer="q", sequence=0)
        (stats,) = target.category_stats()
        assert stats.records == 4 and stats.first_ns == times[0] and stats.last_ns > times[2]

        def between(since: int | None, until: int | None) -> list[bytes]:
            blocks = target.query_blocks("a", since_ns=since, until_ns=until).blocks
            return sorted(m for b in blocks for m in b.messages())

        assert between(times[1], None) == [b"new", b"old1", b"old2"]
        assert between(None, times[2]) == [b"old0", b"old1"]
        assert between(times[2], stats.last_ns) == [b"old2"]


def test_an_append_after_a_copy_stores_only_what_is_missing(tmp_path: Path) -> None:
    """The client's own copy of a batch that repair restored one category of arrives later:
    only the other category is written; then the batch is complete and a retry is a duplicate."""
    with Storage.open(tmp_path / "src") as source, Storage.open(tmp_path / "dst") as target:
        batch = [("a", b"0"), ("b", b"1"), ("a", b"2")]
        source.append(batch, producer="p", sequence=1)
        target.copies.restore("a", [copied(b) for b in all_batches(source, "a")])
        outcome = target.append(batch, producer="p", sequence=1)
        assert (outcome.stored, outcome.duplicate) == (1, False)
        assert target.append(batch, producer="p", sequence=1).duplicate
        assert [r.message for r in read_all(target, "a")] == [b"0", b"2"]
        assert [r.message for r in read_all(target, "b")] == [b"1"]


def test_a_copy_and_the_apps_own_send_of_a_batch_at_once_store_each_record_once(
    tmp_path: Path,
) -> None:
    """Repair restores one category of each batch while the app sends the same batches whole
    (a late copy, a spool replayed) on other threads: whichever comes first, every record is
    on disk once, and every batch counts as stored."""
    batches = {s: [("a", f"a{s}".encode()), ("b", f"b{s}".encode())] for s in range(300)}
    with Storage.open(tmp_path / "src") as source, Storage.open(tmp_path / "dst") as target:
        for seq, batch in batches.items():
            source.append(batch, producer="p", sequence=seq)
        parts = all_batches(source, "a")
        errors: list[BaseException] = []

        def run(work: Callable[[], None]) -> None:
            try:
                work()
            except BaseException as exc:
                errors.append(exc)

        def send(first: int) -> None:
            for seq in range(first, 300, 2):
                target.append(batches[seq], producer="p", sequence=seq)

        def restore() -> None:
            # Newest first: it meets the sends somewhere in the middle (here about a third
            # of the parts were restored before their batch came), so both orders happen.
            for block in reversed(parts):
                target.copies.restore("a", [copied(block)])

        threads = [
            threading.Thread(target=run, args=(work,))
            for work in (restore, lambda: send(0), lambda: send(1))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors == []
        for category in ("a", "b"):
            on_disk = sorted(r.message for r in read_all(target, category))
            assert on_disk == sorted(f"{category}{s}".encode() for s in range(300))
        assert all(
            target.append(batches[s], producer="p", sequence=s).duplicate for s in range(300)
        )


def test_copies_of_old_batches_count_towards_them_below_the_dedup_window(tmp_path: Path) -> None:
    """Repair copies one category of batches far below the producer's newest sequence (outside
    the deduplication window's recent sequences, between batches the target lacks whole): the
    app's late copy of each writes only the missing category, one never copied is written
    whole, every record is on disk once, and a retry of any of them is then a duplicate."""
    batches = {s: [("a", f"a{s}".encode()), ("b", f"b{s}".encode())] for s in range(40)}
    with (
        Storage.open(tmp_path / "src") as source,
        Storage.open(tmp_path / "dst", StoragePolicy(dedup_window=8)) as target,
    ):
        for seq, batch in batches.items():
            source.append(batch, producer="p", sequence=seq)
        for seq in range(20, 40):
            target.append(batches[seq], producer="p", sequence=seq)
        old = [b for b in all_batches(source, "a") if b.sequence < 20 and b.sequence % 2 == 0]
        outcome = target.copies.restore("a", [copied(b) for b in old])
        assert (outcome.stored, outcome.duplicates, outcome.records) == (10, 0, 10)
        stored = {s: target.append(batches[s], producer="p", sequence=s).stored for s in range(20)}
        assert stored == {s: 1 if s % 2 == 0 else 2 for s in range(20)}
        for category in ("a", "b"):
            on_disk = sorted(r.message for r in read_all(target, category))
            assert on_disk == sorted(f"{category}{s}".encode() for s in range(40))
        assert [s[:3] for s in target.copies.holdings("b").producers["p"].spans()] == [(0, 39, 40)]
        # Completed, they are stored batches like any other (kept below the window's bitmap
        # as a range): the producer's retry of one is a duplicate.
        assert all(target.append(batches[s], producer="p", sequence=s).duplicate for s in range(20))


def test_a_restored_part_survives_a_restart_and_counts_towards_its_batch(tmp_path: Path) -> None:
    """After a restart, recovery counts restored parts like any block: the batch whose every
    category was restored is a duplicate to its producer's retry."""
    with Storage.open(tmp_path / "src") as source:
        batch = [("a", b"0"), ("b", b"1")]
        source.append(batch, producer="p", sequence=3)
        parts = {c: all_batches(source, c) for c in ("a", "b")}
    with Storage.open(tmp_path / "dst") as target:
        for category, blocks in parts.items():
            target.copies.restore(category, [copied(b) for b in blocks])
    with Storage.open(tmp_path / "dst") as target:
        assert target.append(batch, producer="p", sequence=3).duplicate
        assert spans(target, "b") == {"p": [(3, 3, 1)]}


def test_restore_into_a_format_1_segment_keeps_everything_readers_see(tmp_path: Path) -> None:
    with (
        Storage.open(tmp_path / "src") as source,
        Storage.open(tmp_path / "dst", StoragePolicy(segment_format=1)) as target,
    ):
        source.append([("a", b"x"), ("c", b"-"), ("a", b"y")], producer="p", sequence=0)
        target.copies.restore("a", [copied(b) for b in all_batches(source, "a")])
        got = [(r.message, r.index, r.count, r.received_ns) for r in read_all(target, "a")]
        want = [(r.message, r.index, r.count, r.received_ns) for r in read_all(source, "a")]
        assert got == want


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"producer": ""}, "producer"),
        ({"producer": "p\n"}, "producer"),
        ({"sequence": -1}, "sequence"),
        ({"batch_count": 1}, "outside a batch"),
        ({"index_runs": ()}, "no records"),
        ({"index_runs": ((1, 1), (0, 1))}, "ascending"),
        ({"raw_bytes": 3}, ""),
        ({"payload": b"garbage!"}, ""),
        ({"codec": 9}, ""),
        ({"received_ns": -5}, "received_ns"),
    ],
)
def test_restore_refuses_blocks_a_reader_could_not_rely_on(
    tmp_path: Path, change: dict[str, object], match: str
) -> None:
    """Anyone who may write may call Restore: every field is checked before a byte is written."""
    with Storage.open(tmp_path / "src") as source, Storage.open(tmp_path / "dst") as target:
        source.append([("a", b"0"), ("a", b"1")], producer="p", sequence=0)
        (block,) = all_batches(source, "a")
        with pytest.raises(InvalidRequestError, match=match or None):
            target.copies.restore("a", [copied(block, **change)])
        assert target.categories() == []


def test_restore_refuses_a_batch_in_two_pieces_or_overlapping(tmp_path: Path) -> None:
    with Storage.open(tmp_path / "src") as source, Storage.open(tmp_path / "dst") as target:
        source.append([("a", b"0")], producer="p", sequence=0)
        source.append([("a", b"1")], producer="p", sequence=1)
        one, two = all_batches(source, "a")
        with pytest.raises(InvalidRequestError, match="not together"):
            target.copies.restore("a", [copied(one), copied(two), copied(one)])
        with pytest.raises(InvalidRequestError, match="overlap"):
            target.copies.restore("a", [copied(one), copied(one)])
        assert read_all(target, "a") == []


def test_spans_on_the_wire_are_checked() -> None:
    good = [Span(0, 4, 10, 0, 100), Span(6, 6, 1, 200, 200)]
    assert unpack_spans(pack_spans(good)) == good
    from logwire.errors import HoldingsError

    for bad in (
        [Span(5, 4, 1, 0, 0)],
        [Span(0, 4, 1, 0, 0), Span(3, 9, 1, 0, 0)],
        [Span(0, 0, -1, 0, 0)],
    ):
        with pytest.raises(HoldingsError):
            unpack_spans(pack_spans(bad))
    with pytest.raises(HoldingsError):
        unpack_spans(b"\x00" * 39)
