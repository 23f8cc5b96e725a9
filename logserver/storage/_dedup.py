"""Which (producer, sequence) batches are stored, so a retried batch is not stored twice.

Memory is bounded twice: per producer a :class:`SequenceWindow` of fixed
size (a bitmap of the ``window`` sequence numbers below its highest, plus a
few ranges further down); and an LRU of at most ``max_producers`` producers.

**What forgetting costs.** A batch the index no longer knows (its producer
was evicted as least recently used, its sequence fell out of the window, or
the restart's scan budget did not reach it) is *stored again* when it is
retried: never answered "duplicate" without being stored, so forgetting can
never lose a record, only store one twice. The two copies carry the same
(producer, sequence, index), which is how readers (``logserver read``,
``tests/readback.py``) show each record once, exactly as for a batch stored on
two servers after a failover.

Concurrent appends of the same batch (a client retrying on a second connection
while the first still runs) are serialised: the second waits for the first's
outcome, then either reports a duplicate or, if the first failed, writes.

What the index holds is *not* a complete account of what storage holds (see
:meth:`DedupIndex.held`): a complete one comes from the block headers on disk
(``Segment.scan``), which recovery also reads.
"""

from __future__ import annotations

import threading
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Iterable

__all__ = [
    "MAX_OLD_RANGES",
    "MAX_PARTIAL_PER_PRODUCER",
    "Claim",
    "DedupIndex",
    "ProducerState",
    "SequenceWindow",
]

#: Ranges a window keeps below its bitmap at most (the lowest are forgotten first).
MAX_OLD_RANGES = 16

#: Batches partly on disk remembered per producer (recovered ones, or parts copied by repair).
MAX_PARTIAL_PER_PRODUCER = 100_000


def _runs(bits: int, top: int, limit: int) -> list[tuple[int, int]]:
    """The set bits of ``bits`` as sequence ranges, highest first, at most ``limit``: bit
    ``j`` stands for sequence ``top - j``."""
    found: list[tuple[int, int]] = []
    j = 0
    while bits and len(found) < limit:
        skip = (bits & -bits).bit_length() - 1  # zeros below the next run
        bits >>= skip
        j += skip
        ones = (~bits & (bits + 1)).bit_length() - 1  # the run's length
        found.append((top - j - ones + 1, top - j))
        bits >>= ones
        j += ones
    return found


