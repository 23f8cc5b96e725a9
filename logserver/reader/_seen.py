"""Which records a reader has shown: exact, in memory that follows batches, not records.

Copies of a batch (a failover's resend, a hedge, a replica, a spool replayed
hours later, the halves of a batch the client split) carry the same batch id,
``(producer, sequence)``, or map back to it (:func:`logwire.batchid.canonical_key`).
So instead of a set of record keys this keeps, per producer:

- ``done``: the sequences whose records in this category have all been shown,
  as a set of intervals. A producer's sequences are dense (0, 1, 2, ...), so a
  whole day of one app's batches is usually one interval, whatever its size;
- ``partial``: for the few batches seen only in part, the record indexes shown.

A batch becomes *done* when one server's copy of it has been shown whole. A
server stores a batch's records of one category in one write (one or more
blocks, one after another, published at once), so that is known when the
block holds the whole batch (``count == batch_count``), or when that
server's stream moves on to another batch or reaches its end. Until then the
batch is partial, and each record is checked by its index: exact in every
order the copies can arrive in. A split half never completes its parent on
its own (its parent's size is not known), so a batch whose only copies are
halves stays partial: memory for such batches grows with their number, which
is the number of batches a server refused as too large.

What memory grows with: one interval per run of a producer's sequences
without a gap. A producer whose batches hold no record of this category
(another category's batches) leaves gaps, since nothing tells a reader that
such a batch will never show up here; a category that gets a record from
every few batches of a producer costs an interval per gap (16 bytes).
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Sequence

from logwire.batchid import canonical_key

__all__ = ["BatchId", "IntervalSet", "SeenRecords"]

#: A batch id after mapping split halves back: (producer, sequence).
BatchId = tuple[str, int]


class IntervalSet:
    """A set of ints kept as disjoint, non-adjacent half-open intervals: one array of
    bounds ``[start0, end0, start1, end1, ...]``, ascending."""

    __slots__ = ("_bounds",)

    def __init__(self, ranges: Iterable[tuple[int, int]] = ()) -> None:
        self._bounds = array("q")
        for lo, hi in ranges:
            self.add(lo, hi)

    def __repr__(self) -> str:
        shown = ", ".join(f"[{lo}, {hi})" for lo, hi in list(self.ranges())[:4])
        more = " ..." if len(self) > 4 else ""
        return f"<IntervalSet {shown}{more}>"

    def __len__(self) -> int:
        """The number of intervals (not of ints)."""
        return len(self._bounds) // 2

    def __contains__(self, value: int) -> bool:
        return bisect_right(self._bounds, value) % 2 == 1

    def ranges(self) -> Iterator[tuple[int, int]]:
        """The intervals, ascending."""
        b = self._bounds
        return zip(b[0::2], b[1::2], strict=True)

    def covers(self, lo: int, hi: int) -> bool:
        """Whether every int of ``[lo, hi)`` is in the set."""
        if lo >= hi:
            return True
        i = bisect_right(self._bounds, lo)
        return i % 2 == 1 and self._bounds[i] >= hi

    def add(self, lo: int, hi: int) -> None:
        """Add ``[lo, hi)``, merging with the intervals it overlaps or touches."""
        if lo >= hi:
            return
        b = self._bounds
        if not b or lo > b[-1]:  # the common case: past everything
            b.append(lo)
            b.append(hi)
            return
        if lo == b[-1]:
            b[-1] = max(hi, b[-1])
            return
        i = bisect_left(b, lo)  # bounds before i are < lo
        if i % 2:  # lo falls in (or right at the end of) the interval starting at b[i-1]
            i -= 1
            lo = b[i]
        j = bisect_right(b, hi)  # bounds before j are <= hi
        if j % 2:  # hi falls in the interval starting at b[j-1]
            hi = b[j]
            j += 1
        b[i:j] = array("q", (lo, hi))

    def missing(self, lo: int, hi: int) -> list[tuple[int, int]]:
        """The parts of ``[lo, hi)`` that are not in the set, ascending."""
        b = self._bounds
        out: list[tuple[int, int]] = []
        i = bisect_right(b, lo)
        at = lo
        if i % 2:  # lo is inside an interval: skip to its end
            at = b[i]
            i += 1
        while at < hi:
            if i >= len(b) or b[i] >= hi:
                out.append((at, hi))
                break
            if b[i] > at:
                out.append((at, b[i]))
            at = b[i + 1]
            i += 2
        return out


class _Producer:
    """What was shown of one producer's batches."""

    __slots__ = ("done", "partial")

    def __init__(self) -> None:
        self.done = IntervalSet()
        self.partial: dict[int, IntervalSet] = {}


