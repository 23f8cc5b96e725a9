"""The reader's memory of what it showed: exact for every order copies can arrive in, and
as small as the batches' sequences are dense."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from logserver.reader._seen import IntervalSet, SeenRecords


def test_interval_set_merges_what_touches_and_reports_what_is_missing() -> None:
    """Adjacent and overlapping ranges merge into one interval; missing() is the exact
    complement within a range."""
    s = IntervalSet()
    s.add(5, 10)
    s.add(0, 5)
    s.add(12, 14)
    assert list(s.ranges()) == [(0, 10), (12, 14)]
    s.add(9, 13)
    assert list(s.ranges()) == [(0, 14)]
    assert s.missing(-2, 20) == [(-2, 0), (14, 20)]
    assert s.covers(3, 14) and not s.covers(3, 15)
    assert 13 in s and 14 not in s and -1 not in s


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 60), st.integers(0, 12)), max_size=30))
def test_interval_set_is_a_set_of_ints(ranges: list[tuple[int, int]]) -> None:
    """Whatever ranges are added, in any order, the set holds exactly their ints, in
    disjoint non-adjacent intervals, and missing() is the complement."""
    s = IntervalSet()
    model: set[int] = set()
    for lo, n in ranges:
        s.add(lo, lo + n)
        model |= set(range(lo, lo + n))
    assert {i for lo, hi in s.ranges() for i in range(lo, hi)} == model
    bounds = [b for r in s.ranges() for b in r]
    assert bounds == sorted(bounds) and len(set(bounds)) == len(bounds)
    assert {i for lo, hi in s.missing(0, 80) for i in range(lo, hi)} == set(range(80)) - model


def test_one_interval_for_a_day_of_dense_batches() -> None:
    """100,000 batches of one producer seen in a shuffled-but-local order (three servers
    interleaved) end as one interval: memory follows gaps, not batches."""
    seen = SeenRecords()
    order = list(range(100_000))
    for start in range(0, len(order), 3):
        window = order[start : start + 3]
        random.Random(start).shuffle(window)
        order[start : start + 3] = window
    for sequence in order:
        assert seen.admit(("p", sequence), 0, [(0, 10, 0)]) == [(0, 10)]
        seen.finish(("p", sequence))
    assert seen.intervals() == 1 and seen.partial_batches() == 0


def test_a_copy_arriving_later_is_dropped_whole_or_in_part() -> None:
    """A failover copy after the batch was shown is dropped; a whole batch after one of
    its split halves shows only the records the half did not have."""
    seen = SeenRecords()
    assert seen.admit(("p", 7), 0, [(0, 100, 0)]) == [(0, 100)]
    seen.finish(("p", 7))
    assert seen.admit(("p", 7), 0, [(0, 100, 0)]) == []
    half, offset = SeenRecords.batch_of("p@8", 40)
    assert (half, offset) == (("p", 8), 40)
    assert seen.admit(half, offset, [(0, 20, 0)]) == [(0, 20)]  # records 40..59
    # The whole batch 8 (100 records) from another server: 0..39 and 60..99 are new.
    assert seen.admit(("p", 8), 0, [(0, 100, 0)]) == [(0, 40), (60, 40)]
    assert seen.duplicates == 100 + 20


def test_a_batch_spread_over_blocks_is_exact_record_by_record() -> None:
    """Blocks of one batch (several categories interleaved: index runs) from two servers,
    cut differently, each record once."""
    seen = SeenRecords()
    shown: list[int] = []
    # Server A: indexes 0-9 and 20-29 of batch 3, as two pieces of one block.
    for first, n in seen.admit(("p", 3), 0, [(0, 10, 0), (20, 10, 10)]):
        shown += [*range(first, first + n)]
    # Server B: indexes 5-24 as one block (records 0..19).
    fresh = seen.admit(("p", 3), 0, [(5, 20, 0)])
    assert fresh == [(5, 10)]  # indexes 10..19
    assert seen.admitted == 30 and seen.duplicates == 10
