"""Which batches a category holds: per producer, spans of sequences (:mod:`logwire.holdings`).

``Holdings`` answers from here, and ``Restore`` asks it whether a batch is
held already. The index of a category is built on first use, from the block
headers of its segments (payloads are checked, never decompressed; version-1
records are read as they are), and from then on every write that became
durable adds its batches, so an answer costs a look-up, not a scan.

Building does not stop writers: a build notes the segments and how much of
each is readable, scans that, and meanwhile writes report their batches to a
pending list that the build folds in at the end. A batch found both ways is
counted once (a sequence is either in a span or not). Retention deleting
segments drops the index (``invalidate``), and the next use builds it again;
a build that an invalidation overtook starts over.

What "held" means: the server has records of batch ``(producer, sequence)``
in the category. A batch's records of one category are written in one write
(all of them or none), so two servers that hold a batch hold the same records
of it. Records without a producer (Scribe's ``Log``) have no batch id: they
are only counted (``unidentified``).
"""

from __future__ import annotations

import os
import threading
from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from logserver.storage._blockscan import walk_blocks
from logserver.storage._format import Damage, Frame, pread_at, walk
from logserver.storage._segment import Segment
from logwire.holdings import Span

__all__ = ["CategoryHoldings", "HoldingsView", "Spans", "scan_parts"]


class Spans:
    """One producer's spans in one category: sorted, disjoint, adjacent ones merged.

    Five parallel arrays of int64 (40 bytes a span): first and last sequence,
    records, first and last position.
    """

    __slots__ = ("_first", "_first_pos", "_last", "_last_pos", "_records")

    def __init__(self) -> None:
        self._first = array("q")
        self._last = array("q")
        self._records = array("q")
        self._first_pos = array("q")
        self._last_pos = array("q")

    def __len__(self) -> int:
        return len(self._first)

    def __repr__(self) -> str:
        return f"<Spans {len(self)} spans, {self.batches()} batches>"

    def __contains__(self, sequence: int) -> bool:
        i = bisect_right(self._first, sequence) - 1
        return i >= 0 and sequence <= self._last[i]

    def batches(self) -> int:
        return sum(b - a + 1 for a, b in zip(self._first, self._last, strict=True))

    def spans(self) -> list[Span]:
        return [
            Span(*fields)
            for fields in zip(
                self._first,
                self._last,
                self._records,
                self._first_pos,
                self._last_pos,
                strict=True,
            )
        ]

    def add(self, sequence: int, records: int, first_pos: int, last_pos: int) -> bool:
        """Note batch ``sequence`` (its records in the category, the positions of its first and
        last block); False when it was held already (nothing changes)."""
        first, last = self._first, self._last
        i = bisect_right(first, sequence) - 1
        if i >= 0 and sequence <= last[i]:
            return False
        left = i >= 0 and last[i] == sequence - 1
        right = i + 1 < len(first) and first[i + 1] == sequence + 1
        if left and right:
            last[i] = last[i + 1]
            self._records[i] += records + self._records[i + 1]
            self._first_pos[i] = min(self._first_pos[i], self._first_pos[i + 1], first_pos)
            self._last_pos[i] = max(self._last_pos[i], self._last_pos[i + 1], last_pos)
            for column in (first, last, self._records, self._first_pos, self._last_pos):
                del column[i + 1]
        elif left or right:
            k = i if left else i + 1
            if left:
                last[k] = sequence
            else:
                first[k] = sequence
            self._records[k] += records
            self._first_pos[k] = min(self._first_pos[k], first_pos)
            self._last_pos[k] = max(self._last_pos[k], last_pos)
        else:
            k = i + 1
            first.insert(k, sequence)
            last.insert(k, sequence)
            self._records.insert(k, records)
            self._first_pos.insert(k, first_pos)
            self._last_pos.insert(k, last_pos)
        return True

    def copy(self) -> Spans:
        other = Spans()
        for name in self.__slots__:
            setattr(other, name, array("q", getattr(self, name)))
        return other


@dataclass(frozen=True)
class HoldingsView:
    """A category's holdings at one moment: per producer its spans (copies), and the records
    that have no batch id."""

    producers: dict[str, Spans]
    unidentified: int

    def holds(self, producer: str, sequence: int) -> bool:
        spans = self.producers.get(producer)
        return spans is not None and sequence in spans


#: One batch's part found in a category: (producer, sequence, records, first pos, last pos).
Part = tuple[str, int, int, int, int]


