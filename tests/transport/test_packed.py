"""What must hold for the column codec (``logwire.packed``) that AppendPacked carries."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logwire.packed import PackedError, pack_entries, record_count, unpack_records

_entries = st.lists(
    st.tuples(st.sampled_from(["app", "d\u00e9j\u00e0", "x"]), st.binary(max_size=50)), max_size=80
)


@settings(max_examples=300, deadline=None)
@given(entries=_entries)
def test_unpack_gives_back_exactly_what_was_packed(entries: list) -> None:
    """Property: any batch survives the round trip, order and categories included."""
    columns = pack_entries(entries)
    assert record_count(columns.lengths) == len(entries)
    assert unpack_records(*columns) == entries
    assert sum(n for _, n in columns.runs) == len(entries)


@settings(max_examples=300, deadline=None)
@given(
    entries=_entries.filter(bool),
    cut=st.integers(1, 3),
    extra=st.binary(min_size=1, max_size=5),
    bump=st.integers(-3, 3).filter(bool),
)
def test_columns_that_disagree_are_refused_with_packed_error(
    entries: list, cut: int, extra: bytes, bump: int
) -> None:
    """Property: a torn lengths column, messages too short or too long, or run counts
    that do not add up raise PackedError, never anything else and never a wrong batch."""
    runs, lengths, messages = pack_entries(entries)
    with pytest.raises(PackedError):
        unpack_records(runs, lengths[:-cut], messages)
    with pytest.raises(PackedError):
        unpack_records(runs, lengths, messages + extra)
    if messages:
        with pytest.raises(PackedError):
            unpack_records(runs, lengths, messages[:-1])
    category, count = runs[-1]
    with pytest.raises(PackedError):
        unpack_records([*runs[:-1], (category, count + bump)], lengths, messages)


def test_a_run_must_count_at_least_one_record() -> None:
    with pytest.raises(PackedError, match="count 0"):
        unpack_records([("a", 1), ("b", 0)], struct.pack(">I", 1), b"x")
    with pytest.raises(PackedError, match="count -1"):
        unpack_records([("a", 2), ("b", -1)], struct.pack(">I", 1), b"x")


def test_an_empty_batch_is_empty() -> None:
    assert unpack_records([], b"", b"") == []
    assert pack_entries([]) == ([], b"", b"")
