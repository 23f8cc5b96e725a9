"""Reading one segment, in either format: records (for ``Read``) or blocks (for ``ReadBlocks``).

A record's position is a byte offset in the category's stream in both formats
(see :mod:`logserver.storage._blocks` for why that holds for blocks). Readers of
records get :class:`SegmentRecord` objects, one per record; readers of blocks
get each stored block whole (payload still compressed), which is what lets a
reader work in columns without a Python object per record. A version-1
segment's records are served as blocks too: the records of one write are
gathered into an uncompressed block that lists each record's position.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from logserver.storage._blockcodec import Block
from logserver.storage._blockscan import walk_blocks
from logserver.storage._columns import IndexRuns, decode_messages, index_runs
from logserver.storage._format import Damage, Frame, ReadAt, walk
from logserver.storage._timeindex import SegmentIndex
from logserver.storage._types import SegmentRecord, StoredBlock
from logwire.compression import NONE, join_columns
from logwire.packed import pack_lengths

__all__ = [
    "RECORD_OVERHEAD",
    "BlockCursor",
    "Producers",
    "SegmentView",
    "TimeRange",
    "read_blocks",
    "read_records",
    "stored_block",
    "v1_block",
    "writes_v1",
]

#: What a record counts against a ``Read``'s ``max_bytes`` beyond its message: about
#: what its fields cost on the wire.
RECORD_OVERHEAD = 40

Report = Callable[[Damage], None]


@dataclass(frozen=True)
class SegmentView:
    """What reading needs to know of a segment: where it sits, its format and its marks."""

    base: int
    version: int
    marker: bytes
    data_start: int
    marks: list[int]
    """Known block (or record) starts, ascending; the first is ``data_start``."""
    index: SegmentIndex | None = None
    """The segment's time index (``marks`` are its marks), when the reader has one."""


class TimeRange(NamedTuple):
    """Receive times a read keeps: ``since_ns <= t < until_ns`` (None: open)."""

    since_ns: int | None
    until_ns: int | None

    def admits(self, received_ns: int) -> bool:
        if self.since_ns is not None and received_ns < self.since_ns:
            return False
        return self.until_ns is None or received_ns < self.until_ns


class Producers:
    """Producer ids decoded once per read, not once per record."""

    __slots__ = ("_known",)

    def __init__(self) -> None:
        self._known: dict[bytes, str] = {}

    def text(self, producer: bytes) -> str:
        known = self._known.get(producer)
        if known is None:
            known = self._known[producer] = producer.decode("utf-8", "replace")
        return known


class BlockCursor:
    """Where a read starts in a version-2 segment: the block holding a position."""

    @staticmethod
    def locate(
        read: ReadAt, view: SegmentView, offset: int, stop: int, report: Report
    ) -> tuple[int, int] | None:
        """``(block start, records to skip)`` for the record at ``offset``, or None when
        no record starts there. Walks from the nearest mark: at most a mark spacing
        plus one block."""
        if offset in (0, view.data_start):
            return view.data_start, 0
        if offset < view.data_start:
            return None  # inside the segment header
        marks = view.marks
        lo, hi = 0, len(marks)
        while lo < hi:  # the last mark <= offset
            mid = (lo + hi) // 2
            if marks[mid] <= offset:
                lo = mid + 1
            else:
                hi = mid
        start = marks[max(0, lo - 1)]
        for item in walk_blocks(read, view.marker, start, stop, chunk=1 << 17):
            if isinstance(item, Damage):
                if item.offset == offset:
                    return offset, 0  # a reader resuming at damage skips it
                report(item)
                if item.end > offset:
                    return None
                continue
            if item.offset > offset:
                return None
            if offset < item.offset + item.records:
                return item.offset, offset - item.offset
        return None


