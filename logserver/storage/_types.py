"""The values storage hands back: frozen, so callers may share them between threads."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AppendOutcome", "ReadBatch", "SegmentRecord"]


@dataclass(frozen=True, slots=True)
class SegmentRecord:
    """One record as storage reads it back from its category's segments.

    (The Thrift ``StoredRecord`` that ``Read`` returns is made from it; it
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
