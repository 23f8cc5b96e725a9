"""The on-disk record format of version-1 segments: encoding a batch, decoding and resynchronising.

Since format version 2 (:mod:`logserver.storage._blocks`) servers write blocks;
version-1 segments are still read (and written with ``segment_format=1``, for
a server that must hand its directory back to an older version).

A version-1 segment is a plain concatenation of records; nothing else is in the
file, so a record's position is its byte offset. Each record (little-endian)::

    header  magic        4  b"\\x9eLS\\xb7"
            body_length  4  u32, bytes after the 16-byte header
            check        4  u32, zlib.crc32(body) XOR index
            index        4  u32, this record's index within its batch
    body    version      1  1
            flags        1  bit 0 (END): last record of one write (one pwrite)
            producer_len 2  u16
            count        4  u32, records in the whole batch (all categories)
            received_ns  8  u64, server receive time of the batch
            sequence     8  i64, the producer's batch sequence (-1 without producer)
            producer     n  UTF-8
            message      m  the rest of the body

Why these fields:

- The magic lets a reader find the next record after a damaged range, and it
  can never occur in valid UTF-8 text ("S" followed by a continuation byte), so
  text messages cannot fake a record.
- The length plus the check tell a complete record from a torn or damaged one.
  XORing the index into the CRC protects the index too while letting the body
  of every record of a write start with the same bytes, whose CRC is computed
  once per write.
- The END flag tells a complete write from a torn one: a process killed in the
  middle of a large ``pwrite`` leaves whole records of a batch that was never
  acknowledged. Recovery removes such an unfinished write from the tail, so a
  client's retry stores the batch exactly once.
- ``count`` and ``index`` let recovery tell whether a whole batch is on disk
  (for deduplication after a restart), even when it spans categories.

Everything common to a write (version .. producer) is packed once, and the
per-record work is done by C-level ``map``/``zip``: one crc32 and one
``struct.pack`` per record, no Python bytecode per record.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable, Iterator, Sequence
from itertools import repeat
from operator import add, xor
from typing import NamedTuple, Protocol

from logserver.storage._timeindex import IndexBuilder

__all__ = [
    "FLAG_END",
    "MAGIC",
    "MAX_MESSAGE_BYTES",
    "MAX_PRODUCER_BYTES",
    "MIN_RECORD_BYTES",
    "Damage",
    "Frame",
    "Run",
    "Scan",
    "WriteRun",
    "encode_records",
    "pread_at",
    "scan_writes",
    "walk",
]

MAGIC = b"\x9eLS\xb7"
VERSION = 1
FLAG_END = 0x01
MAX_MESSAGE_BYTES = 256 * 2**20
MAX_PRODUCER_BYTES = 1024

_HEADER = struct.Struct("<4sIII")  # magic, body length, crc32(body) ^ index, index
_FIXED = struct.Struct("<BBHIQq")  # version, flags, producer length, count, received_ns, sequence
_HEAD = struct.Struct("<4sIIIBBHIQq")  # header + fixed part, for decoding in one call
_MIN_BODY = _FIXED.size
MIN_RECORD_BYTES = _HEADER.size + _MIN_BODY
_MAX_BODY = _MIN_BODY + MAX_PRODUCER_BYTES + MAX_MESSAGE_BYTES
_ALL_FLAGS = FLAG_END

_crc32 = zlib.crc32
_pack_header = _HEADER.pack


def encode_records(
    producer: bytes,
    sequence: int,
    count: int,
    received_ns: int,
    indexes: Sequence[int],
    messages: Sequence[bytes],
) -> bytes:
    """Encode one write: the records of one batch that go to one category, in order.

    ``indexes[i]`` is the batch index of ``messages[i]``; the last record gets
    the END flag. Callers validate sizes and types first.
    """
    n = len(messages)
    if n == 0:
        return b""
    fixed = _FIXED.pack(VERSION, 0, len(producer), count, received_ns, sequence) + producer
    last_fixed = _FIXED.pack(VERSION, FLAG_END, len(producer), count, received_ns, sequence)
    last_fixed += producer
    k = n - 1
    fixed_crc = _crc32(fixed)
    # Everything but the last record, without a Python-level loop: header, fixed part, message.
    lengths = map(add, map(len, messages), repeat(len(fixed), k))
    checks = map(xor, map(_crc32, messages, repeat(fixed_crc, k)), indexes)
    headers = list(map(_pack_header, repeat(MAGIC, k), lengths, checks, indexes))
    last_msg = messages[k]
    last_index = indexes[k]
    last_check = _crc32(last_msg, _crc32(last_fixed)) ^ last_index
    headers.append(_pack_header(MAGIC, len(last_fixed) + len(last_msg), last_check, last_index))
    # header, fixed part, message per record, laid out by slice assignment: a third
    # cheaper than joining a chain of zips.
    parts = [fixed] * (3 * n)
    parts[0::3] = headers
    parts[-2] = last_fixed
    parts[2::3] = messages
    return b"".join(parts)


class Frame(NamedTuple):
    """One decoded record; offsets are within its segment file."""

    offset: int
    end: int
    flags: int
    producer: bytes
    sequence: int
    batch_index: int
    batch_count: int
    received_ns: int
    message: bytes

    @property
    def ends_write(self) -> bool:
        """Whether this is the last record of one write (a torn write lacks it)."""
        return bool(self.flags & FLAG_END)


class Damage(NamedTuple):
    """Bytes ``[offset, end)`` hold no valid record; ``end``: the next valid one or the stop."""

    offset: int
    end: int


_Parsed = tuple[int, int, bytes, int, int, int, int, int]


def _parse(buf: bytes, mv: memoryview, p: int) -> _Parsed | int | None:
    """Decode the record at ``buf[p:]``.

    Returns the fields ``(end, flags, producer, sequence, index, count,
    received_ns, message_start)``, or an int (the record's total size: the
    buffer holds only part of it), or None (not a valid record).
    """
    n = len(buf)
    if n - p < _HEAD.size:
        return _HEAD.size
    magic, blen, check, index, version, flags, plen, count, ns, sequence = _HEAD.unpack_from(buf, p)
    if (
        magic != MAGIC
        or version != VERSION
        or flags & ~_ALL_FLAGS
        or blen < _MIN_BODY + plen
        or blen > _MAX_BODY
        or index >= count
    ):
        return None
    end = p + _HEADER.size + blen
    if end > n:
        return end - p
    if _crc32(mv[p + _HEADER.size : end]) ^ index != check:
        return None
    q = p + _HEAD.size + plen
    return end, flags, buf[p + _HEAD.size : q], sequence, index, count, ns, q


ReadAt = Callable[[int, int], bytes]
"""``read(offset, size)``: up to ``size`` bytes of the file at ``offset`` (``os.pread``)."""


def pread_at(fd: int) -> ReadAt:
    """A :data:`ReadAt` on a descriptor."""
    return lambda offset, size: os.pread(fd, size, offset)


class _Window:
    """A window of file bytes ``[base, base + len(buf))`` that the walker refills on demand."""

    __slots__ = ("base", "buf", "chunk", "eof", "mv", "read", "stop")

    def __init__(self, read: ReadAt, stop: int, chunk: int) -> None:
        self.read = read
        self.stop = stop
        self.chunk = chunk
        self.buf = b""
        self.mv = memoryview(self.buf)
        self.base = 0
        self.eof = False  # the file ended before ``stop``

    def cover(self, off: int, need: int) -> int:
        """Make the window start at or before ``off`` and hold ``need`` bytes from it if the file
        has them; return ``off``'s index in the buffer."""
        p = off - self.base
        if p >= 0 and p + need <= len(self.buf):
            return p
        size = min(max(need, self.chunk), self.stop - off)
        self.buf = self.read(off, size)
        self.mv = memoryview(self.buf)
        self.base = off
        self.eof = len(self.buf) < size
        return 0

    def parse(self, off: int) -> _Parsed | None:
        """The record at ``off`` if a complete, valid one ends by ``stop``."""
        p = self.cover(off, _HEAD.size)
        parsed = _parse(self.buf, self.mv, p)
        if isinstance(parsed, int):
            if off + parsed > self.stop:
                return None
            p = self.cover(off, parsed)
            parsed = _parse(self.buf, self.mv, p)
            if isinstance(parsed, int):  # the file is shorter than it claimed
                return None
        return parsed

    def resync(self, off: int) -> int:
        """The first offset after ``off`` where a valid record starts, else ``stop``."""
        pos = off + 1
        while pos < self.stop:
            p = self.cover(pos, min(max(self.chunk, 4096), self.stop - pos))
            j = self.buf.find(MAGIC, p)
            if j < 0:
                end = self.base + len(self.buf)
                if self.eof or end >= self.stop:
                    return self.stop
                pos = max(pos + 1, end - len(MAGIC) + 1)  # the magic may straddle the windows
                continue
            candidate = self.base + j
            if self.parse(candidate) is not None:
                return candidate
            pos = candidate + 1
        return self.stop