def read_records(
    read: ReadAt,
    view: SegmentView,
    category: str,
    out: list[SegmentRecord],
    offset: int,
    stop: int,
    limit: int,
    max_bytes: int,
    used: int,
    report: Report,
) -> tuple[int, int]:
    """Append records from ``offset`` (a record position) up to ``stop`` to ``out`` until
    ``limit`` records or ``max_bytes`` (the first record of a read always fits); return
    (next offset, bytes used)."""
    if view.version == 0:
        return _unreadable(view, offset, stop, used, report)
    if view.version == 1:
        return _records_v1(read, view, category, out, offset, stop, limit, max_bytes, used, report)
    located = BlockCursor.locate(read, view, offset, stop, report)
    if located is None:
        return offset, used
    start, skip = located
    if not skip:
        offset = start  # from the first block on (past the header at position 0)
    producers = Producers()
    base = view.base
    for item in walk_blocks(read, view.marker, start, stop, _chunk(max_bytes - used, limit)):
        if isinstance(item, Damage):
            report(item)
            offset = item.end
            skip = 0
            continue
        messages = decode_messages(item.codec, item.payload, item.raw_bytes, item.records)
        indexes = item.indexes()
        producer = producers.text(item.producer)
        k = skip
        skip = 0
        while k < item.records:
            message = messages[k]
            size = len(message) + RECORD_OVERHEAD
            if out and used + size > max_bytes:
                return item.offset + k, used
            out.append(
                SegmentRecord(
                    category,
                    message,
                    producer,
                    item.sequence,
                    indexes[k],
                    item.batch_count,
                    item.received_ns,
                    base + item.offset + k,
                )
            )
            used += size
            k += 1
            if len(out) >= limit or used >= max_bytes:
                return (item.offset + k if k < item.records else item.end), used
        offset = item.end
    return offset, used


def _unreadable(
    view: SegmentView, offset: int, stop: int, used: int, report: Report
) -> tuple[int, int]:
    """A segment whose first bytes are no format at all: all of it is damage."""
    if offset < stop:
        report(Damage(offset, stop))
    return stop, used


def _chunk(budget: int, limit: int) -> int:
    """How much to read at a time: about what the request can take, not a whole segment."""
    return max(4096, min(budget, limit * 512, 1 << 20))


def _records_v1(
    read: ReadAt,
    view: SegmentView,
    category: str,
    out: list[SegmentRecord],
    offset: int,
    stop: int,
    limit: int,
    max_bytes: int,
    used: int,
    report: Report,
) -> tuple[int, int]:
    producers = Producers()
    base = view.base
    for item in walk(read, offset, stop, _chunk(max_bytes - used, limit)):
        if type(item) is Damage:
            report(item)
            offset = item.end
            continue
        assert isinstance(item, Frame)
        size = item.end - item.offset
        if out and used + size > max_bytes:
            break
        out.append(
            SegmentRecord(
                category,
                item.message,
                producers.text(item.producer),
                item.sequence,
                item.batch_index,
                item.batch_count,
                item.received_ns,
                base + item.offset,
            )
        )
        used += size
        offset = item.end
        if len(out) >= limit or used >= max_bytes:
            break
    return offset, used


def read_blocks(
    read: ReadAt,
    view: SegmentView,
    category: str,
    out: list[StoredBlock],
    offset: int,
    stop: int,
    max_bytes: int,
    used: int,
    report: Report,
    times: TimeRange | None = None,
) -> tuple[int, int]:
    """Append whole blocks from the one holding ``offset`` up to ``stop`` to ``out`` until
    their payloads reach ``max_bytes`` (the first block of a read always fits); return
    (next offset, bytes used). The first block may start before ``offset``: its
    reader skips the records before it. With ``times``, only blocks received in that
    range are appended, and the index's stretches that hold none are skipped unread."""
    if view.version == 0:
        return _unreadable(view, offset, stop, used, report)
    if view.version == 1:
        return _blocks_v1(read, view, category, out, offset, stop, max_bytes, used, report, times)
    if times is not None and view.index is not None:
        return _blocks_in_range(
            read, view, view.index, category, out, offset, stop, max_bytes, used, report, times
        )
    located = BlockCursor.locate(read, view, offset, stop, report)
    if located is None:
        return offset, used
    if not located[1]:
        offset = located[0]
    producers = Producers()
    for item in walk_blocks(read, view.marker, located[0], stop, _chunk(max_bytes - used, 1 << 20)):
        if isinstance(item, Damage):
            report(item)
            offset = item.end
            continue
        size = len(item.payload)
        if out and used + size > max_bytes:
            break
        out.append(stored_block(category, view.base, item, producers))
        used += size
        offset = item.end
        if used >= max_bytes:
            break
    return offset, used


