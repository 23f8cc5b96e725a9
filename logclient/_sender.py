"""The sender thread: batches, delivery, failover (spilling is in :mod:`logclient._spilling`).

Delivery order is the order records were logged. The sender sends batches on
one connection at a time, up to ``BatchPolicy.max_in_flight`` of them before
the oldest is answered (the *window*), and takes new ones from four ordered
sources:

1. ``front``: batches to resend first (the window of a connection that failed,
   or the halves of a batch a server found too large),
2. the spool (oldest batches on disk, possibly from an earlier process),
3. ``pending``: batches formed from memory that could not be spooled,
4. the memory queue.

Why pipelining keeps order and dedup: a server answers one connection's calls
one at a time, in order, so the replies come back in sending order and each
must carry its call's sequence id. The window only ever grows on one
connection; the sender switches servers only once the window is empty (when
the choice policy picks another server it first waits for the answers). On
*any* error the connection is thrown away and every unanswered batch of the
window goes back to ``front``, in order, to be resent with the same
``(producer, sequence)``: a server that stored one of them answers
"duplicate". A hung server is given up ``rpc_timeout_s`` after the oldest
unanswered send; a dead one as soon as the socket says so.

A batch keeps its ``(producer, sequence)`` through every resend, failover,
spill and restart. The sender spills only with an empty window (it collects
the answers first), and always writes the oldest batch first (those to
resend, then pending, then the queue), so the spool stays in logging order.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque

from logclient._batch import Batch
from logclient._connection import Acknowledgement, Connection, Transport
from logclient._delivery import Delivery, pipelines
from logclient._policies import BatchPolicy, FailoverPolicy, SpoolPolicy
from logclient._queue import RateLimitedLog, RecordQueue
from logclient._servers import ServerPool
from logclient._settlement import Settlement
from logclient._spilling import Spilling
from logclient._spool import Spool
from logwire.serverset import Endpoint

__all__ = ["Sender"]

logger = logging.getLogger(__name__)

_NEVER = 1 << 62
_IDLE_WAKE_S = 1.0


class Sender(Delivery, Spilling):
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
    ) -> None:
        self._queue = queue
        self._pool = pool
        self._transport = transport
        self._spool = spool
        self._batching = batching
        self._failover = failover
        self._spool_policy = spool_policy
        self.producer = producer
        self._thread = threading.Thread(
            target=self._run, name=f"logclient-sender-{producer[:8]}", daemon=True
        )
        # The window: batches sent on ``_conn`` and not yet answered, oldest first,
        # with their send times; ``_answers`` holds answers of a connection that
        # cannot pipeline (its ``append`` answered at once).
        self._window: deque[Batch] = deque()
        self._sent_at: deque[float] = deque()
        self._answers: deque[Acknowledgement] = deque()
        self._conn: Connection | None = None
        self._conn_reused = False
        self._conn_answered = 0
        # Set when the choice policy picked another server while the window was
        # not empty: no more sends until the window is answered, then that server.
        self._next_endpoint: Endpoint | None = None
        self._switching = False
        # A reused connection failed at once: one more try on a fresh one.
        self._fresh_retry: Endpoint | None = None
        self._front: deque[Batch] = deque()
        self._pending: deque[Batch] = deque()
        self._spool_mark = -1
        self._conns: dict[Endpoint, Connection] = {}
        self._inflight: Connection | None = None
        self._pool_version = -1
        self._sequence = 0
        self._failing_since: float | None = None
        self._announced = False
        self._spilling = False
        self._high_since: float | None = None
        self._stopping = False
        self._abort = False
        self.settlement = Settlement()
        self._flush_target = 0
        self._drop_log = RateLimitedLog(logger)
        self._spool_log = RateLimitedLog(logger)
        # Counters: written by the sender thread only, read by stats().
        self.sent_records = 0
        self.sent_batches = 0
        self.acked_records = 0
        self.acked_batches = 0
        self.duplicates = 0
        self.failovers = 0
        self.batches_retried = 0
        self.dropped_records = 0
        self.spilled_records = 0
        self.split_batches = 0

    def __repr__(self) -> str:
        state = "stopping" if self._stopping else ("running" if self.alive else "stopped")
        conn = self._conn
        where = f" on {conn.endpoint}" if conn is not None else ""
        return (
            f"<Sender {self.producer} {state} in_flight={len(self._window)}{where} "
            f"front={len(self._front)} pending={len(self._pending)} "
            f"failing={self._failing_since is not None} spilling={self._spilling}>"
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

    def in_memory_records(self) -> int:
        """Records in batches the sender holds in memory only (not queued, not spooled)."""
        # list() copies a deque in one step under the GIL: safe from another thread.
        total = sum(b.count for b in list(self._pending))
        seen: set[int] = set()
        for batch in list(self._window) + list(self._front):
            root = batch.root
            if id(root) not in seen and root.spool_id is None:
                seen.add(id(root))
                total += root.count
        return total

    @property
    def failing_since(self) -> float | None:
        return self._failing_since

    def flush(self, timeout: float | None, target: int | None = None) -> bool:
        """Wait until every record accepted so far (or up to ``target``) is settled.

        False on timeout, or when the sender thread is gone.
        """
        if target is None:
            target = self._queue.accepted
        settlement = self.settlement
        if settlement.frontier >= target:
            return True
        if target > self._flush_target:
            # Read by the sender thread: a partial batch goes out now, without its linger.
            self._flush_target = target
        self._queue.doorbell.set()
        return settlement.wait(target, timeout, self._thread.is_alive)

    def stop(self, deadline: float) -> bool:
        """Deliver what was accepted until near ``deadline``, then spool the rest and stop.

        The queue must be closed first. Returns True when the thread has exited.
        """
        now = time.monotonic()
        reserve = min(1.0, 0.2 * max(0.0, deadline - now))
        self._stopping = True
        self._queue.doorbell.set()
        if self._thread.is_alive():
            self.flush(max(0.0, deadline - reserve - time.monotonic()))
        self._abort = True
        conn = self._inflight
        if conn is not None:
            conn.abort()
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

    # ------------------------------------------------------------- the thread

    def _run(self) -> None:
        try:
            while not self._abort:
                try:
                    if self._step():
                        break
                except Exception:
                    # A bug, not a network error (those are handled in _deliver).
                    # Keep the records: drop connections, pause, carry on.
                    logger.exception("logclient sender: unexpected error; retrying")
                    self._requeue_window()
                    self._close_connections()
                    self._queue.doorbell.wait(0.2)
        finally:
            try:
                self._shutdown()
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
        ):
            return True
        if self._pool.version != self._pool_version and not self._window:
            self._prune_connections()
        if self._window and self._spill_wanted():
            # Spilling takes a while (an fsync per batch): collect the answers first, so
            # that the window's RPC clock never runs while this thread writes to disk.
            self._receive()
            return False
        self._maybe_spill()
        if self._may_send():
            batch = self._next_batch()
            if batch is not None:
                self._deliver(batch)
                return False
        if self._window:
            self._receive()
            return False
        self._wait_idle()
        return False

    def _may_send(self) -> bool:
        if not self._window:
            return True
        return not self._switching and len(self._window) < self._limit()

    def _limit(self) -> int:
        conn = self._conn
        if conn is None or not pipelines(conn):
            return 1
        return self._batching.max_in_flight

    # ---------------------------------------------------------------- batches

    def _next_batch(self) -> Batch | None:
        if self._front:
            return self._front.popleft()
        if self._spool is not None and self._spool.batches:
            batch = self._spool.head(after=self._spool_mark)
            if batch is not None:
                assert batch.spool_id is not None
                self._spool_mark = batch.spool_id
                return batch
        if self._pending:
            return self._pending.popleft()
        if not len(self._queue) or self._lingering():
            return None
        return self._form_batch()

    def _lingering(self) -> bool:
        """True while the queue's partial batch should wait for more records."""
        queue = self._queue
        if self._stopping or self._flush_target > queue.taken or queue.batch_ready():
            return False
        return time.monotonic() < queue.first_at + self._batching.linger_s

    def _form_batch(self) -> Batch:
        categories, messages, nbytes, end = self._queue.take(
            self._batching.max_records, self._batching.max_bytes
        )
        batch = Batch(self.producer, self._sequence, categories, messages, nbytes, end)
        self._sequence += 1
        if messages:
            self.settlement.formed(end - len(messages), end)
        return batch

    # ------------------------------------------------------------- settlement

    def _settle(self, batch: Batch) -> None:
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

    def _drop(self, batch: Batch, reason: str) -> None:
        self._count_drop(batch.count, reason, batch)
        self._settle(batch)

    def _count_drop(self, records: int, reason: str, batch: Batch | None = None) -> None:
        """Count ``records`` as given up (of ``batch``, for ``flush(require_acknowledged=True)``)."""
        self.dropped_records += records
        if batch is not None:
            self.settlement.note_dropped(batch.root.start_ordinal)
        self._drop_log.warning("logclient dropped %d records: %s", records, reason)

    # ----------------------------------------------------------------- waiting

    def _note_failing(self, reason: str, announce: bool = False) -> None:
        """Start the spill clock at the first failure; say so once no server is left to try."""
        if self._failing_since is None:
            self._failing_since = time.monotonic()
            self._announced = False
        if announce and not self._announced:
            self._announced = True
            logger.warning(
                "logclient: no server takes batches right now (%s); %d records queued",
                reason,
                len(self._queue),
            )

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
            if self._spilling:
                wake_records, wake_bytes = queue.batch_records, queue.batch_bytes
                if len(queue):
                    timeout = min(timeout, queue.first_at + self._batching.linger_s - now)
            else:
                held_until = self._high_water_wake()
                if held_until is not None:
                    # Past high water already: wake when the hold ends, not on records.
                    timeout = min(timeout, held_until - now)
                else:
                    hw = self._spool_policy.high_water
                    wake_records = max(1, int(queue.max_records * hw))
                    wake_bytes = max(1, int(queue.max_bytes * hw))
                if self._failing_since is not None:
                    spill_at = self._failing_since + self._spool_policy.spill_after_s
                    timeout = min(timeout, spill_at - now)
        self._sleep(timeout, wake_records, wake_bytes)

    def _sleep(self, timeout: float, wake_records: int, wake_bytes: int) -> None:
        if not self._queue.arm(wake_records, wake_bytes):
            return
        try:
            self._queue.doorbell.wait(max(timeout, 0.001))
        finally:
            self._queue.disarm()

    def forget_in_child(self) -> None:
        """In a child after fork(): close the inherited sockets; the thread never came along.

        Closing the child's copy of a descriptor leaves the parent's
        connection as it is. Nothing here takes a lock.
        """
        for conn in list(self._conns.values()):
            with contextlib.suppress(Exception):
                conn.close()
        self._conns = {}

    # ------------------------------------------------------------- connections

    def _discard(self, endpoint: Endpoint) -> None:
        conn = self._conns.pop(endpoint, None)
        if conn is not None:
            conn.close()

    def _prune_connections(self) -> None:
        self._pool_version = self._pool.version
        for endpoint in list(self._conns):
            if not self._pool.is_known(endpoint):
                self._discard(endpoint)

    def _close_connections(self) -> None:
        for endpoint in list(self._conns):
            self._discard(endpoint)