def walk(read: ReadAt, start: int, stop: int, chunk: int = 1 << 20) -> Iterator[Frame | Damage]:
    """Every record in ``[start, stop)`` of a file, in order, and every damaged range between.

    ``start`` must be a record boundary (or the reader accepts a leading
    :class:`Damage`). A record that runs past ``stop`` is damage: callers pass
    the end of the data they trust (a torn tail is damage at the end). Reads
    ``chunk`` bytes at a time, so memory stays bounded whatever the file size.
    """
    window = _Window(read, stop, chunk)
    off = start
    while off < stop:
        parsed = window.parse(off)
        if parsed is None:
            resume = window.resync(off)
            yield Damage(off, resume)
            off = resume
            continue
        end, flags, producer, sequence, index, count, ns, msg = parsed
        base = window.base
        yield Frame(
            off, base + end, flags, producer, sequence, index, count, ns, window.buf[msg:end]
        )
        off = base + end


class Run:
    """Consecutive records of one batch (same producer and sequence, consecutive indexes)."""

    __slots__ = ("count", "first", "last", "producer", "received_ns", "sequence")

    def __init__(
        self, producer: bytes, sequence: int, count: int, received_ns: int, index: int
    ) -> None:
        self.producer = producer
        self.sequence = sequence
        self.count = count
        self.received_ns = received_ns
        self.first = index
        self.last = index

    def __repr__(self) -> str:
        return f"<Run {self.producer!r}#{self.sequence} {self.first}..{self.last}/{self.count}>"

    @property
    def bits(self) -> int:
        """Bit ``i`` set for each batch index ``i`` in the run."""
        return ((1 << (self.last - self.first + 1)) - 1) << self.first