class CategoryHoldings:
    """The holdings index of one category, and the protocol that builds it beside writers."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._producers: dict[str, Spans] | None = None  # None: not built
        self._unidentified = 0
        self._building = False
        self._pending: list[Part] = []
        self._pending_unidentified = 0
        self._generation = 0

    def __repr__(self) -> str:
        state = "building" if self._building else "ready" if self._producers is not None else "cold"
        return f"<CategoryHoldings {state} producers={len(self._producers or ())}>"

    def note(self, parts: list[Part], unidentified: int = 0) -> None:
        """A write became durable: its parts (and records without a producer)."""
        with self._cond:
            if self._producers is not None:
                self._apply(self._producers, parts)
                self._unidentified += unidentified
            elif self._building:
                self._pending.extend(parts)
                self._pending_unidentified += unidentified

    def invalidate(self) -> None:
        """Segments were deleted (retention): drop the index; the next use builds it again."""
        with self._cond:
            self._producers = None
            self._unidentified = 0
            self._generation += 1

    def holds(self, producer: str, sequence: int) -> bool | None:
        """Whether the batch is held, or None while the index is not built."""
        with self._cond:
            if self._producers is None:
                return None
            spans = self._producers.get(producer)
            return spans is not None and sequence in spans

    def view(self, segments: Callable[[], list[Segment]], wait_s: float = 600.0) -> HoldingsView:
        """The holdings now, building the index first if needed (or waiting for the build
        another thread runs). ``segments()`` gives the category's segments; it is called once
        the build is announced, so that a write is either in what the build reads or reported
        to it. Three builds overtaken by retention in a row raise FileNotFoundError (the
        caller answers "unavailable")."""
        for _ in range(3):
            with self._cond:
                self._cond.wait_for(lambda: not self._building, wait_s)
                if self._producers is not None:
                    return self._snapshot()
                self._building = True
                self._pending = []
                self._pending_unidentified = 0
                generation = self._generation
            try:
                producers, unidentified = _build(segments())
            except FileNotFoundError:
                with self._cond:
                    self._building = False
                    self._cond.notify_all()
                continue
            except BaseException:
                with self._cond:
                    self._building = False
                    self._cond.notify_all()
                raise
            with self._cond:
                self._building = False
                self._cond.notify_all()
                if generation != self._generation:
                    continue  # retention deleted segments meanwhile: what we read may be gone
                self._apply(producers, self._pending)
                self._producers = producers
                self._unidentified = unidentified + self._pending_unidentified
                self._pending = []
                return self._snapshot()
        raise FileNotFoundError("segments vanished under three holdings builds in a row")

    def _snapshot(self) -> HoldingsView:
        assert self._producers is not None
        return HoldingsView({p: s.copy() for p, s in self._producers.items()}, self._unidentified)

    @staticmethod
    def _apply(producers: dict[str, Spans], parts: list[Part]) -> None:
        for producer, sequence, records, first_pos, last_pos in parts:
            spans = producers.get(producer)
            if spans is None:
                spans = producers[producer] = Spans()
            spans.add(sequence, records, first_pos, last_pos)


def _build(segments: list[Segment]) -> tuple[dict[str, Spans], int]:
    """Scan ``segments`` as far as each is readable now; FileNotFoundError if one vanished."""
    producers: dict[str, Spans] = {}
    unidentified = 0
    limits = [(segment, segment.readable) for segment in segments]
    for segment, stop in limits:
        for part in scan_parts(segment, stop):
            if isinstance(part, int):
                unidentified += part
            else:
                CategoryHoldings._apply(producers, [part])
    return producers, unidentified


def scan_parts(segment: Segment, stop: int) -> Iterator[Part | int]:
    """The batch parts of a segment up to ``stop``, from headers: a :data:`Part` per batch per
    write, an int for records without a producer. Damaged ranges are skipped (they were
    reported when the segment was read or recovered)."""
    fd = os.open(segment.path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        read = pread_at(fd)
        base = segment.base
        found: dict[tuple[bytes, int], list[int]] = {}  # one write's parts: records, first, last
        if segment.version >= 2:
            for block in walk_blocks(read, segment.marker, segment.data_start, stop, 8 << 20):
                if isinstance(block, Damage):
                    found.clear()
                    continue
                if not block.producer:
                    yield block.records
                else:
                    at = base + block.offset
                    entry = found.get((block.producer, block.sequence))
                    if entry is None:
                        found[(block.producer, block.sequence)] = [block.records, at, at]
                    else:
                        entry[0] += block.records
                        entry[2] = at
                if block.ends_write:
                    yield from _parts(found)
        elif segment.version == 1:
            for frame in walk(read, 0, stop, 8 << 20):
                if isinstance(frame, Damage):
                    found.clear()
                    continue
                assert isinstance(frame, Frame)
                if not frame.producer:
                    yield 1
                else:
                    at = base + frame.offset
                    entry = found.get((frame.producer, frame.sequence))
                    if entry is None:
                        found[(frame.producer, frame.sequence)] = [1, at, at]
                    else:
                        entry[0] += 1
                        entry[2] = at
                if frame.ends_write:
                    yield from _parts(found)
    finally:
        os.close(fd)


def _parts(found: dict[tuple[bytes, int], list[int]]) -> Iterator[Part]:
    for (producer, sequence), (records, first, last) in found.items():
        yield producer.decode("utf-8", "replace"), sequence, records, first, last
    found.clear()