class SeenRecords:
    """The records shown so far, by batch id (see the module docstring).

    :meth:`admit` answers, for the records of one block, which are new, and
    remembers them; :meth:`finish` marks a batch whose copy from one server
    has been shown whole. Records without a producer (Scribe's ``Log``) have no
    identity and are always new.
    """

    __slots__ = ("_producers", "admitted", "duplicates")

    def __init__(self) -> None:
        self._producers: dict[str, _Producer] = {}
        self.admitted = 0
        self.duplicates = 0

    def __repr__(self) -> str:
        return (
            f"<SeenRecords producers={len(self._producers)} intervals={self.intervals()} "
            f"partial={self.partial_batches()} admitted={self.admitted} "
            f"duplicates={self.duplicates}>"
        )

    def intervals(self) -> int:
        """Intervals of done sequences, over all producers (what memory grows with)."""
        return sum(len(p.done) for p in self._producers.values())

    def partial_batches(self) -> int:
        """Batches shown in part only."""
        return sum(len(p.partial) for p in self._producers.values())

    @staticmethod
    def batch_of(producer: str, sequence: int) -> tuple[BatchId, int]:
        """The batch a stored batch id belongs to, and the offset of its records in it
        (non-zero for a split half)."""
        parent, parent_sequence, offset = canonical_key(producer, sequence, 0)
        return (parent, parent_sequence), offset

    def admit(
        self, batch: BatchId, offset: int, pieces: Sequence[tuple[int, int, int]]
    ) -> list[tuple[int, int]]:
        """Remember records of a block and say which of them are new.

        ``pieces`` are ``(first index, count, first record)`` triples: ``count``
        records whose indexes in their stored batch start at ``first index``
        (``offset`` shifts them into ``batch``, see :meth:`batch_of`) and which are
        the block's records from ``first record`` on. Returns the new ones as
        ``(first record, count)`` runs of the block's own record numbers.
        """
        state = self._producers.get(batch[0])
        if state is None:
            state = self._producers[batch[0]] = _Producer()
        sequence = batch[1]
        total = sum(p[1] for p in pieces)
        if sequence in state.done:
            self.duplicates += total
            return []
        shown = state.partial.get(sequence)
        if shown is None:
            shown = state.partial[sequence] = IntervalSet()
            for first, n, _ in pieces:
                shown.add(offset + first, offset + first + n)
            self.admitted += total
            return [(at, n) for _, n, at in pieces]
        fresh: list[tuple[int, int]] = []
        for first, n, at in pieces:
            lo = offset + first
            for a, b in shown.missing(lo, lo + n):
                fresh.append((at + a - lo, b - a))
            shown.add(lo, lo + n)
        new = sum(n for _, n in fresh)
        self.admitted += new
        self.duplicates += total - new
        return fresh

    def finish(self, batch: BatchId) -> None:
        """One server's copy of ``batch`` has been shown whole: every later copy is old."""
        state = self._producers.get(batch[0])
        if state is None:
            state = self._producers[batch[0]] = _Producer()
        state.partial.pop(batch[1], None)
        state.done.add(batch[1], batch[1] + 1)
