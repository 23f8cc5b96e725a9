"""The version-2 block format on its own: encoding, decoding in chunks, resynchronising, and
what a message's bytes can and cannot make a reader believe."""

from __future__ import annotations

import os
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logserver.storage._blockcodec import BLOCK_HEADER_BYTES, FLAG_END, Block, encode_block
from logserver.storage._blocks import (
    SEGMENT_HEADER_BYTES,
    SegmentFormat,
    new_marker,
    segment_format,
    segment_header,
)
from logserver.storage._blockscan import scan_blocks, walk_blocks
from logserver.storage._columns import Payload, decode_messages, index_runs, payloads, slice_runs
from logserver.storage._format import Damage, ReadAt, encode_records
from logwire.compression import NONE, ZSTD, CompressionPolicy

MARKER = bytes(range(16))


def _reader(data: bytes) -> ReadAt:
    return lambda offset, size: data[offset : offset + size]


def _write(
    marker: bytes,
    producer: bytes,
    sequence: int,
    messages: list[bytes],
    *,
    batch_count: int | None = None,
    runs: list[tuple[int, int]] | None = None,
    policy: CompressionPolicy | None = None,
    received_ns: int = 1,
) -> bytes:
    """One write: the blocks of one category's part of a batch, the last with END."""
    runs = runs or [(0, len(messages))]
    parts = payloads(runs, messages, policy or CompressionPolicy())
    return b"".join(
        _frame(marker, producer, sequence, batch_count or len(messages), received_ns, part, last)
        for last, part in ((k == len(parts) - 1, p) for k, p in enumerate(parts))
    )


def _frame(
    marker: bytes,
    producer: bytes,
    sequence: int,
    batch_count: int,
    ns: int,
    part: Payload,
    end: bool,
) -> bytes:
    return encode_block(
        marker,
        producer=producer,
        sequence=sequence,
        batch_count=batch_count,
        received_ns=ns,
        index_runs=part.index_runs,
        codec=part.codec,
        raw_bytes=part.raw_bytes,
        payload=part.data,
        end=end,
    )


def _messages(block: Block) -> list[bytes]:
    return decode_messages(block.codec, block.payload, block.raw_bytes, block.records)


def test_blocks_decode_the_same_in_any_chunk_size() -> None:
    """Blocks straddling read chunks decode the same; identity, indexes and messages survive."""
    data = _write(
        MARKER, b"prod", 9, [b"a", b"\xff\xfe" * 300, b""], batch_count=5, runs=[(0, 1), (2, 2)]
    )
    data += _write(MARKER, b"", -1, [b"solo"] * 40)
    expected = list(walk_blocks(_reader(data), MARKER, 0, len(data)))
    assert all(isinstance(b, Block) for b in expected)
    first, second = expected
    assert isinstance(first, Block) and isinstance(second, Block)
    assert _messages(first) == [b"a", b"\xff\xfe" * 300, b""]
    assert first.indexes() == [0, 2, 3]
    assert (first.producer, first.sequence, first.batch_count, first.ends_write) == (
        b"prod",
        9,
        5,
        True,
    )
    assert _messages(second) == [b"solo"] * 40 and second.codec == ZSTD
    for chunk in (1, 7, 64, 65, 100, 1000):
        assert list(walk_blocks(_reader(data), MARKER, 0, len(data), chunk)) == expected


def test_every_record_has_a_position_of_its_own() -> None:
    """A block of many tiny records is padded to at least one byte per record, so record i of
    the block at b sits at b + i and never collides with the next block."""
    tiny = [b""] * 5000
    data = _write(MARKER, b"p", 1, tiny)
    (block,) = walk_blocks(_reader(data), MARKER, 0, len(data))
    assert isinstance(block, Block)
    assert block.end - block.offset == 5000
    assert _messages(block) == tiny
    small = _write(MARKER, b"p", 2, [b"x"])
    assert len(small) == BLOCK_HEADER_BYTES + len(b"p") + 4 + 1  # header, producer, columns


