"""What to do with a batch a server refused as it is: another server, halves, fewer records, or drop.

A refusal is an answer, not a failure: the server is up and said why. Runs on
the sender thread only.
"""

from __future__ import annotations

import logging

from logclient._accumulator import Accumulator
from logclient._delivery import Delivery
from logclient._ledger import Ledger
from logclient._servers import ServerPool
from logclient.errors import BatchRejectedError
from logwire.serverset import Endpoint

__all__ = ["Refusals"]

logger = logging.getLogger("logclient._sender")


class Refusals:
    """Acts on ``BatchRejectedError``: too large, a category no server takes, a bad request."""

    def __init__(self, pool: ServerPool, accumulator: Accumulator, ledger: Ledger) -> None:
        self._pool = pool
        self._accumulator = accumulator
        self._ledger = ledger
        #: Batches split because every live server refused them as too large.
        self.split_batches = 0

    def __repr__(self) -> str:
        return f"<Refusals split={self.split_batches}>"

    def rejected(self, endpoint: Endpoint, delivery: Delivery, exc: BatchRejectedError) -> None:
        """``endpoint`` will not take the batch as it is: elsewhere, split, trimmed or dropped.

        Too large: servers may have different frame limits, so the batch goes
        whole to a live server that has not refused it; only when every live
        server has, it is split in two (the halves may go anywhere), and a
        single record every live server refused is dropped. Never loops: each
        refusal removes a server or halves the batch.
        """
        batch = delivery.batch
        if exc.kind == "too_large":
            self._pool.note_too_large(endpoint, batch.nbytes)
            batch.refused_by = batch.refused_by | {endpoint}
            if self._pool.live(delivery.excluded()):
                logger.info("logclient: %s; trying %s on another server", exc, batch)
                self._accumulator.push_front(delivery)
                return
            self.refused_everywhere(delivery, exc)
            return
        if exc.kind == "invalid_category" and exc.category is not None:
            child = batch.without_category(exc.category)
            removed = batch.count - child.count
            if removed and child.messages:
                self._ledger.count_drop(removed, f"{exc} (records of that category only)", batch)
                self._accumulator.push_front(*self._ledger.replace(delivery, [child]))
                return
        self._ledger.drop(delivery, str(exc))

    def refused_everywhere(self, delivery: Delivery, exc: BatchRejectedError | None = None) -> None:
        """Every live server refused the batch as too large: split it, or drop one record."""
        batch = delivery.batch
        refused = ", ".join(sorted(map(str, batch.refused_by)))
        if batch.count > 1:
            self.split_batches += 1
            logger.warning("logclient: %s refused %s as too large; splitting it", refused, batch)
            self._accumulator.push_front(*self._ledger.replace(delivery, list(batch.split())))
            return
        reason = str(exc) if exc is not None else "too large"
        self._ledger.drop(
            delivery, f"every live server refused it as too large ({refused}): {reason}"
        )
