"""A batch retried with the same (producer, sequence) is stored once, also after restart."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logserver.errors import StorageUnavailableError
from logserver.storage import AppendOutcome, StoragePolicy
from logserver.storage._dedup import MAX_OLD_RANGES, Claim, DedupIndex, SequenceWindow
from tests.storage.conftest import FaultyDisk, OpenStorage, messages, read_all, segment_files


def test_retry_is_acknowledged_not_stored(open_storage: OpenStorage) -> None:
    """The second append of a (producer, sequence) returns duplicate=True and writes nothing;
    another sequence or another producer is a new batch."""
    storage = open_storage()
    batch = [("c", b"a"), ("c", b"b")]
    assert storage.append(batch, "p1", 5) == AppendOutcome(2, False)
    assert storage.append(batch, "p1", 5) == AppendOutcome(0, True)
    assert storage.append(batch, "p1", 6) == AppendOutcome(2, False)
    assert storage.append(batch, "p2", 5) == AppendOutcome(2, False)
    assert len(read_all(storage, "c")) == 6
    assert storage.stats().duplicates == 1


def test_without_producer_nothing_is_deduplicated(open_storage: OpenStorage) -> None:
    """Scribe's Log has no producer: identical batches are all stored."""
    storage = open_storage()
    for _ in range(3):
        assert storage.append([("c", b"same")]) == AppendOutcome(1, False)
    assert len(read_all(storage, "c")) == 3


def test_dedup_survives_restart(open_storage: OpenStorage) -> None:
    """After close and open, batches stored before (in one or several categories) are still
    recognised as duplicates, rebuilt from the records on disk."""
    storage = open_storage(StoragePolicy(fsync="never"))
    storage.append([("a", b"1"), ("b", b"2"), ("a", b"3")], "p", 1)
    storage.append([("a", b"4")], "p", 2)
    storage.append([("a", b"5")], "q", 1)
    storage.close()

    again = open_storage()
    assert again.append([("a", b"1"), ("b", b"2"), ("a", b"3")], "p", 1).duplicate
    assert again.append([("a", b"4")], "p", 2).duplicate
    assert again.append([("a", b"5")], "q", 1).duplicate
    assert not again.append([("a", b"6")], "p", 3).duplicate
    assert messages(read_all(again, "a")) == [b"1", b"3", b"4", b"5", b"6"]


def test_batch_missing_a_torn_category_is_not_stored_after_restart(
    open_storage: OpenStorage, data_dir: Path
) -> None:
    """A batch spanning two categories whose second part was torn off (crash mid-batch) is not
    a duplicate after restart: its retry is written, and only the missing records are added,
    so every record of the batch ends up stored exactly once."""
    storage = open_storage()
    storage.append([("a", b"before")], "p", 1)
    storage.append([("b", b"before")], "p", 2)
    storage.append([("a", b"a0"), ("b", b"b1"), ("a", b"a2"), ("b", b"b3")], "p", 3)
    storage.close()
    # Simulate the crash: the write to "b" was torn halfway through its last record.
    (b_segment,) = segment_files(data_dir, "b")
    size = b_segment.stat().st_size
    with b_segment.open("r+b") as f:
        f.truncate(size - 20)

    again = open_storage()
    assert messages(read_all(again, "b")) == [b"before"]  # the unfinished write is cut off
    outcome = again.append([("a", b"a0"), ("b", b"b1"), ("a", b"a2"), ("b", b"b3")], "p", 3)
    assert outcome == AppendOutcome(stored=2, duplicate=False)
    assert messages(read_all(again, "a")) == [b"before", b"a0", b"a2"]
    assert messages(read_all(again, "b")) == [b"before", b"b1", b"b3"]
    assert [r.index for r in read_all(again, "b")] == [0, 1, 3]
    # Now complete: a further retry is a duplicate, also after another restart.
    assert again.append([("a", b"a0"), ("b", b"b1"), ("a", b"a2"), ("b", b"b3")], "p", 3).duplicate
    again.close()
    assert open_storage().append([("a", b"a0")] * 4, "p", 3).duplicate


def test_concurrent_same_batch_waits_for_the_first(open_storage: OpenStorage) -> None:
    """Two threads appending the same (producer, sequence) at once: one stores it, the other
    waits for that outcome and reports a duplicate; the batch is stored once."""
    storage = open_storage()
    outcomes: list[AppendOutcome] = []
    barrier = threading.Barrier(8)

    def send() -> None:
        barrier.wait()
        outcomes.append(storage.append([("c", b"only once")], "p", 42))

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(o.duplicate for o in outcomes) == [False] + [True] * 7
    assert messages(read_all(storage, "c")) == [b"only once"]


def test_waiter_writes_when_the_first_attempt_fails(open_storage: OpenStorage) -> None:
    """If the first append of a batch fails (sync error), it is not remembered: the retry
    (or a concurrent waiter) writes it."""
    disk = FaultyDisk()
    storage = open_storage(disk=disk)
    disk.sync_error = 5  # EIO
    with pytest.raises(StorageUnavailableError):
        storage.append([("c", b"x")], "p", 1)
    disk.sync_error = None
    assert storage.append([("c", b"x")], "p", 1) == AppendOutcome(1, False)