def test_random_bytes_are_stored_raw_and_never_grow() -> None:
    """Incompressible messages: the block's payload is the columns as they are."""
    noise = [os.urandom(100) for _ in range(50)]
    data = _write(MARKER, b"p", 1, noise)
    (block,) = walk_blocks(_reader(data), MARKER, 0, len(data))
    assert isinstance(block, Block)
    assert block.codec in (NONE, ZSTD)
    assert len(data) <= BLOCK_HEADER_BYTES + 1 + 50 * 104
    assert _messages(block) == noise


def test_a_large_write_becomes_several_blocks_only_the_last_ends_it() -> None:
    """Past the block target a write is cut into blocks; indexes carry on across them."""
    big = [os.urandom(1000) for _ in range(9000)]  # 9 MB, incompressible
    data = _write(MARKER, b"p", 3, big)
    blocks = [b for b in walk_blocks(_reader(data), MARKER, 0, len(data)) if isinstance(b, Block)]
    assert len(blocks) == 3
    assert [b.ends_write for b in blocks] == [False, False, True]
    assert [i for b in blocks for i in b.indexes()] == list(range(9000))
    assert [m for b in blocks for m in _messages(b)] == big


def test_damage_is_skipped_up_to_the_next_real_block() -> None:
    one = _write(MARKER, b"p", 1, [b"first"])
    two = _write(MARKER, b"p", 2, [b"second"])
    garbage = b"\x00junk" + MARKER + b"\xff" * 200 + MARKER[:5]
    data = one + garbage + two
    for chunk in (3, 50, 1 << 20):
        items = list(walk_blocks(_reader(data), MARKER, 0, len(data), chunk))
        assert items[1] == Damage(len(one), len(one) + len(garbage))
        assert [_messages(i) for i in items if isinstance(i, Block)] == [[b"first"], [b"second"]]


def test_a_block_forged_inside_a_message_is_never_taken_for_a_real_one() -> None:
    """A message holding a complete, valid block (with any marker but the segment's secret
    one) is data: without damage it is never parsed; after damage just before it, resync
    skips it and resumes at the next real block."""
    forged = _write(
        new_marker(), b"victim", 7, [b"forged record"], policy=CompressionPolicy("none")
    )
    forged_v1 = encode_records(b"victim", 7, 1, 1, [0], [b"forged v1 record"])
    message = b"prefix" + forged + forged_v1 + forged
    real = _write(MARKER, b"attacker", 1, [message], policy=CompressionPolicy("none"))
    after = _write(MARKER, b"p", 2, [b"after"])
    data = real + after
    blocks = [b for b in walk_blocks(_reader(data), MARKER, 0, len(data)) if isinstance(b, Block)]
    assert [_messages(b) for b in blocks] == [[message], [b"after"]]
    # Damage the real block's header: the walk resyncs past the forged blocks.
    damaged = bytearray(data)
    damaged[20] ^= 0xFF
    items = list(walk_blocks(_reader(bytes(damaged)), MARKER, 0, len(damaged)))
    assert items[0] == Damage(0, len(real))
    assert [_messages(b) for b in items if isinstance(b, Block)] == [[b"after"]]


def test_a_forged_block_with_the_real_marker_still_needs_a_valid_check() -> None:
    """Even a forger who knew the marker gets nowhere with a wrong check; this is why the
    marker stays secret (see the format's docstring)."""
    real = _write(MARKER, b"p", 1, [b"x" * 100], policy=CompressionPolicy("none"))
    bad = bytearray(real)
    bad[-1] ^= 1
    items = list(walk_blocks(_reader(bytes(bad)), MARKER, 0, len(bad)))
    assert items == [Damage(0, len(bad))]


def test_block_running_past_the_stop_is_damage() -> None:
    data = _write(MARKER, b"p", 1, [b"x" * 50, b"y" * 50])
    items = list(walk_blocks(_reader(data), MARKER, 0, len(data) - 1))
    assert items == [Damage(0, len(data) - 1)]


