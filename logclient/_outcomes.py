"""What every answer and error means: where a batch waits next, and when a server is down.

The dispatcher (:mod:`logclient._dispatch`) decides where a batch goes and
sends it; everything that follows a send ends here, so that one place holds
the rules for a batch's next step and for the failure clock the spiller and
the sender's waits read.

**Filing.** After every outcome a batch is *filed*: it goes back in front of
the accumulator if it now has fewer servers than ``acks``, waits in the
ledger for copies if it has enough for ``acks`` but fewer than ``copies``,
and otherwise just waits for the answers still due.

**Errors.** On *any* error the connection is thrown away and each batch of
its window is filed anew. A connection that had served calls and then fails
at once (the server closed it while idle, or restarted) gets one more try on
a fresh connection before its server counts as down; so does one whose
server asked for an older call. A refusal (``BatchRejectedError``) is an
answer, not a failure: :class:`~logclient._refusals.Refusals` acts on it.

**The failure clock.** ``failing_since`` is when no server took a batch
since; it starts at the first failure and stops at the next answer. The
spiller spills when it has run for ``SpoolPolicy.spill_after_s``.

Runs on the sender thread only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from logclient._accumulator import Accumulator
from logclient._connection import Acknowledgement
from logclient._delivery import Delivery
from logclient._inflight import InFlightRequests, Link
from logclient._ledger import Ledger
from logclient._policies import ReplicationPolicy
from logclient._refusals import Refusals
from logclient._servers import ServerPool
from logclient._spilling import Spiller
from logclient.errors import BatchRejectedError, ServerUnavailableError
from logwire.serverset import Endpoint

__all__ = ["Outcomes"]

logger = logging.getLogger("logclient._sender")


class Outcomes:
    """Files deliveries after every answer or error, and keeps the failure clock."""

    def __init__(
        self,
        *,
        pool: ServerPool,
        links: InFlightRequests,
        accumulator: Accumulator,
        ledger: Ledger,
        spiller: Spiller,
        refusals: Refusals,
        replication: ReplicationPolicy,
    ) -> None:
        self._pool = pool
        self._links = links
        self._accumulator = accumulator
        self._ledger = ledger
        self._spiller = spiller
        self._refusals = refusals
        self._copies = replication.copies
        self._acks = replication.required
        #: When no server took a batch since (None: the last one was taken).
        self.failing_since: float | None = None
        self._announced = False
        self._failure_seen = False
        #: Set by the thread closing the client: no retries any more.
        self.aborting = False
        # Counters: written by the sender thread only, read by stats().
        self.duplicates = 0
        self.failovers = 0

    def __repr__(self) -> str:
        return (
            f"<Outcomes failing={self.failing_since is not None} failovers={self.failovers} "
            f"duplicates={self.duplicates} aborting={self.aborting}>"
        )

    def file(self, deliveries: Iterable[Delivery]) -> None:
        """After an outcome: where each delivery waits next (see the module docstring)."""
        again = []
        for delivery in deliveries:
            if delivery.done:
                continue
            placed = len(delivery.holders) + len(delivery.trying)
            if len(delivery.holders) >= self._copies:
                self._ledger.copies_placed(delivery)
                if delivery.acked and not delivery.trying:
                    delivery.done = True
            elif placed >= self._copies:
                pass  # the copies it lacks are on their way (one may wait for them, see below)
            elif placed >= self._acks:
                self._ledger.wait_for_copies(delivery)
            else:
                self._ledger.copies_placed(delivery)
                again.append(delivery)
        self._accumulator.requeue(again)

    def answered(self, endpoint: Endpoint, delivery: Delivery, outcome: Acknowledgement) -> None:
        """``endpoint`` holds ``delivery``'s batch: the server is up, the failure clock stops."""
        self._pool.mark_up(endpoint)
        delivery.trying.discard(endpoint)
        delivery.holders.add(endpoint)
        if outcome.duplicate:
            self.duplicates += 1
        if self.failing_since is not None:
            if self._failure_seen:
                logger.info(
                    "logclient delivering again via %s after %.1fs",
                    endpoint,
                    time.monotonic() - self.failing_since,
                )
            self.failing_since = None
            self._spiller.resume()
        if delivery.done:
            return
        if not delivery.acked and len(delivery.holders) >= self._acks:
            self._ledger.acknowledge(delivery)
        self.file([delivery])

    def link_failed(
        self, link: Link, exc: ServerUnavailableError | BatchRejectedError
    ) -> Endpoint | None:
        """Any error on a connection: discard it, file anew every batch of its window.

        Returns the server to try again at once on a fresh connection (see the
        module docstring), or None.
        """
        endpoint = link.endpoint
        reused = link.reused or link.answered > 0
        deliveries = link.take_window()
        self._links.discard(endpoint)
        for delivery in deliveries:
            delivery.trying.discard(endpoint)
        if isinstance(exc, BatchRejectedError):
            # The answer to the oldest batch: a rejection of that one only.
            self.file(deliveries[1:])
            self._refusals.rejected(endpoint, deliveries[0], exc)
            return None
        self.file(deliveries)
        if exc.phase == "downgrade" and not self.aborting:
            # The transport now speaks the older call to this server: retry at once.
            logger.info("logclient: %s: %s", endpoint, exc.reason)
            return endpoint
        if reused and exc.phase == "call" and not exc.timeout and not self.aborting:
            # The server may have closed an idle connection or restarted since we
            # last used it: one more try on a fresh connection before calling it down.
            logger.debug(
                "resending %d batches to %s on a fresh connection after %s",
                len(deliveries),
                endpoint,
                exc.reason,
            )
            return endpoint
        self.unavailable(endpoint, deliveries[0] if deliveries else None, exc)
        return None

    def unavailable(
        self, endpoint: Endpoint, delivery: Delivery | None, exc: ServerUnavailableError
    ) -> None:
        """``endpoint`` failed (connect or call): it is avoided for its backoff."""
        backoff = self._pool.mark_down(endpoint, exc.reason)
        self.failovers += 1
        first = self._pool.failures(endpoint) == 1
        (logger.warning if first else logger.debug)(
            "logclient: server %s unavailable (%s, during %s); avoiding it for %.1fs and "
            "resending %s elsewhere",
            endpoint,
            exc.reason,
            exc.phase,
            backoff,
            delivery.batch if delivery is not None else None,
        )
        self.note_failing(exc.reason)

    def note_failing(self, reason: str, announce: bool = False, failure: bool = True) -> None:
        """Start the spill clock at the first failure; say so once no server is left to try.

        ``failure=False``: no server is known only because the source has not
        answered yet (a client just started). The clock runs, but nothing is
        logged, now or when delivery starts: a thread writing to stderr just as
        a pre-fork server forks leaves the child's stderr locked for ever.
        """
        if self.failing_since is None:
            self.failing_since = time.monotonic()
            self._announced = False
            self._failure_seen = False
        self._failure_seen = self._failure_seen or failure
        if announce and failure and not self._announced:
            self._announced = True
            logger.warning(
                "logclient: no server takes batches right now (%s); %d records queued",
                reason,
                len(self._accumulator.queue),
            )
