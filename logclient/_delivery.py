"""A batch's delivery record: which servers hold it durably, and which are being tried.

The sender makes one :class:`Delivery` when it takes a batch to send (from
the queue, the spool or a split) and keeps it until the batch is done with:
acknowledged by as many servers as the client asked for, or dropped. The
record, not the batch, is what the sender's collaborators pass around: a
connection's window lists deliveries, the accumulator's front holds those
that need another server, the spiller writes their batches to the spool.

Counts are per distinct server (endpoint): ``holders`` answered that they
store the batch durably (or had it already), ``trying`` have a call with it
unanswered. A batch is *acknowledged* (settled for ``flush()``) once
``len(holders)`` reaches the client's ``acks``; it is *complete* once it
reaches ``copies``. Runs on the sender thread only, except :attr:`batch`,
which ``stats()`` reads.
"""

from __future__ import annotations

from logclient._batch import Batch
from logwire.serverset import Endpoint

__all__ = ["Delivery"]


class Delivery:
    """One batch on its way to the servers (see the module docstring)."""

    __slots__ = (
        "acked",
        "batch",
        "done",
        "first_sent_at",
        "hedged_at",
        "holders",
        "order",
        "trying",
    )

    def __init__(self, batch: Batch, order: tuple[int, ...]) -> None:
        self.batch = batch
        #: Where the batch stands in logging order: the sender's running number for a
        #: batch it took, ``(*parent, i)`` for the i-th batch derived from one (a split
        #: half). Resends go out oldest first by it; it also names the delivery.
        self.order = order
        self.holders: set[Endpoint] = set()
        self.trying: set[Endpoint] = set()
        #: Reached ``acks`` holders (settled for flush(); counted in stats().acknowledged).
        self.acked = False
        #: No longer followed: complete, dropped, or replaced by its halves or a child.
        self.done = False
        #: When it was sent to one more server because no answer came in time (see
        #: logclient._hedging); None: it was not.
        self.hedged_at: float | None = None
        self.first_sent_at: float | None = None

    def __repr__(self) -> str:
        state = "done" if self.done else ("acked" if self.acked else "open")
        return (
            f"<Delivery #{'.'.join(map(str, self.order))} {self.batch.producer}/{self.batch.sequence} {state} "
            f"holders={sorted(map(str, self.holders))} trying={sorted(map(str, self.trying))}>"
        )

    def missing(self, copies: int) -> int:
        """How many more servers must be given the batch to reach ``copies``."""
        return copies - len(self.holders) - len(self.trying)

    def excluded(self) -> frozenset[Endpoint]:
        """Servers that must not get another copy: they hold it, have it in flight, or
        refused it as too large."""
        return frozenset(self.holders | self.trying) | self.batch.refused_by
