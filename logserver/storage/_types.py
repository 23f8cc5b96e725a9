"""The values storage hands back: frozen, so callers may share them between threads."""

from __future__ import annotations

from dataclasses import dataclass

from logserver.storage._columns import decode_messages
from logwire.blocks import run_indexes

__all__ = [
    "AppendOutcome",
    "BlockBatch",
    "CategoryStats",
    "QueryBatch",
    "ReadBatch",
    "SegmentRecord",
    "StoredBlock",
]


@dataclass(frozen=True, slots=True)
class SegmentRecord:
    """One record as storage reads it back from its category's segments.

    (The Thrift ``SegmentRecord`` that ``Read`` returns is made from it; it
    leaves out ``count``.)

    ``position`` is the record's byte offset in the category's stream: stable
    across segment rotation and retention, and usable as a read position.
    ``index``/``count`` place it in its batch; ``sequence`` is -1 and
    ``producer`` empty for records that came without a producer (Scribe).
    """

    category: str
    message: bytes
    producer: str
    sequence: int
    index: int
    count: int
    received_ns: int
    position: int


@dataclass(frozen=True, slots=True)
class AppendOutcome:
    """What one :meth:`Storage.append` did."""

    stored: int
    """Records written by this call (0 for a duplicate)."""
    duplicate: bool
    """The (producer, sequence) batch was stored before; nothing was written."""


@dataclass(frozen=True, slots=True)
class ReadBatch:
    """Records read from one category, and where to continue."""

    records: list[SegmentRecord]
    next_position: int
    """Pass this as the next read's position (equal to the request's when nothing was new)."""
    end_of_log: bool
    """Nothing more was readable after ``next_position`` when the read ran."""


@dataclass(frozen=True, slots=True)
class StoredBlock:
    """One stored block of a category: its records' shared metadata once, the records in
    columns, the payload as it sits on disk.

    Record ``i`` has position ``position + i`` (``positions[i]`` for a block served
    from a version-1 segment), batch index from ``index_runs``, and the message
    that :meth:`messages` decodes. ``payload`` decodes with
    :func:`logwire.compression.decompress` (``codec``, ``raw_bytes``) to the
    columns: ``records`` big-endian u32 lengths, then the messages.
    """

    category: str
    position: int
    producer: str
    sequence: int
    batch_count: int
    index_runs: tuple[tuple[int, int], ...]
    received_ns: int
    records: int
    codec: int
    raw_bytes: int
    payload: bytes
    positions: tuple[int, ...] | None = None

    def messages(self) -> list[bytes]:
        """The records' messages, decompressed."""
        return decode_messages(self.codec, self.payload, self.raw_bytes, self.records)

    def indexes(self) -> list[int]:
        """Each record's index in its batch."""
        return run_indexes(self.index_runs)

    def record_positions(self) -> list[int] | range:
        """Each record's position (a read from it starts at that record)."""
        if self.positions is not None:
            return list(self.positions)
        return range(self.position, self.position + self.records)


@dataclass(frozen=True, slots=True)
class BlockBatch:
    """Whole blocks read from one category, and where to continue."""

    blocks: list[StoredBlock]
    next_position: int
    """Pass this as the next read's position (equal to the request's when nothing was new)."""
    end_of_log: bool
    """Nothing more was readable after ``next_position`` when the read ran."""


@dataclass(frozen=True, slots=True)
class QueryBatch:
    """Blocks of a query (:meth:`Storage.query_blocks`), where to continue, where it started."""

    blocks: list[StoredBlock]
    next_position: int
    end_of_log: bool
    start_position: int
    """Where reading started: the position asked for (or found), or the oldest kept one
    when retention deleted what was asked for."""


@dataclass(frozen=True, slots=True)
class CategoryStats:
    """One category from its segments' indexes: no record read."""

    category: str
    records: int
    bytes: int
    first_ns: int
    """Receive time of the oldest block (0: none)."""
    last_ns: int