class WriteRun(Protocol):
    """What deduplication needs of the records of one batch found in one write (a
    :class:`Run` of version-1 records, or a block's ``BlockRun``)."""

    producer: bytes
    sequence: int
    count: int
    received_ns: int

    @property
    def bits(self) -> int: ...


class Scan(NamedTuple):
    """What :func:`scan_writes` found in a segment."""

    complete_end: int
    """End of the last record carrying the END flag (0 if none): what a repair keeps."""
    damages: list[Damage]
    marks: list[int]
    """Record starts at least MARK_SPACING apart, starting with 0."""
    tail: Sequence[WriteRun]
    """Records with a producer after the last END record: an unfinished write."""
    builder: IndexBuilder
    """The segment's time index (``marks`` are its marks); ``build(with_tail=...)``
    with or without the unfinished write."""


def scan_writes(
    read: ReadAt,
    stop: int,
    on_write: Callable[[list[Run]], None],
    *,
    mark_spacing: int,
    chunk: int = 8 << 20,
) -> Scan:
    """Verify every record of a segment quickly, for recovery and indexing.

    Calls ``on_write`` with the runs of records (those with a producer) of
    each complete write, in order. Unlike :func:`walk` it materialises no
    message and no per-record object: one ``unpack_from`` and one crc32 per
    record, in a loop over large buffers.
    """
    window = _Window(read, stop, chunk)
    unpack = _HEAD.unpack_from
    crc32 = _crc32
    head, fixed_end = _HEADER.size, _HEAD.size
    builder = IndexBuilder(0, mark_spacing)
    add = builder.add
    damages: list[Damage] = []
    pending: list[Run] = []
    run: Run | None = None
    complete_end = 0
    off = 0
    while off < stop:
        p = window.cover(off, fixed_end)
        buf, mv, base = window.buf, window.mv, window.base
        limit = min(len(buf), stop - base)
        bad = False
        while limit - p >= fixed_end:
            magic, blen, check, index, version, flags, plen, count, ns, sequence = unpack(buf, p)
            end = p + head + blen
            if (
                magic != MAGIC
                or version != VERSION
                or flags & ~_ALL_FLAGS
                or blen < _MIN_BODY + plen
                or blen > _MAX_BODY
                or index >= count
            ):
                bad = True
                break
            if end > limit:
                break
            if crc32(mv[p + head : end]) ^ index != check:
                bad = True
                break
            add(base + p, base + end, ns, 1)
            if plen:
                if (
                    run is not None
                    and index == run.last + 1
                    and sequence == run.sequence
                    and buf[p + fixed_end : p + fixed_end + plen] == run.producer
                ):
                    run.last = index
                else:
                    producer = buf[p + fixed_end : p + fixed_end + plen]
                    run = Run(producer, sequence, count, ns, index)
                    pending.append(run)
            if flags & FLAG_END:
                if pending:
                    on_write(pending)
                    pending = []
                run = None
                complete_end = base + end
                builder.commit()
            p = end
        off = base + p
        if off >= stop:
            break
        if not bad and window.parse(off) is not None:
            continue  # the record straddles the buffer; parse() refilled the window with it
        resume = window.resync(off)
        damages.append(Damage(off, resume))
        off = resume
        run = None
    marks = list(builder.build(with_tail=True).offsets)
    return Scan(complete_end, damages, marks, pending, builder)