def test_segment_formats_are_told_apart() -> None:
    """A version-2 header, a version-1 segment, an empty or torn file, and a future version."""
    header = segment_header(MARKER)
    assert len(header) == SEGMENT_HEADER_BYTES
    assert segment_format(header) == SegmentFormat(2, MARKER, SEGMENT_HEADER_BYTES)
    assert segment_format(encode_records(b"p", 1, 1, 1, [0], [b"m"])).version == 1
    assert segment_format(b"").version == 0
    assert segment_format(header[:20]).version == 0
    broken = bytearray(header)
    broken[12] ^= 1
    assert segment_format(bytes(broken)).version == 0
    future = header[:8] + struct.pack("<H", 3) + header[10:28]
    future += struct.pack("<I", zlib.crc32(future))
    assert segment_format(future).version == 3


def test_index_runs_and_slices() -> None:
    assert index_runs(range(3, 8)) == [(3, 5)]
    assert index_runs([0, 1, 2, 5, 7, 8]) == [(0, 3), (5, 1), (7, 2)]
    assert index_runs([]) == []
    runs = [(0, 3), (5, 1), (7, 2)]
    assert slice_runs(runs, 0, 6) == runs
    assert slice_runs(runs, 2, 5) == [(2, 1), (5, 1), (7, 1)]
    assert slice_runs(runs, 4, 6) == [(7, 2)]


@settings(max_examples=150, deadline=None)
@given(
    writes=st.lists(
        st.tuples(
            st.binary(max_size=8),
            st.lists(st.binary(max_size=90), min_size=1, max_size=6),
            st.sampled_from(["zstd", "none"]),
        ),
        min_size=1,
        max_size=8,
    ),
    damage_at=st.floats(0, 1),
    garbage=st.binary(max_size=60),
    chunk=st.sampled_from([41, 64, 100, 4096]),
)
def test_scan_agrees_with_walk(
    writes: list[tuple[bytes, list[bytes], str]], damage_at: float, garbage: bytes, chunk: int
) -> None:
    """Recovery's scan and the readers' walk see the same blocks, damage and complete writes,
    whatever the buffer size; every block that survives decodes to what was written."""
    parts = [
        _write(MARKER, producer, seq, msgs, policy=CompressionPolicy(algorithm, min_bytes=0))  # type: ignore[arg-type]
        for seq, (producer, msgs, algorithm) in enumerate(writes)
    ]
    data = b"".join(parts)
    at = int(damage_at * len(data))
    data = data[:at] + garbage + data[at + len(garbage) // 2 :]
    items = list(walk_blocks(_reader(data), MARKER, 0, len(data), chunk))
    written: list[tuple[bytes, int, int]] = []
    found = scan_blocks(
        _reader(data),
        MARKER,
        0,
        len(data),
        lambda runs: written.extend((r.producer, r.sequence, r.bits) for r in runs),
        mark_spacing=100,
        chunk=chunk,
    )
    assert found.damages == [i for i in items if isinstance(i, Damage)]
    blocks = [i for i in items if isinstance(i, Block)]
    ends = [b.end for b in blocks if b.flags & FLAG_END]
    assert found.complete_end == (ends[-1] if ends else 0)
    assert set(found.marks) <= {0} | {b.offset for b in blocks}
    assert written == [
        (b.producer, b.sequence, (1 << b.records) - 1)
        for b in blocks
        if b.producer and b.end <= found.complete_end
    ]
    originals = {(p, s): m for s, (p, m, _) in enumerate(writes)}
    for b in blocks:
        assert _messages(b) == originals[(b.producer, b.sequence)]


@pytest.mark.parametrize("cut", [1, 10, 63, 64, 70])
def test_a_torn_block_is_damage_and_the_write_is_incomplete(cut: int) -> None:
    data = _write(MARKER, b"p", 1, [b"keep"]) + _write(MARKER, b"p", 2, [b"torn" * 30])
    torn = data[:-cut]
    found = scan_blocks(
        _reader(torn), MARKER, 0, len(torn), lambda runs: None, mark_spacing=1 << 16
    )
    assert found.complete_end == len(_write(MARKER, b"p", 1, [b"keep"]))
