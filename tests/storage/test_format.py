"""The record format on its own: encoding, decoding in chunks, resynchronising."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from logserver.storage._format import (
    MAGIC,
    Damage,
    Frame,
    ReadAt,
    encode_records,
    scan_writes,
    walk,
)


def _reader(data: bytes) -> ReadAt:
    return lambda offset, size: data[offset : offset + size]


def test_encode_then_walk_in_any_chunk_size() -> None:
    """Records decode the same whatever the read chunk (records straddle chunk borders); the
    last record of each write carries the END flag."""
    data = encode_records(b"prod", 9, 5, 123, [0, 2, 4], [b"a", b"b" * 300, b""])
    data += encode_records(b"", -1, 1, 124, range(1), [b"solo"])
    expected = list(walk(_reader(data), 0, len(data)))
    frames = [f for f in expected if isinstance(f, Frame)]
    assert frames == expected
    assert [f.message for f in frames] == [b"a", b"b" * 300, b"", b"solo"]
    assert [f.ends_write for f in frames] == [False, False, True, True]
    first = frames[0]
    assert (first.producer, first.sequence, first.batch_index, first.batch_count) == (
        b"prod",
        9,
        0,
        5,
    )
    for chunk in (1, 7, 40, 41, 100, 1000):
        assert list(walk(_reader(data), 0, len(data), chunk)) == expected


def test_walk_resynchronises_after_damage_even_across_chunks() -> None:
    """Garbage between records is reported as one Damage range ending at the next record."""
    one = encode_records(b"p", 1, 1, 1, [0], [b"first"])
    two = encode_records(b"p", 2, 1, 1, [0], [b"second"])
    garbage = b"\x00junk" + MAGIC + b"\xff" * 200 + MAGIC[:2]
    data = one + garbage + two
    for chunk in (3, 50, 1 << 20):
        items = list(walk(_reader(data), 0, len(data), chunk))
        assert items[1] == Damage(len(one), len(one) + len(garbage))
        assert [i.message for i in items if isinstance(i, Frame)] == [b"first", b"second"]


def test_record_running_past_the_stop_is_damage() -> None:
    """A record claiming more bytes than the trusted end is not returned (a torn tail)."""
    data = encode_records(b"p", 1, 2, 1, range(2), [b"x" * 50, b"y" * 50])
    stop = len(data) - 1
    items = list(walk(_reader(data), 0, stop))
    assert isinstance(items[0], Frame)
    assert isinstance(items[1], Damage) and items[1].end == stop


@settings(max_examples=200)
@given(st.text())
def test_magic_never_occurs_in_utf8_text(text: str) -> None:
    """Text messages cannot contain the magic, so they can never fake a record boundary."""
    assert MAGIC not in text.encode("utf-8")


@settings(max_examples=150, deadline=None)
@given(
    writes=st.lists(
        st.tuples(st.binary(max_size=8), st.lists(st.binary(max_size=90), min_size=1, max_size=4)),
        min_size=1,
        max_size=8,
    ),
    damage_at=st.floats(0, 1),
    garbage=st.binary(max_size=60),
    chunk=st.sampled_from([41, 64, 100, 4096]),
)
def test_fast_scan_agrees_with_walk(
    writes: list[tuple[bytes, list[bytes]]], damage_at: float, garbage: bytes, chunk: int
) -> None:
    """Recovery's scan and the readers' walk see the same records, damage and complete writes,
    whatever the buffer size (records straddling buffers)."""
    data = b"".join(
        encode_records(producer, sequence, len(msgs), 1, range(len(msgs)), msgs)
        for sequence, (producer, msgs) in enumerate(writes)
    )
    at = int(damage_at * len(data))
    data = data[:at] + garbage + data[at + len(garbage) // 2 :]
    items = list(walk(_reader(data), 0, len(data), chunk))
    written: list[list[tuple[bytes, int, int, int]]] = []
    found = scan_writes(
        _reader(data),
        len(data),
        lambda runs: written.append([(r.producer, r.sequence, r.first, r.last) for r in runs]),
        mark_spacing=100,
        chunk=chunk,
    )
    assert found.damages == [i for i in items if isinstance(i, Damage)]
    frames = [i for i in items if isinstance(i, Frame)]
    ends = [f.end for f in frames if f.ends_write]
    assert found.complete_end == (ends[-1] if ends else 0)
    assert set(found.marks) <= {0} | {f.offset for f in frames}
    with_producer = [f for f in frames if f.producer and f.end <= found.complete_end]
    flat = [(p, s, i) for runs in written for (p, s, a, b) in runs for i in range(a, b + 1)]
    assert flat == [(f.producer, f.sequence, f.batch_index) for f in with_producer]
