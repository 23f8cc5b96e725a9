"""The sender thread: one loop that takes batches, sends them, reads answers and spills.

Its collaborators each own their state (Kafka's producer is the model) and
meet only through method calls:

- :class:`~logclient._accumulator.Accumulator`: where the next batch comes
  from (batches that need another server, the spool, batches that could not
  be spooled, the memory queue), oldest first;
- :class:`~logclient._dispatch.Dispatcher`: which servers get a batch,
  sending it, and reading the answers;
- :class:`~logclient._outcomes.Outcomes`: what each answer or error means
  (where the batch waits next, which server is down, the failure clock);
- :class:`~logclient._inflight.InFlightRequests`: a connection per server
  and its window of unanswered calls;
- :class:`~logclient._ledger.Ledger`: the batches in hand, the copies still
  owed, and what is settled for ``flush()``;
- :class:`~logclient._spilling.Spiller`: when batches go to the spool.

One turn of the loop: spill if the policy says so (after collecting the
answers in flight: writing to disk while an RPC clock runs would turn a
slow fsync into a failover), send the next batch if the windows allow,
otherwise read an answer, otherwise sleep until records, a server or a
timer call for the sender. Delivery order, pipelining, failover and what a
resend keeps are described in :mod:`logclient._dispatch`,
:mod:`logclient._outcomes` and :mod:`logclient._inflight`; spilling in
:mod:`logclient._spilling`.
"""

from __future__ import annotations

import logging
import threading
import time

from logclient._accumulator import Accumulator
from logclient._connection import Transport
from logclient._dispatch import Dispatcher, Step
from logclient._inflight import InFlightRequests
from logclient._ledger import Ledger
from logclient._outcomes import Outcomes
from logclient._policies import (
    BatchPolicy,
    FailoverPolicy,
    HedgePolicy,
    ReplicationPolicy,
    SpoolPolicy,
)
from logclient._queue import RecordQueue
from logclient._refusals import Refusals
from logclient._servers import ServerPool
from logclient._settlement import Settlement
from logclient._spilling import Spiller
from logclient._spool import Spool

__all__ = ["Sender"]

logger = logging.getLogger(__name__)

_NEVER = 1 << 62
_IDLE_WAKE_S = 1.0