class SequenceWindow:
    """The sequences of one producer known to be stored, in memory that does not grow.

    A bitmap of the ``capacity`` sequence numbers up to the highest one added
    (bit ``i``: sequence ``highest - i``): ``capacity / 8`` bytes however the
    sequences interleave. (A client that spreads its batches over three servers
    leaves each of them about every third sequence; kept as ranges that was
    some 2,700 ranges, about 200 KB, per producer and server.) Below it at
    most :data:`MAX_OLD_RANGES` ranges of what slid out of the bitmap, the
    highest kept: for a producer counting up, one range however long; for the
    halves of a split batch, whose sequences are record offsets far apart, one
    each. What falls out of both is forgotten (see the module doc).
    """

    __slots__ = ("_bits", "_hi", "_high", "_lo")

    def __init__(self) -> None:
        self._high: int | None = None
        self._bits = 0
        self._lo: list[int] = []  # ranges below the bitmap, ascending
        self._hi: list[int] = []

    def __contains__(self, sequence: int) -> bool:
        high = self._high
        if high is None or sequence > high:
            return False
        i = high - sequence
        if i < self._bits.bit_length():
            return bool(self._bits >> i & 1)
        k = bisect_right(self._lo, sequence) - 1
        return k >= 0 and sequence <= self._hi[k]

    def __len__(self) -> int:
        return self._bits.bit_count() + sum(
            hi - lo + 1 for lo, hi in zip(self._lo, self._hi, strict=True)
        )

    def __repr__(self) -> str:
        ranges = ", ".join(f"{lo}..{hi}" for lo, hi in self.ranges())
        return f"<SequenceWindow {ranges}>"

    def ranges(self) -> list[tuple[int, int]]:
        """Every sequence known, as sorted disjoint inclusive ranges."""
        known = list(zip(self._lo, self._hi, strict=True))
        if self._high is not None:
            for lo, hi in reversed(_runs(self._bits, self._high, self._bits.bit_count())):
                if known and known[-1][1] + 1 == lo:
                    known[-1] = (known[-1][0], hi)
                else:
                    known.append((lo, hi))
        return known

    def add(self, sequence: int, capacity: int) -> None:
        """Remember ``sequence``; what leaves the bitmap (``capacity`` sequence numbers below
        the highest) becomes a range below it, at most :data:`MAX_OLD_RANGES` of them."""
        high = self._high
        if high is None:
            self._high, self._bits = sequence, 1
            return
        if sequence > high:
            shift = sequence - high
            if shift < capacity:
                out = self._bits >> (capacity - shift)
                top = high - (capacity - shift)
                self._bits = ((self._bits << shift) | 1) & ((1 << capacity) - 1)
            else:
                out, top = self._bits, high
                self._bits = 1
            self._high = sequence
            if out:
                self._push(reversed(_runs(out, top, MAX_OLD_RANGES)))
            return
        i = high - sequence
        if i < capacity:
            self._bits |= 1 << i
        else:
            self._insert(sequence)

    def _push(self, runs: Iterable[tuple[int, int]]) -> None:
        """Append ranges above every range kept (ascending), merging a touching one."""
        lo, hi = self._lo, self._hi
        for start, end in runs:
            if hi and hi[-1] + 1 == start:
                hi[-1] = end
            else:
                lo.append(start)
                hi.append(end)
        self._trim()

    def _insert(self, sequence: int) -> None:
        """Add a sequence below the bitmap (a retry that had been forgotten)."""
        lo, hi = self._lo, self._hi
        i = bisect_right(lo, sequence) - 1
        if i >= 0 and sequence <= hi[i]:
            return
        left = i >= 0 and hi[i] == sequence - 1
        right = i + 1 < len(lo) and lo[i + 1] == sequence + 1
        if left and right:
            hi[i] = hi[i + 1]
            del lo[i + 1], hi[i + 1]
        elif left:
            hi[i] = sequence
        elif right:
            lo[i + 1] = sequence
        else:
            lo.insert(i + 1, sequence)
            hi.insert(i + 1, sequence)
        self._trim()

    def _trim(self) -> None:
        excess = len(self._lo) - MAX_OLD_RANGES
        if excess > 0:
            del self._lo[:excess], self._hi[:excess]


class ProducerState:
    """What the index remembers of one producer: its stored sequences, and partial batches."""

    __slots__ = ("partial", "window")

    def __init__(self) -> None:
        self.window = SequenceWindow()
        # Batches found incomplete at recovery (a crash between two categories of one batch):
        # sequence -> bitmask of the indexes already on disk, which a retry must not write again.
        self.partial: dict[int, int] | None = None

    def __repr__(self) -> str:
        return f"<ProducerState {self.window!r} partial={sorted(self.partial or ())}>"


class Claim:
    """The right to write one batch; hand it back with :meth:`DedupIndex.finish`."""

    __slots__ = ("producer", "sequence", "stored_mask")

    def __init__(self, producer: str, sequence: int, stored_mask: int) -> None:
        self.producer = producer
        self.sequence = sequence
        self.stored_mask = stored_mask
        """Bit i set: record i of the batch is already on disk (recovered partial batch)."""

    def __repr__(self) -> str:
        return f"<Claim {self.producer!r}#{self.sequence} stored_mask={self.stored_mask:#x}>"


