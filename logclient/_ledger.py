"""What the sender owes: batches taken and not yet acknowledged, copies still to make,
and what it tells the settlement.

Every delivery the sender takes is *in hand* until it is acknowledged
(``ReplicationPolicy.acks`` servers hold it) or given up: those batches are
what the spiller writes to the spool before anything newer, and what
``stats().in_flight`` counts. A delivery acknowledged with fewer than
``ReplicationPolicy.copies`` holders (or one whose copies beyond ``acks``
found no server yet) *waits for copies*: it no longer holds up ``flush()``,
and the sender places its missing copies when servers are there. Those wait
in memory only, within ``ReplicationPolicy.max_waiting_bytes``; beyond it, and
at close, the oldest are given up (counted in ``stats().copies_given_up``:
the records are stored, on fewer servers than asked).

A batch derived from another (a split half, a batch minus a category no
server takes) settles through the batch it came from, once all of that
batch's children have: only then is its spool file removed and its ordinals
reported (see :mod:`logclient._settlement`, which keeps the rule itself).
A record given up is counted, logged (rate-limited) and remembered by
position for ``flush(require_acknowledged=True)``.

Runs on the sender thread; the counters, :meth:`in_memory_records` and
:meth:`waiting_records` may be read from any thread.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from logclient._batch import Batch
from logclient._delivery import Delivery
from logclient._queue import RateLimitedLog
from logclient._settlement import Settlement
from logclient._spool import Spool

__all__ = ["Ledger"]

logger = logging.getLogger("logclient._sender")


class Ledger:
    """The deliveries in hand, the copies owed, and the settlement of one client."""

    def __init__(self, spool: Spool | None, max_waiting_bytes: int) -> None:
        self._spool = spool
        self._max_waiting_bytes = max_waiting_bytes
        self.settlement = Settlement()
        self._unacked: dict[tuple[int, ...], Delivery] = {}
        # Deliveries whose copies beyond ``acks`` are still to be made, oldest first.
        self._waiting: dict[tuple[int, ...], Delivery] = {}
        self._waiting_bytes = 0
        self.dropped_records = 0
        self.acked_records = 0
        self.acked_batches = 0
        self.copies_given_up = 0
        self._drop_log = RateLimitedLog(logger)
        self._copies_log = RateLimitedLog(logger)

    def __repr__(self) -> str:
        return (
            f"<Ledger {self.settlement!r} in_hand={len(self._unacked)} "
            f"waiting_for_copies={len(self._waiting)} dropped={self.dropped_records}>"
        )

    # ----------------------------------------------------------------- in hand

    def track(self, delivery: Delivery) -> None:
        """``delivery`` was taken to be sent: in hand until acknowledged or given up."""
        self._unacked.setdefault(delivery.order, delivery)

    def unacked(self) -> list[Delivery]:
        """The deliveries in hand, in no particular order."""
        return list(self._unacked.values())

    def roots_in_hand(self) -> Iterator[Batch]:
        """The batches taken and not yet acknowledged, oldest first, each root once."""
        seen: set[int] = set()
        for delivery in sorted(self._unacked.values(), key=lambda d: d.order):
            root = delivery.batch.root
            if id(root) not in seen:
                seen.add(id(root))
                yield root

    def in_memory_records(self) -> int:
        """Records of batches in hand that are in memory only (not in the spool)."""
        # list() copies in one step under the GIL: safe from another thread.
        total = 0
        seen: set[int] = set()
        for delivery in list(self._unacked.values()):
            root = delivery.batch.root
            if id(root) not in seen and root.spool_id is None:
                seen.add(id(root))
                total += root.count
        return total

    # ------------------------------------------------------------- outcomes

    def acknowledge(self, delivery: Delivery) -> None:
        """``delivery`` reached its ``acks``: acknowledged to the app and settled."""
        delivery.acked = True
        self._unacked.pop(delivery.order, None)
        self.acked_batches += 1
        self.acked_records += delivery.batch.count
        self.settle(delivery.batch)

    def replace(self, delivery: Delivery, batches: list[Batch]) -> list[Delivery]:
        """``delivery``'s batch goes on as ``batches`` (its halves, or itself minus a
        category); the new deliveries, in hand."""
        self._retire(delivery)
        children = [Delivery(b, (*delivery.order, i)) for i, b in enumerate(batches)]
        for child in children:
            self._unacked[child.order] = child
        return children

    def drop(self, delivery: Delivery, reason: str) -> None:
        """Give up ``delivery`` by policy: counted, logged, settled."""
        self._retire(delivery)
        self.drop_batch(delivery.batch, reason)

    def _retire(self, delivery: Delivery) -> None:
        delivery.done = True
        self._unacked.pop(delivery.order, None)
        self.copies_placed(delivery)

    def drop_batch(self, batch: Batch, reason: str) -> None:
        """Give up ``batch`` (not in hand: the spiller's) by policy."""
        self.count_drop(batch.count, reason, batch)
        self.settle(batch)

    def settle(self, batch: Batch) -> None:
        """``batch`` is done (acknowledged or dropped); settle it and finished ancestors."""
        node = batch
        while node.parent is not None:
            parent = node.parent
            parent.children_left -= 1
            if parent.children_left > 0:
                return
            node = parent
        if node.spool_id is not None and self._spool is not None:
            self._spool.remove(node)
        self.settlement.settle(node.end_ordinal)

    def count_drop(self, records: int, reason: str, batch: Batch | None = None) -> None:
        """Count ``records`` as given up (of ``batch``, for ``flush(require_acknowledged=True)``)."""
        self.dropped_records += records
        if batch is not None:
            self.settlement.note_dropped(batch.root.start_ordinal)
        self._drop_log.warning("logclient dropped %d records: %s", records, reason)

    # ------------------------------------------------------ copies beyond acks

    def wait_for_copies(self, delivery: Delivery) -> None:
        """``delivery`` has enough servers for its ``acks`` but fewer than its ``copies``."""
        if delivery.order in self._waiting:
            return
        self._waiting[delivery.order] = delivery
        self._waiting_bytes += delivery.batch.nbytes
        while self._waiting_bytes > self._max_waiting_bytes and len(self._waiting) > 1:
            oldest = next(iter(self._waiting.values()))
            self.give_up_copies(oldest, "ReplicationPolicy.max_waiting_bytes reached")

    def copies_placed(self, delivery: Delivery) -> None:
        """``delivery`` no longer waits for copies (it has them, or is done with)."""
        if self._waiting.pop(delivery.order, None) is not None:
            self._waiting_bytes -= delivery.batch.nbytes

    def waiting(self) -> list[Delivery]:
        """Deliveries waiting for copies beyond ``acks``, oldest first."""
        return list(self._waiting.values())

    def waiting_records(self) -> int:
        """Records stored on ``acks`` servers (or on their way there) that wait for their
        copies beyond ``acks`` to be stored (to be sent, or answered)."""
        return sum(d.batch.count for d in list(self._waiting.values()))

    def give_up_copies(self, delivery: Delivery, reason: str) -> None:
        """Stop trying to make ``delivery``'s missing copies (counted and logged)."""
        if delivery.order not in self._waiting:
            return
        self.copies_placed(delivery)
        self.copies_given_up += delivery.batch.count
        if delivery.acked and not delivery.trying:
            delivery.done = True
        self._copies_log.warning(
            "logclient: gave up the missing copies of %d records (stored on %d servers): %s",
            delivery.batch.count,
            len(delivery.holders),
            reason,
        )