def test_first_failure_releases_a_concurrent_waiter() -> None:
    """DedupIndex: a thread waiting on an in-flight claim gets the claim when the first
    attempt fails, and a duplicate answer when it succeeds."""
    index = DedupIndex(window=10, max_producers=10)
    first = index.begin("p", 1)
    assert first is not None
    results: list[Claim | None] = []
    waiter = threading.Thread(target=lambda: results.append(index.begin("p", 1)))
    waiter.start()
    waiter.join(timeout=0.1)
    assert waiter.is_alive()  # blocked behind the in-flight claim
    index.finish(first, stored=False)
    waiter.join(timeout=5)
    (second,) = results
    assert second is not None
    index.finish(second, stored=True)
    assert index.begin("p", 1) is None


def test_window_and_producer_bounds() -> None:
    """Memory is bounded: per producer the sequences within ``window`` of its highest (and a
    few ranges below), and at most ``max_producers`` producers (least recently used
    forgotten first). A forgotten batch gets a claim: it is stored again, never lost."""
    index = DedupIndex(window=3, max_producers=2)
    for sequence in (0, 10, 11, 12, 14):
        claim = index.begin("a", sequence)
        assert claim is not None
        index.finish(claim, stored=True)
    assert index.begin("a", 14) is None and index.begin("a", 12) is None
    assert index.begin("a", 11) is None  # slid out of the bitmap into a range below it
    assert index.held("a") == [(0, 0), (10, 12), (14, 14)]
    never = index.begin("a", 13)  # never stored: a claim, whatever the window holds
    assert never is not None
    index.finish(never, stored=False)
    for producer in ("b", "c"):
        claim = index.begin(producer, 0)
        assert claim is not None
        index.finish(claim, stored=True)
    assert len(index) == 2
    forgotten = index.begin("a", 14)
    assert forgotten is not None  # "a" was the least recently used producer
    assert index.held("a") == []


def test_sequence_window_ranges() -> None:
    """SequenceWindow keeps the sequences added, in any arrival order, and reports them as
    merged ranges; below its bitmap it keeps the highest MAX_OLD_RANGES ranges."""
    window = SequenceWindow()
    for sequence in [5, 3, 4, 10, 1, 2, 11, 7]:
        window.add(sequence, capacity=100)
    assert [s for s in range(13) if s in window] == [1, 2, 3, 4, 5, 7, 10, 11]
    assert repr(window) == "<SequenceWindow 1..5, 7..7, 10..11>"
    assert len(window) == 8
    for sequence in range(1000, 2000, 2):  # every other one: 500 ranges, far above
        window.add(sequence, capacity=100)
    ranges = window.ranges()
    assert ranges[-50:] == [(s, s) for s in range(1900, 2000, 2)]
    below = [r for r in ranges if r[1] < 1900]
    assert len(below) == MAX_OLD_RANGES
    assert below[0] == (1900 - 2 * MAX_OLD_RANGES, 1900 - 2 * MAX_OLD_RANGES)
    assert 11 not in window and 1 not in window  # forgotten: stored again if retried


def test_a_counting_producer_is_remembered_in_one_range() -> None:
    """A producer whose every batch came here (sequences counting up) is remembered whole,
    however long, in the bitmap plus one range; a producer spread over three servers
    costs one fixed-size bitmap (the figure: at most capacity bits and 16 ranges)."""
    counting = SequenceWindow()
    for sequence in range(100_000):
        counting.add(sequence, capacity=4096)
    assert counting.ranges() == [(0, 99_999)]
    assert 0 in counting and 99_999 in counting and 100_000 not in counting
    spread = SequenceWindow()
    for sequence in range(0, 300_000, 3):
        spread.add(sequence, capacity=4096)
    assert spread._bits.bit_length() <= 4096
    assert len(spread._lo) <= MAX_OLD_RANGES
    recent = range(300_000 - 4096, 300_000)
    assert [s for s in recent if s in spread] == [s for s in recent if s % 3 == 0]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.integers(-50, 400),
            st.integers(-(2**63), 2**63 - 1),
        ),
        max_size=300,
    ),
    st.integers(1, 64),
)
def test_a_window_never_claims_a_sequence_it_was_not_given(adds: list[int], capacity: int) -> None:
    """The property that makes forgetting safe: a window contains only sequences that were
    added (a "duplicate" answer is never wrong), and always those within ``capacity`` of
    the highest (a retry of a recent batch is always recognised)."""
    window = SequenceWindow()
    for sequence in adds:
        window.add(sequence, capacity)
    added = set(adds)
    probes = added | {s + d for s in adds for d in (-1, 1)} | set(range(-60, 410))
    assert all(s in added for s in probes if s in window)
    if adds:
        high = max(adds)
        assert all(s in window for s in added if high - s < capacity)
    ranges = window.ranges()
    assert all(lo <= hi < nxt - 1 for (lo, hi), (nxt, _) in itertools.pairwise(ranges))
    assert all(lo in window and hi in window for lo, hi in ranges)
    assert len(window._lo) <= MAX_OLD_RANGES


def test_dedup_scan_budget_limits_what_is_remembered(open_storage: OpenStorage) -> None:
    """Only the newest dedup_scan_bytes per category are read at open (older segments are not
    scanned): a retry of a batch older than that is stored again (at least once, never lost)."""
    policy = StoragePolicy(segment_bytes=4096, dedup_scan_bytes=4096, fsync="never")
    storage = open_storage(policy)
    for sequence in range(40):
        storage.append([("c", b"x" * 200)], "p", sequence)
    storage.close()
    again = open_storage(policy)
    assert again.append([("c", b"x" * 200)], "p", 39).duplicate
    assert not again.append([("c", b"x" * 200)], "p", 0).duplicate