class Sender:
    """Owns the sender thread and everything only that thread touches."""

    def __init__(
        self,
        *,
        queue: RecordQueue,
        pool: ServerPool,
        transport: Transport,
        spool: Spool | None,
        batching: BatchPolicy,
        failover: FailoverPolicy,
        spool_policy: SpoolPolicy,
        producer: str,
        replication: ReplicationPolicy = ReplicationPolicy(),  # noqa: B008 - frozen
        hedging: HedgePolicy = HedgePolicy(),  # noqa: B008
    ) -> None:
        self._queue = queue
        self._pool = pool
        self._spool = spool
        self._batching = batching
        self._failover = failover
        self._spool_policy = spool_policy
        self.producer = producer
        self._thread = threading.Thread(
            target=self._run, name=f"logclient-sender-{producer[:8]}", daemon=True
        )
        self.ledger = Ledger(spool, replication.max_waiting_bytes)
        self.settlement: Settlement = self.ledger.settlement
        self._accumulator = Accumulator(queue, spool, batching, self.settlement, producer)
        self._links = InFlightRequests(transport, failover)
        self._spiller = Spiller(
            spool, spool_policy, batching, self._accumulator, self.ledger, self.ledger.roots_in_hand
        )
        refusals = Refusals(pool, self._accumulator, self.ledger)
        self.outcomes = Outcomes(
            pool=pool,
            links=self._links,
            accumulator=self._accumulator,
            ledger=self.ledger,
            spiller=self._spiller,
            refusals=refusals,
            replication=replication,
        )
        self.dispatch = Dispatcher(
            pool=pool,
            links=self._links,
            accumulator=self._accumulator,
            ledger=self.ledger,
            outcomes=self.outcomes,
            refusals=refusals,
            batching=batching,
            failover=failover,
            replication=replication,
            hedging=hedging,
        )
        self._stopping = False
        self._abort = False
        self._idle_poll_s = max(0.005, min(batching.linger_s, 0.05))

    def __repr__(self) -> str:
        state = "stopping" if self._stopping else ("running" if self.alive else "stopped")
        busy = self._links.busy()
        where = f" on {','.join(str(link.endpoint) for link in busy)}" if busy else ""
        acc = self._accumulator
        return (
            f"<Sender {self.producer} {state} in_flight={sum(len(b.window) for b in busy)}"
            f"{where} front={len(acc.front)} pending={len(acc.pending)} "
            f"failing={self.outcomes.failing_since is not None} "
            f"spilling={self._spiller.spilling}>"
        )

    # ------------------------------------------------------------ other threads

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def settled(self) -> int:
        """Every record up to this ordinal is acknowledged or dropped (see :mod:`._settlement`)."""
        return self.settlement.frontier

    @property
    def spilled_records(self) -> int:
        return self._spiller.spilled_records

    def in_memory_records(self) -> int:
        """Records in batches the sender holds in memory only (not queued, not spooled)."""
        # list() copies a deque in one step under the GIL: safe from another thread.
        pending = sum(b.count for b in list(self._accumulator.pending))
        return pending + self.ledger.in_memory_records()

    @property
    def failing_since(self) -> float | None:
        return self.outcomes.failing_since

    def flush(self, timeout: float | None, target: int | None = None) -> bool:
        """Wait until every record accepted so far (or up to ``target``) is settled.

        False on timeout, or when the sender thread is gone.
        """
        if target is None:
            target = self._queue.accepted
        settlement = self.settlement
        if settlement.frontier >= target:
            return True
        # Read by the sender thread: a partial batch goes out now, without its linger.
        self._accumulator.note_flush(target)
        self._queue.doorbell.set()
        return settlement.wait(target, timeout, self._thread.is_alive)

    def stop(self, deadline: float) -> bool:
        """Deliver what was accepted until near ``deadline``, then spool the rest and stop.

        Copies beyond ``ReplicationPolicy.acks`` on their way to a server get
        the time left before the reserve; those that found no server, and any
        still missing then, are given up (counted). The queue must be closed
        first. Returns True when the thread has exited.
        """
        now = time.monotonic()
        reserve = min(1.0, 0.2 * max(0.0, deadline - now))
        self._stopping = True
        self._accumulator.stopping = True
        self._queue.doorbell.set()
        if self._thread.is_alive():
            self.flush(max(0.0, deadline - reserve - time.monotonic()))
            while self._thread.is_alive() and any(d.trying for d in self.ledger.waiting()):
                remaining = deadline - reserve - time.monotonic()
                if remaining <= 0:
                    break
                self._thread.join(min(remaining, 0.01))
        self._abort = True
        self.outcomes.aborting = True
        self._links.abort_busy()
        self._queue.doorbell.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            logger.warning(
                "logclient sender did not stop in time; %d queued records may be lost",
                len(self._queue),
            )
            return False
        return True

    def forget_in_child(self) -> None:
        """In a child after fork(): close the inherited sockets; the thread never came along.

        Closing the child's copy of a descriptor leaves the parent's
        connection as it is. Nothing here takes a lock.
        """
        self._links.forget_in_child()

    # ------------------------------------------------------------- the thread

    def _run(self) -> None:
        try:
            while not self._abort:
                try:
                    if self._step():
                        break
                except Exception:
                    # A bug, not a network error (those are handled where they happen).
                    # Keep the records: drop connections, pause, carry on.
                    logger.exception("logclient sender: unexpected error; retrying")
                    self.dispatch.requeue_all()
                    self._links.close_all()
                    self._queue.doorbell.wait(0.2)
        finally:
            try:
                self._links.close_all()
                for delivery in self.ledger.waiting():
                    self.ledger.give_up_copies(delivery, "the client closed")
                self._spiller.shutdown()
            except Exception:
                logger.exception("logclient sender: error while spooling at shutdown")
            self.settlement.wake()

    def _step(self) -> bool:
        """One turn of the loop; True when the sender should stop."""
        self._queue.doorbell.clear()
        if (
            self._stopping
            and self._queue.closed
            and self.settlement.frontier >= self._queue.accepted
            and not self.ledger.waiting()
        ):
            return True
        dispatch = self.dispatch
        dispatch.prune()
        if dispatch.busy() and self._spiller.wanted(self.outcomes.failing_since):
            # Spilling takes a while (an fsync per batch): collect the answers first, so
            # that no RPC clock runs while this thread writes to disk.
            dispatch.receive()
            return False
        self._spiller.maybe_spill(self.outcomes.failing_since)
        step = dispatch.send_next()
        if step is Step.PROGRESS:
            return False
        if dispatch.busy():
            if step is Step.BLOCKED or dispatch.owes_answers():
                dispatch.receive()
            else:
                # Only answers nobody waits for (a stalled server's, after its batches
                # were hedged): look at the queue again soon.
                dispatch.receive(max_wait=self._idle_poll_s)
            return False
        if step is Step.NO_SERVER:
            if self._stopping and self._spool is not None and self._pool.answered:
                # Closing with nowhere to send: spool now rather than wait out the timeout.
                # (Not while the source has yet to say which servers exist: a short-lived
                # process, a forked worker say, must not spool what a server would take.)
                self._abort = True
                return False
            self._wait_for_server()
            return False
        self._wait_idle()
        return False

    # ----------------------------------------------------------------- waiting

    def _wait_idle(self) -> None:
        queue = self._queue
        if not len(queue):
            self._sleep(_IDLE_WAKE_S, 1, 1)
        else:
            timeout = queue.first_at + self._batching.linger_s - time.monotonic()
            self._sleep(timeout, queue.batch_records, queue.batch_bytes)

    def _wait_for_server(self) -> None:
        now = time.monotonic()
        wait = self._pool.next_attempt_in()
        timeout = self._failover.probe_interval_s if wait is None else wait
        queue = self._queue
        wake_records, wake_bytes = _NEVER, _NEVER
        if self._spool is not None:
            if self._spiller.spilling:
                wake_records, wake_bytes = queue.batch_records, queue.batch_bytes
                if len(queue):
                    timeout = min(timeout, queue.first_at + self._batching.linger_s - now)
            else:
                held_until = self._spiller.high_water_wake()
                if held_until is not None:
                    # Past high water already: wake when the hold ends, not on records.
                    timeout = min(timeout, held_until - now)
                else:
                    hw = self._spool_policy.high_water
                    wake_records = max(1, int(queue.max_records * hw))
                    wake_bytes = max(1, int(queue.max_bytes * hw))
                failing = self.outcomes.failing_since
                if failing is not None:
                    timeout = min(timeout, failing + self._spool_policy.spill_after_s - now)
        self._sleep(timeout, wake_records, wake_bytes)

    def _sleep(self, timeout: float, wake_records: int, wake_bytes: int) -> None:
        if not self._queue.arm(wake_records, wake_bytes):
            return
        try:
            self._queue.doorbell.wait(max(timeout, 0.001))
        finally:
            self._queue.disarm()
