"""Which (producer, sequence) batches are stored, so a retried batch is not stored twice.

Memory is bounded twice: per producer, the ``window`` highest sequences
(kept as ranges, so a producer counting up costs a few ints however many
batches it sent); and an LRU of at most ``max_producers`` producers. A batch
that fell out of both is stored again if retried: at-least-once, never lost.

Concurrent appends of the same batch (a client retrying on a second connection
while the first still runs) are serialised: the second waits for the first's
outcome, then either reports a duplicate or, if the first failed, writes.
"""

from __future__ import annotations

import threading
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Iterable

__all__ = ["Claim", "DedupIndex", "ProducerState", "SequenceWindow"]


class SequenceWindow:
    """The highest ``capacity`` sequences added, as sorted disjoint inclusive ranges."""

    __slots__ = ("_hi", "_lo", "_size")

    def __init__(self) -> None:
        self._lo: list[int] = []
        self._hi: list[int] = []
        self._size = 0

    def __contains__(self, sequence: int) -> bool:
        i = bisect_right(self._lo, sequence) - 1
        return i >= 0 and sequence <= self._hi[i]

    def __len__(self) -> int:
        return self._size

    def __repr__(self) -> str:
        ranges = ", ".join(f"{lo}..{hi}" for lo, hi in zip(self._lo, self._hi, strict=True))
        return f"<SequenceWindow {ranges}>"

    def add(self, sequence: int, capacity: int) -> None:
        """Remember ``sequence``; forget the lowest sequences beyond ``capacity``."""
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
        self._size += 1
        excess = self._size - capacity
        while excess > 0:
            width = hi[0] - lo[0] + 1
            if width <= excess:
                del lo[0], hi[0]
                self._size -= width
                excess -= width
            else:
                lo[0] += excess
                self._size -= excess
                excess = 0


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