def stored_block(category: str, base: int, block: Block, producers: Producers) -> StoredBlock:
    return StoredBlock(
        category,
        base + block.offset,
        producers.text(block.producer),
        block.sequence,
        block.batch_count,
        block.index_runs,
        block.received_ns,
        block.records,
        block.codec,
        block.raw_bytes,
        bytes(block.payload),
    )


def writes_v1(read: ReadAt, offset: int, stop: int) -> Iterator[list[Frame] | Damage]:
    """Version-1 records grouped as blocks would hold them (consecutive records of one
    batch within one write), and the damaged ranges between."""
    group: list[Frame] = []
    for item in walk(read, offset, stop, 1 << 20):
        if isinstance(item, Damage):
            if group:
                yield group
                group = []
            yield item
            continue
        if group and (
            item.producer != group[0].producer
            or item.sequence != group[0].sequence
            or item.received_ns != group[0].received_ns
        ):
            yield group
            group = []
        group.append(item)
        if item.ends_write:
            yield group
            group = []
    if group:
        yield group


def _blocks_v1(
    read: ReadAt,
    view: SegmentView,
    category: str,
    out: list[StoredBlock],
    offset: int,
    stop: int,
    max_bytes: int,
    used: int,
    report: Report,
    times: TimeRange | None = None,
) -> tuple[int, int]:
    producers = Producers()
    for frames in writes_v1(read, offset, stop):
        if isinstance(frames, Damage):
            report(frames)
            offset = frames.end
            continue
        if times is not None and not times.admits(frames[0].received_ns):
            offset = frames[-1].end
            continue
        block = v1_block(category, view.base, frames, producers)
        if out and used + block.raw_bytes > max_bytes:
            return frames[0].offset, used
        out.append(block)
        used += block.raw_bytes
        offset = frames[-1].end
        if used >= max_bytes:
            break
    return offset, used


def _blocks_in_range(
    read: ReadAt,
    view: SegmentView,
    index: SegmentIndex,
    category: str,
    out: list[StoredBlock],
    offset: int,
    stop: int,
    max_bytes: int,
    used: int,
    report: Report,
    times: TimeRange,
) -> tuple[int, int]:
    """:func:`read_blocks` of a version-2 segment for a time range: stretch by stretch of
    the index, skipping those that hold nothing of it, block by block within the others."""
    since, until = times
    offsets = index.offsets
    marks = len(offsets)
    k = index.stretch_of(offset)
    producers = Producers()
    chunk = _chunk(max_bytes - used, 1 << 20)
    while offset < stop:
        # Past the stretches that hold nothing of the range, without reading them.
        first = k
        if since is not None:
            first = max(first, index.first_stretch(since))
        while first < marks and index.misses(first, since, until):
            first += 1
        if first >= marks or offsets[first] >= stop:
            return stop, used
        if first > k or offsets[first] > offset:
            k, offset = first, offsets[first]
        end = offsets[k + 1] if k + 1 < marks and offsets[k + 1] < stop else stop
        located = BlockCursor.locate(read, view, offset, end, report)
        if located is None:
            return offset, used
        start, skip = located
        if not skip:
            offset = start
        for item in walk_blocks(read, view.marker, start, end, chunk):
            if isinstance(item, Damage):
                report(item)
                offset = item.end
                continue
            if times.admits(item.received_ns):
                size = len(item.payload)
                if out and used + size > max_bytes:
                    return offset, used
                out.append(stored_block(category, view.base, item, producers))
                used += size
            offset = item.end
            if used >= max_bytes:
                return offset, used
        offset = max(offset, end)
        k += 1
    return offset, used


def v1_block(category: str, base: int, frames: list[Frame], producers: Producers) -> StoredBlock:
    """Version-1 records of one batch and write (see :func:`writes_v1`) as an uncompressed
    block that lists each record's position."""
    messages = [f.message for f in frames]
    columns = join_columns(pack_lengths(messages), messages)
    runs: IndexRuns = index_runs([f.batch_index for f in frames])
    first = frames[0]
    return StoredBlock(
        category,
        base + first.offset,
        producers.text(first.producer),
        first.sequence,
        first.batch_count,
        tuple(runs),
        first.received_ns,
        len(frames),
        NONE,
        len(columns),
        columns,
        tuple(base + f.offset for f in frames),
    )
