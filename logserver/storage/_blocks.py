"""The on-disk format of segments since format version 2: a header, then blocks.

A batch's records that go to one category are stored as one **block**: the
batch's identity and receive time once, and the records in columns (one
big-endian u32 length per record, then the messages), compressed as a whole
(:mod:`logwire.compression`). Version 1 segments (one self-describing record
after another, :mod:`logserver.storage._format`) are still read; a segment
holds one format only.

Segment (little-endian)::

    header  magic        8  b"\\x89LSEG\\r\\n\\x1a"
            version      2  u16, 2
            reserved     2  0
            marker      16  random, chosen when the category's first version-2 segment is made
            check        4  u32, zlib.crc32 of the 28 bytes before
    block*

Block::

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
                          if it would be shorter

Positions. A block at offset ``b`` spans at least ``count`` bytes (the padding
sees to it, and only a block of many tiny, very compressible records needs
any), so record ``i`` of the block has its own position ``b + i``: positions
stay byte offsets in the category's stream, as in version 1, and segment
bases, retention by bytes and read positions work the same in both formats.

What the format guarantees:

- **Complete or detected.** The check covers every byte of a block but the
  marker (which must equal the segment's): a torn write or flipped bits
  anywhere in the header, the index runs, the payload or the padding make the
  block invalid. A write is one or more blocks, the last with END; recovery
  cuts a last segment back to the end of its last complete write.
- **No forged blocks, without damage.** Blocks are found by their lengths, one
  after another from the header: the bytes of a message are never looked at
  as a block, whatever they are.
- **No forged blocks after damage, against anyone who cannot read the files.**
  Past a damaged range, the next block is found by searching for the
  segment's 16-byte marker and accepted only if its header, lengths, index
  runs and check are valid. The marker comes from ``os.urandom`` and never
  leaves the server: ``ReadBlocks`` ships a block's fields and payload, not
  its framing, and segment files are readable by the server's user and group
  only. A client can rebuild any block it can read byte for byte but for the
  marker (``tests/storage/test_compressed.py`` stores such copies, made with
  every marker a client could know, inside a message and damages the block
  before them); to have one taken for a real block after damage it must guess
  128 random bits. A damaged segment *header* is read with markers the server
  wrote, never with one found in the data (:func:`probe_format`). Version 1
  segments, whose record magic is public, only have their weaker guarantee
  (text messages cannot contain that magic; arbitrary bytes can).
- **Readable in the future.** The version in the header tells a reader which
  format follows; a segment of a version this code does not know is never
  repaired or truncated (see :func:`segment_format`).
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

from logserver.storage._format import MAGIC as V1_MAGIC
from logserver.storage._format import Damage, Frame, ReadAt, Scan, _Window, walk
from logserver.storage._timeindex import IndexBuilder
from logwire.blocks import run_indexes
from logwire.compression import CODEC_NAMES, NONE

__all__ = [
    "BLOCK_HEADER_BYTES",
    "FLAG_END",
    "FLAG_RUNS",
    "FORMAT_VERSION",
    "MARKER_BYTES",
    "SEGMENT_HEADER_BYTES",
    "SEGMENT_MAGIC",
    "Block",
    "BlockRun",
    "SegmentFormat",
    "encode_block",
    "new_marker",
    "probe_format",
    "scan_blocks",
    "segment_format",
    "segment_header",
    "walk_blocks",
]

SEGMENT_MAGIC = b"\x89LSEG\r\n\x1a"
FORMAT_VERSION = 2
MARKER_BYTES = 16
FLAG_END = 0x01
FLAG_RUNS = 0x02
_ALL_FLAGS = FLAG_END | FLAG_RUNS
#: A block larger than this is damage (the writer never makes one: blocks hold at most
#: a batch's part, and a frame is at most 2 GiB).
MAX_BLOCK_BYTES = 2**31

_SEGMENT_HEAD = struct.Struct("<8sHH16s")
_SEGMENT_CHECK = struct.Struct("<I")
SEGMENT_HEADER_BYTES = _SEGMENT_HEAD.size + _SEGMENT_CHECK.size  # 32

_FRAME = struct.Struct("<16sII")  # marker, length, check
_FIXED = struct.Struct("<BBHIIIQqII")  # flags .. payload_bytes
_HEAD = struct.Struct("<16sIIBBHIIIQqII")  # both, for decoding in one call
BLOCK_HEADER_BYTES = _HEAD.size  # 64
_LENGTH_AT = MARKER_BYTES  # the length field's offset in a block
_BODY_AT = _FRAME.size  # where the checked body starts (24)
_U32 = struct.Struct("<I")
_RUN = struct.Struct("<II")

_crc32 = zlib.crc32


def new_marker() -> bytes:
    """A fresh random marker for a category's segments."""
    return os.urandom(MARKER_BYTES)


