"""Finding version-2 blocks in a segment file: one after another by their lengths, and
past damage by the segment's marker; verifying a segment for recovery; reading the
format of a segment whose header is damaged.

Kept apart from one block's bytes (:mod:`logserver.storage._blockcodec`): this
module decides *where* a block may start, which is what the format's guarantees
against forged blocks rest on (:mod:`logserver.storage._blocks` states them).
Without damage the next block starts where the last ended, so a message's bytes
are never looked at as a block; after damage only the segment's own marker,
which never leaves the server, is searched for, and a candidate must parse as a
complete valid block.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from logserver.storage._blockcodec import BLOCK_HEADER_BYTES, Block, BlockRun, parse_block
from logserver.storage._blocks import (
    FORMAT_VERSION,
    MARKER_BYTES,
    SEGMENT_HEADER_BYTES,
    SegmentFormat,
)
from logserver.storage._format import Damage, Frame, ReadAt, Scan, _Window, walk
from logserver.storage._timeindex import IndexBuilder

__all__ = ["probe_format", "scan_blocks", "walk_blocks"]


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
        parsed = parse_block(w.buf, w.mv, p, self.marker)
        if isinstance(parsed, int):
            if off + parsed > w.stop:
                return None
            p = w.cover(off, parsed)
            parsed = parse_block(w.buf, w.mv, p, self.marker)
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
