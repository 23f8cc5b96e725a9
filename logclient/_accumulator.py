"""Where the sender's next batch comes from (Kafka's ``RecordAccumulator``).

Four ordered sources, oldest first:

1. ``front``: deliveries that need another server (a connection failed with
   them in its window, a server refused them, the halves of a batch a server
   found too large), kept in the order batches were first taken;
2. the spool (oldest batches on disk, possibly from an earlier process);
3. ``pending``: batches formed from memory that could not be spooled;
4. the memory queue, cut into batches of ``BatchPolicy`` size, a partial
   batch only after its first record waited ``linger_s`` (or at once for
   ``flush()`` and ``close()``).

A batch from the queue gets the next ``sequence`` of this client's producer
and its ordinals are reported to the settlement as formed; it keeps that
identity through every resend, spill and restart. The spool's *mark* is the
highest spool id handed out: a batch the sender holds and that was also
written to the spool (see :mod:`logclient._spilling`) is not read back a
second time.

Runs on the sender thread only; ``flush()`` on another thread only raises
:attr:`flush_target`.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable

from logclient._batch import Batch
from logclient._delivery import Delivery
from logclient._policies import BatchPolicy
from logclient._queue import RecordQueue
from logclient._settlement import Settlement
from logclient._spool import Spool

__all__ = ["Accumulator"]


class Accumulator:
    """Forms batches from the queue and hands out deliveries in order."""

    def __init__(
        self,
        queue: RecordQueue,
        spool: Spool | None,
        batching: BatchPolicy,
        settlement: Settlement,
        producer: str,
    ) -> None:
        self.queue = queue
        self._spool = spool
        self._batching = batching
        self._settlement = settlement
        self.producer = producer
        self.front: deque[Delivery] = deque()
        self.pending: deque[Batch] = deque()
        self.spool_mark = -1
        self._sequence = 0
        self._order = 0
        #: Raised by flush() (another thread): a partial batch up to here goes now.
        self.flush_target = 0
        #: Set when the client closes: partial batches go at once.
        self.stopping = False

    def __repr__(self) -> str:
        return (
            f"<Accumulator front={len(self.front)} pending={len(self.pending)} "
            f"queued={len(self.queue)} next_sequence={self._sequence}>"
        )

    # ------------------------------------------------------------ handing out

    def next(self) -> Delivery | None:
        """The oldest delivery to send now, or None (nothing, or a partial batch lingering)."""
        if self.front:
            return self.front.popleft()
        batch = self._next_batch()
        return self.deliver(batch) if batch is not None else None

    def _next_batch(self) -> Batch | None:
        spool = self._spool
        if spool is not None and spool.batches:
            batch = spool.head(after=self.spool_mark)
            if batch is not None:
                assert batch.spool_id is not None
                self.spool_mark = batch.spool_id
                return batch
        if self.pending:
            return self.pending.popleft()
        if not len(self.queue) or self.lingering():
            return None
        return self.form_batch()

    def deliver(self, batch: Batch) -> Delivery:
        """A new delivery record for ``batch`` (the next in order)."""
        self._order += 1
        return Delivery(batch, (self._order,))

    def push_front(self, *deliveries: Delivery) -> None:
        """Put ``deliveries`` (in this order) before everything else."""
        self.front.extendleft(reversed(deliveries))

    def requeue(self, deliveries: Iterable[Delivery]) -> None:
        """Put back deliveries that need another server, in the order they were first taken."""
        queued = {id(d) for d in self.front}
        items = [d for d in deliveries if not d.done and id(d) not in queued]
        if not items:
            return
        if not self.front:
            self.front.extend(items)
            return
        # Stable: halves of one batch share its order and keep theirs.
        merged = sorted([*items, *self.front], key=lambda d: d.order)
        self.front.clear()
        self.front.extend(merged)

    # ---------------------------------------------------------------- batching

    def lingering(self) -> bool:
        """True while the queue's partial batch should wait for more records."""
        queue = self.queue
        if self.stopping or self.flush_target > queue.taken or queue.batch_ready():
            return False
        return time.monotonic() < queue.first_at + self._batching.linger_s

    def form_batch(self) -> Batch:
        """Take the next batch from the queue (at least one record must be queued)."""
        categories, messages, nbytes, end = self.queue.take(
            self._batching.max_records, self._batching.max_bytes
        )
        batch = Batch(self.producer, self._sequence, categories, messages, nbytes, end)
        self._sequence += 1
        if messages:
            self._settlement.formed(end - len(messages), end)
        return batch

    def note_flush(self, target: int) -> None:
        """From flush(): records up to ``target`` must not linger."""
        if target > self.flush_target:
            self.flush_target = target