def segment_header(marker: bytes) -> bytes:
    """The 32 bytes a version-2 segment starts with."""
    head = _SEGMENT_HEAD.pack(SEGMENT_MAGIC, FORMAT_VERSION, 0, marker)
    return head + _SEGMENT_CHECK.pack(_crc32(head))


class SegmentFormat(NamedTuple):
    """What a segment's first bytes say about it."""

    version: int
    """1 (records), 2 (blocks), 0 (empty or a torn header: no format yet), or a newer
    version this code does not know."""
    marker: bytes = b""
    data_start: int = 0
    """Where the first record or block starts."""


def segment_format(first: bytes) -> SegmentFormat:
    """The format of a segment from its first :data:`SEGMENT_HEADER_BYTES` bytes (fewer if
    the file is shorter).

    A file that starts like neither format, or whose version-2 header fails its
    check, is version 0: nothing in it can be trusted, which for a last segment
    means a torn first write, cut back to nothing. A header whose check passes
    with a version above :data:`FORMAT_VERSION` is returned as that version: the
    caller must leave such a file alone.
    """
    if first.startswith(V1_MAGIC):
        return SegmentFormat(1)
    if len(first) < SEGMENT_HEADER_BYTES or not first.startswith(SEGMENT_MAGIC):
        return SegmentFormat(0)
    _magic, version, _reserved, marker = _SEGMENT_HEAD.unpack_from(first)
    (check,) = _SEGMENT_CHECK.unpack_from(first, _SEGMENT_HEAD.size)
    if check != _crc32(first[: _SEGMENT_HEAD.size]) or version < 2:
        return SegmentFormat(0)
    return SegmentFormat(version, marker, SEGMENT_HEADER_BYTES)


def probe_format(
    read: ReadAt, size: int, first: bytes, siblings: Sequence[bytes] = ()
) -> SegmentFormat:
    """The format of a segment whose first bytes are no valid header (:func:`segment_format`
    said 0), found from what follows: damage in a header must not cost a segment's blocks.

    Only markers the server wrote are tried: ``siblings`` (the markers of the
    category's intact version-2 segments: all of a category's segments share
    one), the damaged header's own marker field, and the first block's (written
    right after the header). Never a marker found in the data: a client can put a
    block with any marker it likes inside a message. The first that finds a valid
    block makes the segment version 2.

    Failing that, the segment may be version 1, whose record magic is public: a
    record forged inside a message of a version-2 segment whose header and first
    block are damaged must not turn it into a version-1 segment (its real blocks
    lost, the forged records served). So version 1 is believed only if valid
    version-1 records are found and either the category has version-2 segments
    whose marker occurs nowhere in this file (every version-2 block starts with it,
    and no client knows it: this is no version-2 segment), or, with no marker to
    look for, those records make up at least half of the bytes from the first one
    on (a forger's message would have to outweigh everything written after it).
    Otherwise the segment stays version 0: nothing in it is served, and the error
    is logged.
    """
    candidates = [*siblings, first[12:28], read(SEGMENT_HEADER_BYTES, MARKER_BYTES)]
    for marker in dict.fromkeys(c for c in candidates if len(c) == MARKER_BYTES):
        for item in walk_blocks(read, marker, SEGMENT_HEADER_BYTES, size):
            if isinstance(item, Block):
                return SegmentFormat(FORMAT_VERSION, marker, SEGMENT_HEADER_BYTES)
    if any(_occurs(read, size, marker) for marker in siblings):
        return SegmentFormat(0)  # a version-2 segment whose every block is damaged
    start, covered = -1, 0
    for record in walk(read, 0, size):
        if isinstance(record, Frame):
            start = record.offset if start < 0 else start
            covered += record.end - record.offset
    if start >= 0 and (siblings or 2 * covered >= size - start):
        return SegmentFormat(1)
    return SegmentFormat(0)