class DedupIndex:
    """Stored batches per producer, plus the batches being written right now."""

    def __init__(self, window: int, max_producers: int) -> None:
        self._window = window
        self._max_producers = max_producers
        self._cond = threading.Condition(threading.Lock())
        self._producers: OrderedDict[str, ProducerState] = OrderedDict()
        self._inflight: set[tuple[str, int]] = set()
        self._waiting = 0

    def __repr__(self) -> str:
        return (
            f"<DedupIndex producers={len(self._producers)}/{self._max_producers} "
            f"window={self._window} inflight={len(self._inflight)}>"
        )

    def __len__(self) -> int:
        """Producers remembered."""
        return len(self._producers)

    def held(self, producer: str) -> list[tuple[int, int]]:
        """The sequences of ``producer``'s batches this index knows are stored whole, as
        sorted inclusive ranges (without making the producer more recently used).

        A lower bound, not an account: what the bounds made it forget, what the
        restart's scan budget did not reach and partly stored batches are not in
        it. Whoever needs everything storage holds (a repair between servers)
        reads the block headers of the segments instead."""
        with self._cond:
            state = self._producers.get(producer)
            return state.window.ranges() if state is not None else []

    def begin(self, producer: str, sequence: int) -> Claim | None:
        """None if the batch is stored (a duplicate); else a claim to write it.

        Waits while another thread writes the same batch.
        """
        key = (producer, sequence)
        with self._cond:
            while True:
                state = self._producers.get(producer)
                if state is not None:
                    self._producers.move_to_end(producer)
                    if sequence in state.window:
                        return None
                if key not in self._inflight:
                    self._inflight.add(key)
                    mask = 0
                    if state is not None and state.partial:
                        mask = state.partial.get(sequence, 0)
                    return Claim(producer, sequence, mask)
                self._waiting += 1
                try:
                    self._cond.wait()
                finally:
                    self._waiting -= 1

    def finish(self, claim: Claim, *, stored: bool) -> None:
        """Release the claim; ``stored``: the batch is now durable (acknowledge retries)."""
        with self._cond:
            self._inflight.discard((claim.producer, claim.sequence))
            if stored:
                state = self._state(claim.producer)
                state.window.add(claim.sequence, self._window)
                if state.partial:
                    state.partial.pop(claim.sequence, None)
            if self._waiting:
                self._cond.notify_all()

    def finish_restored(self, claim: Claim, bits: int, batch_count: int) -> None:
        """Release a claim whose batch got the records of ``bits`` (bit i: index i) from a copy
        (``Storage.restore``): a later append of the batch writes only the records still
        missing, and once all ``batch_count`` are on disk the batch counts as stored."""
        with self._cond:
            self._inflight.discard((claim.producer, claim.sequence))
            state = self._state(claim.producer)
            if claim.sequence not in state.window:
                if state.partial is None:
                    state.partial = {}
                mask = state.partial.get(claim.sequence, 0) | claim.stored_mask | bits
                if mask.bit_count() >= batch_count:
                    state.window.add(claim.sequence, self._window)
                    state.partial.pop(claim.sequence, None)
                else:
                    state.partial[claim.sequence] = mask
                    if len(state.partial) > MAX_PARTIAL_PER_PRODUCER:
                        # Forgetting one only costs a copy on disk if the client sends the
                        # batch again (readers show each record once).
                        del state.partial[next(iter(state.partial))]
            if self._waiting:
                self._cond.notify_all()

    def restore(
        self,
        stored: Iterable[tuple[str, SequenceWindow]],
        partial: Iterable[tuple[str, int, int]],
    ) -> None:
        """Load what recovery found on disk, before any append.

        ``stored``: each producer's window of complete batches, least recently
        used producer first. ``partial``: (producer, sequence, bitmask of the
        indexes on disk) of batches only partly on disk.
        """
        with self._cond:
            for producer, window in stored:
                self._state(producer).window = window
            for producer, sequence, mask in partial:
                state = self._state(producer)
                if sequence in state.window:
                    continue
                if state.partial is None:
                    state.partial = {}
                state.partial[sequence] = mask

    def _state(self, producer: str) -> ProducerState:
        """The producer's state (made if new), now the most recently used."""
        state = self._producers.get(producer)
        if state is None:
            state = self._producers[producer] = ProducerState()
            if len(self._producers) > self._max_producers:
                self._producers.popitem(last=False)
        else:
            self._producers.move_to_end(producer)
        return state
