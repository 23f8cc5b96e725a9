"""One version-2 block's bytes: laid out by :func:`encode_block`, checked and decoded
by :func:`parse_block`.

Kept apart from finding blocks in a file (:mod:`logserver.storage._blockscan`):
this module only answers "is this a valid block, and what does it hold"; the
format as a whole, its segment header and its guarantees are in
:mod:`logserver.storage._blocks`.

Block (little-endian)::

    0   marker        16  the segment's marker
    16  length         4  u32, bytes from offset 24 to the block's end
    20  check          4  u32, zlib.crc32 of bytes [16, 20) then [24, end)
    24  flags          1  bit 0 END: last block of one write; bit 1 RUNS: index runs follow
    25  codec          1  0 none, 1 zstd
    26  producer_len   2  u16
    28  count          4  u32, records in this block (>= 1)
    32  batch_count    4  u32, records in the whole batch (all categories)
    36  first_index    4  u32, batch index of record 0 (0 with RUNS)
    40  received_ns    8  u64, server receive time of the batch
    48  sequence       8  i64, the producer's batch sequence (-1 without producer)
    56  raw_bytes      4  u32, size of the decoded columns
    60  payload_bytes  4  u32, size of the stored payload
    64  producer       n  UTF-8
        [runs]            with RUNS: u32 r, then r x (u32 start, u32 count): the batch
                          indexes of the records, ascending; else first_index + i
        payload        p  the columns, encoded by ``codec``
        padding           zero bytes, exactly as many as make the block ``count`` bytes long
                          if it would be shorter (so that each record has its own position)
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from typing import NamedTuple

from logserver.storage._blocks import MARKER_BYTES
from logwire.blocks import run_indexes
from logwire.compression import CODEC_NAMES, NONE

__all__ = [
    "BLOCK_HEADER_BYTES",
    "FLAG_END",
    "FLAG_RUNS",
    "MAX_BLOCK_BYTES",
    "Block",
    "BlockRun",
    "encode_block",
    "parse_block",
]

FLAG_END = 0x01
FLAG_RUNS = 0x02
_ALL_FLAGS = FLAG_END | FLAG_RUNS
#: A block larger than this is damage (the writer never makes one: blocks hold at most
#: a batch's part, and a frame is at most 2 GiB).
MAX_BLOCK_BYTES = 2**31

_FRAME = struct.Struct("<16sII")  # marker, length, check
_FIXED = struct.Struct("<BBHIIIQqII")  # flags .. payload_bytes
_HEAD = struct.Struct("<16sIIBBHIIIQqII")  # both, for decoding in one call
BLOCK_HEADER_BYTES = _HEAD.size  # 64
_LENGTH_AT = MARKER_BYTES  # the length field's offset in a block
_BODY_AT = _FRAME.size  # where the checked body starts (24)
_U32 = struct.Struct("<I")
_RUN = struct.Struct("<II")

_crc32 = zlib.crc32


def _runs_bytes(runs: Sequence[tuple[int, int]]) -> bytes:
    return _U32.pack(len(runs)) + b"".join(_RUN.pack(start, n) for start, n in runs)


def encode_block(
    marker: bytes,
    *,
    producer: bytes,
    sequence: int,
    batch_count: int,
    received_ns: int,
    index_runs: Sequence[tuple[int, int]],
    codec: int,
    raw_bytes: int,
    payload: bytes,
    end: bool,
) -> bytes:
    """One block. ``index_runs``: ``(first batch index, count)`` runs of its records, in
    order (one run: the records are consecutive in the batch, the common case).

    Callers have checked the payload (it decodes to ``raw_bytes`` of valid columns
    holding the runs' records) and the sizes; this only lays the bytes out.
    """
    count = sum(n for _, n in index_runs)
    flags = FLAG_END if end else 0
    if len(index_runs) == 1:
        first_index, runs = index_runs[0][0], b""
    else:
        flags |= FLAG_RUNS
        first_index, runs = 0, _runs_bytes(index_runs)
    fixed = _FIXED.pack(
        flags,
        codec,
        len(producer),
        count,
        batch_count,
        first_index,
        received_ns,
        sequence,
        raw_bytes,
        len(payload),
    )
    unpadded = BLOCK_HEADER_BYTES + len(producer) + len(runs) + len(payload)
    padding = bytes(max(0, count - unpadded))
    length = unpadded + len(padding) - _BODY_AT
    length_field = _U32.pack(length)
    check = _crc32(length_field)
    for part in (fixed, producer, runs, payload, padding):
        check = _crc32(part, check)
    return b"".join(
        (marker, length_field, _U32.pack(check), fixed, producer, runs, payload, padding)
    )


class BlockRun:
    """The records of one batch a block holds, for deduplication: ``bits`` has bit ``i`` set
    for each batch index ``i`` present."""

    __slots__ = ("bits", "count", "producer", "received_ns", "sequence")

    def __init__(
        self, producer: bytes, sequence: int, count: int, received_ns: int, bits: int
    ) -> None:
        self.producer = producer
        self.sequence = sequence
        self.count = count
        self.received_ns = received_ns
        self.bits = bits

    def __repr__(self) -> str:
        return f"<BlockRun {self.producer!r}#{self.sequence} {self.bits.bit_count()}/{self.count}>"


class Block(NamedTuple):
    """One valid block; offsets are within its segment file, ``payload`` as stored."""

    offset: int
    end: int
    flags: int
    codec: int
    producer: bytes
    sequence: int
    records: int
    batch_count: int
    index_runs: tuple[tuple[int, int], ...]
    received_ns: int
    raw_bytes: int
    payload: memoryview
    """A view of the stored payload (``bytes(payload)`` for a copy)."""

    @property
    def ends_write(self) -> bool:
        """Whether this is the last block of one write (a torn write lacks it)."""
        return bool(self.flags & FLAG_END)

    @property
    def codec_name(self) -> str:
        return CODEC_NAMES.get(self.codec, str(self.codec))

    def indexes(self) -> list[int]:
        """The batch index of each record, in order."""
        return run_indexes(self.index_runs)

    def run(self) -> BlockRun:
        bits = 0
        for start, n in self.index_runs:
            bits |= ((1 << n) - 1) << start
        return BlockRun(self.producer, self.sequence, self.batch_count, self.received_ns, bits)


def parse_block(buf: bytes, mv: memoryview, p: int, marker: bytes) -> Block | int | None:
    """The block at ``buf[p:]``: a Block (offsets relative to ``buf``), an int (its total
    size: the buffer holds only part of it), or None (not a valid block)."""
    if len(buf) - p < BLOCK_HEADER_BYTES:
        return BLOCK_HEADER_BYTES
    (mark, length, check, flags, codec, plen, count, batch_count, first, ns, seq, raw, pbytes) = (
        _HEAD.unpack_from(buf, p)
    )
    total = _BODY_AT + length
    unpadded = BLOCK_HEADER_BYTES + plen + pbytes
    if (
        mark != marker
        or flags & ~_ALL_FLAGS
        or codec not in CODEC_NAMES
        or count < 1
        or count > batch_count
        or raw < 4 * count
        or (codec == NONE and pbytes != raw)
        or total > MAX_BLOCK_BYTES
        or total < unpadded
    ):
        return None
    if flags & FLAG_RUNS:
        if first != 0 or total < unpadded + 4:
            return None
    elif first + count > batch_count or total != max(unpadded, count):
        return None
    end = p + total
    if end > len(buf):
        return total
    if _crc32(mv[p + _BODY_AT : end], _crc32(mv[p + _LENGTH_AT : p + _BODY_AT - 4])) != check:
        return None
    q = p + BLOCK_HEADER_BYTES + plen
    producer = buf[p + BLOCK_HEADER_BYTES : q]
    runs: tuple[tuple[int, int], ...] = ((first, count),)
    if flags & FLAG_RUNS:
        parsed_runs = _parse_runs(buf, q, end - pbytes, count, batch_count)
        if parsed_runs is None:
            return None
        runs = parsed_runs
        q += 4 + 8 * len(runs)
        # The padding rule: exactly what makes the block ``count`` bytes long, or none.
        if total != max(q - p + pbytes, count):
            return None
    return Block(
        p, end, flags, codec, producer, seq, count, batch_count, runs, ns, raw, mv[q : q + pbytes]
    )


def _parse_runs(
    buf: bytes, q: int, limit: int, count: int, batch_count: int
) -> tuple[tuple[int, int], ...] | None:
    """Index runs at ``buf[q:]`` that end by ``limit``: ascending, disjoint, non-empty,
    within the batch, adding up to ``count``; None otherwise."""
    if limit - q < 4:
        return None
    (r,) = _U32.unpack_from(buf, q)
    if r < 2 or q + 4 + 8 * r > limit:
        return None
    runs = tuple(_RUN.iter_unpack(buf[q + 4 : q + 4 + 8 * r]))
    total = 0
    floor = 0
    for start, n in runs:
        if n < 1 or start < floor:
            return None
        floor = start + n
        total += n
    if total != count or floor > batch_count:
        return None
    return runs