def _occurs(read: ReadAt, size: int, needle: bytes, chunk: int = 1 << 20) -> bool:
    """Whether ``needle`` occurs in the file's first ``size`` bytes."""
    offset = 0
    while offset < size:
        data = read(offset, min(chunk, size - offset) + len(needle) - 1)
        if needle in data:
            return True
        if len(data) < len(needle):
            return False
        offset += chunk
    return False


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


def _parse(buf: bytes, mv: memoryview, p: int, marker: bytes) -> Block | int | None:
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


class _Blocks:
    """Parses blocks of one segment through a refilled window of its bytes."""

    __slots__ = ("marker", "window")

    def __init__(self, read: ReadAt, stop: int, chunk: int, marker: bytes) -> None:
        self.window = _Window(read, stop, chunk)
        self.marker = marker

    def parse(self, off: int) -> Block | None:
        """The block at file offset ``off`` (with file offsets) if a complete, valid one ends
        by ``stop``."""
        w = self.window
        p = w.cover(off, BLOCK_HEADER_BYTES)
        parsed = _parse(w.buf, w.mv, p, self.marker)
        if isinstance(parsed, int):
            if off + parsed > w.stop:
                return None
            p = w.cover(off, parsed)
            parsed = _parse(w.buf, w.mv, p, self.marker)
            if isinstance(parsed, int):  # the file is shorter than it claimed
                return None
        if parsed is None:
            return None
        base = w.base
        return parsed._replace(offset=base + parsed.offset, end=base + parsed.end)

    def resync(self, off: int) -> int:
        """The first offset after ``off`` where a valid block starts, else ``stop``."""
        w = self.window
        marker = self.marker
        pos = off + 1
        while pos < w.stop:
            p = w.cover(pos, min(max(w.chunk, 4096), w.stop - pos))
            j = w.buf.find(marker, p)
            if j < 0:
                end = w.base + len(w.buf)
                if w.eof or end >= w.stop:
                    return w.stop
                pos = max(pos + 1, end - MARKER_BYTES + 1)  # the marker may straddle windows
                continue
            candidate = w.base + j
            if self.parse(candidate) is not None:
                return candidate
            pos = candidate + 1
        return w.stop


def walk_blocks(
    read: ReadAt, marker: bytes, start: int, stop: int, chunk: int = 1 << 20
) -> Iterator[Block | Damage]:
    """Every block in ``[start, stop)`` of a version-2 segment, in order, and every damaged
    range between (see :func:`logserver.storage._format.walk` for the contract)."""
    blocks = _Blocks(read, stop, chunk, marker)
    off = start
    while off < stop:
        block = blocks.parse(off)
        if block is None:
            resume = blocks.resync(off)
            yield Damage(off, resume)
            off = resume
            continue
        yield block
        off = block.end


def scan_blocks(
    read: ReadAt,
    marker: bytes,
    start: int,
    stop: int,
    on_write: Callable[[list[BlockRun]], None],
    *,
    mark_spacing: int,
    chunk: int = 8 << 20,
) -> Scan:
    """Verify every block of a version-2 segment, for recovery and indexing: the
    counterpart of :func:`logserver.storage._format.scan_writes`.

    Calls ``on_write`` with the runs (blocks with a producer) of each complete
    write. The payloads are checked, never decompressed: their check was
    verified against what the writer had validated.
    """
    builder = IndexBuilder(start, mark_spacing)
    damages: list[Damage] = []
    pending: list[BlockRun] = []
    complete_end = start
    for item in walk_blocks(read, marker, start, stop, chunk):
        if isinstance(item, Damage):
            damages.append(item)
            continue
        builder.add(item.offset, item.end, item.received_ns, item.records)
        if item.producer:
            pending.append(item.run())
        if item.ends_write:
            if pending:
                on_write(pending)
                pending = []
            complete_end = item.end
            builder.commit()
    marks = list(builder.build(with_tail=True).offsets)
    return Scan(complete_end, damages, marks, pending, builder)
