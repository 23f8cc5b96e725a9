"""The sender thread: batches, delivery, failover, spilling.

Delivery order is the order records were logged. The sender holds at most one
batch in flight (``current``) and works through four ordered sources:

1. ``front``: the halves of a batch a server found too large (derived from ``current``),
2. the spool (oldest batches on disk, possibly from an earlier process),
3. ``pending``: batches formed from memory that could not be spooled,
4. the memory queue.

Why one batch in flight and not a pipeline: a server dedups a producer's
batches by sequence and the reader orders them by it; with one call at a time
every server sees a producer's sequences in increasing order even across
failovers, the stale-reply trap of thriftpy2 cannot reorder anything, and a
batch of 1,000 records per round trip already moves ~10^5 records/s, more
than one application process logs.

A batch keeps its ``(producer_id, sequence)`` through every resend, failover,
spill and restart. Spilling always writes the oldest batch first (the one in
flight, then pending, then the queue), so the spool stays in logging order.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

from logclient._batch import Batch
from logclient._connection import AppendOutcome, Connection, Transport
from logclient._policies import BatchPolicy, FailoverPolicy, SpoolPolicy
from logclient._queue import RateLimitedLog, RecordQueue
from logclient._servers import ServerPool
from logclient._spool import Spool, SpoolFullError
from logclient.errors import BatchRejectedError, ServerUnavailableError, SpoolError
from logwire.serverset import Endpoint

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
        producer_id: str,
    ) -> None:
        self._queue = queue
        self._pool = pool
        self._transport = transport
        self._spool = spool
        self._batching = batching
        self._failover = failover
        self._spool_policy = spool_policy
        self.producer_id = producer_id
        self._thread = threading.Thread(
            target=self._run, name=f"logclient-sender-{producer_id[:8]}", daemon=True
        )
        self._current: Batch | None = None
        self._front: deque[Batch] = deque()
        self._pending: deque[Batch] = deque()
        self._conns: dict[Endpoint, Connection] = {}
        self._inflight: Connection | None = None
        self._pool_version = -1
        self._sequence = 0
        self._failing_since: float | None = None
        self._announced = False
        self._spilling = False
        self._stopping = False
        self._abort = False
        self._settled = 0
        self._flush_target = 0
        self._settled_cv = threading.Condition()
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
        return (
            f"<Sender {self.producer_id} {state} current={self._current!r} "
            f"pending={len(self._pending)} failing={self._failing_since is not None} "
            f"spilling={self._spilling}>"
        )

    # ------------------------------------------------------------ other threads

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def settled(self) -> int:
        """Records of this client acknowledged or deliberately dropped, counted in order."""
        return self._settled

    def in_memory_records(self) -> int:
        """Records in batches the sender holds in memory only (not queued, not spooled)."""
        total = sum(len(b.entries) for b in list(self._pending))
        current = self._current
        if current is not None:
            root = current.root
            if root.spool_id is None:
                total += len(root.entries)
        return total

    @property
    def failing_since(self) -> float | None:
        return self._failing_since

    def flush(self, timeout: float | None) -> bool:
        """Wait until every record accepted so far is settled; False on timeout."""
        target = self._queue.accepted
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._settled_cv:
            if self._settled >= target:
                return True
            self._flush_target = max(self._flush_target, target)
        self._queue.doorbell.set()
        with self._settled_cv:
            while self._settled < target:
                if not self._thread.is_alive():
                    return False
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                # Bounded waits: a sender that died is noticed.
                self._settled_cv.wait(1.0 if remaining is None else min(remaining, 1.0))
            return True

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
                    self._close_connections()
                    self._queue.doorbell.wait(0.2)
        finally:
            try:
                self._shutdown()
            except Exception:
                logger.exception("logclient sender: error while spooling at shutdown")
            with self._settled_cv:
                self._settled_cv.notify_all()

    def _step(self) -> bool:
        """One turn of the loop; True when the sender should stop."""
        self._queue.doorbell.clear()
        if self._stopping and self._settled >= self._queue.accepted and self._queue.closed:
            return True
        if self._pool.version != self._pool_version:
            self._prune_connections()
        if self._current is None:
            self._current = self._next_batch()
        self._maybe_spill()
        batch = self._current
        if batch is None:
            self._wait_idle()
            return False
        self._deliver(batch)
        return False

    # ---------------------------------------------------------------- batches

    def _next_batch(self) -> Batch | None:
        if self._front:
            return self._front.popleft()
        if self._spool is not None and self._spool.batches:
            batch = self._spool.head()
            if batch is not None:
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
        entries, nbytes, end = self._queue.take(
            self._batching.max_records, self._batching.max_bytes
        )
        batch = Batch(self.producer_id, self._sequence, entries, nbytes, end_ordinal=end)
        self._sequence += 1
        return batch

    # --------------------------------------------------------------- delivery

    def _deliver(self, batch: Batch) -> None:
        endpoint = self._pool.choose()
        if endpoint is None:
            self._note_failing("no server available", announce=True)
            if self._stopping and self._spool is not None:
                # Closing with nowhere to send: spool now rather than wait out the timeout.
                self._abort = True
                return
            self._wait_for_server()
            return
        try:
            outcome = self._send(endpoint, batch)
        except ServerUnavailableError as exc:
            self._on_unavailable(endpoint, batch, exc)
        except BatchRejectedError as exc:
            self._on_rejected(batch, exc)
        else:
            self._on_acknowledged(endpoint, batch, outcome)

    def _send(self, endpoint: Endpoint, batch: Batch) -> AppendOutcome:
        conn = self._conns.get(endpoint)
        if conn is not None and time.monotonic() - conn.last_used > self._failover.max_idle_s:
            self._discard(endpoint)
            conn = None
        reused = conn is not None
        if conn is None:
            conn = self._connect(endpoint)
        try:
            return self._call(conn, batch)
        except ServerUnavailableError as exc:
            self._discard(endpoint)
            if not (reused and exc.phase == "call" and not exc.timeout) or self._abort:
                raise
            # The server may have closed an idle connection or restarted since we
            # last used it: one more try on a fresh connection before calling it down.
            logger.debug("retrying %s on a fresh connection after %s", batch, exc.reason)
        conn = self._connect(endpoint)
        try:
            return self._call(conn, batch)
        except (ServerUnavailableError, BatchRejectedError):
            self._discard(endpoint)
            raise

    def _connect(self, endpoint: Endpoint) -> Connection:
        conn = self._transport.connect(endpoint, self._failover)
        self._conns[endpoint] = conn
        return conn

    def _call(self, conn: Connection, batch: Batch) -> AppendOutcome:
        batch.attempts += 1
        if batch.attempts == 2:
            self.batches_retried += 1
        self.sent_batches += 1
        self.sent_records += len(batch.entries)
        self._inflight = conn
        try:
            return conn.append(batch)
        except BatchRejectedError:
            self._discard(conn.endpoint)
            raise
        finally:
            self._inflight = None

    def _on_acknowledged(self, endpoint: Endpoint, batch: Batch, outcome: AppendOutcome) -> None:
        self._pool.mark_up(endpoint)
        self.acked_batches += 1
        self.acked_records += len(batch.entries)
        if outcome.duplicate:
            self.duplicates += 1
        if self._failing_since is not None:
            logger.info(
                "logclient delivering again via %s after %.1fs",
                endpoint,
                time.monotonic() - self._failing_since,
            )
            self._failing_since = None
            self._spilling = False
        self._current = None
        self._settle(batch)

    def _on_unavailable(
        self, endpoint: Endpoint, batch: Batch, exc: ServerUnavailableError
    ) -> None:
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
            batch,
        )
        self._note_failing(exc.reason)

    def _on_rejected(self, batch: Batch, exc: BatchRejectedError) -> None:
        """A batch no server will take as it is: split it, trim it, or drop it. Never loop."""
        self._current = None
        if exc.kind == "too_large" and len(batch.entries) > 1:
            first, second = batch.split()
            self.split_batches += 1
            logger.warning("logclient: %s; splitting %s in two", exc, batch)
            self._front.appendleft(second)
            self._current = first
            return
        if exc.kind == "invalid_category" and exc.category is not None:
            child = batch.without_category(exc.category)
            removed = len(batch.entries) - len(child.entries)
            if removed and child.entries:
                self._count_drop(removed, f"{exc} (records of that category only)")
                self._current = child
                return
        self._drop(batch, str(exc))

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
        if node.end_ordinal is not None:
            with self._settled_cv:
                if node.end_ordinal > self._settled:
                    self._settled = node.end_ordinal
                self._settled_cv.notify_all()

    def _drop(self, batch: Batch, reason: str) -> None:
        self._count_drop(len(batch.entries), reason)
        if batch is self._current:
            self._current = None
        self._settle(batch)

    def _count_drop(self, records: int, reason: str) -> None:
        self.dropped_records += records
        self._drop_log.warning("logclient dropped %d records: %s", records, reason)

    # ---------------------------------------------------------------- spilling

    def _maybe_spill(self) -> None:
        spool = self._spool
        if spool is None:
            return
        now = time.monotonic()
        failing = self._failing_since
        if (
            failing is not None
            and not self._spilling
            and now - failing >= self._spool_policy.spill_after_s
        ):
            self._spilling = True
            logger.warning(
                "logclient: no server took a batch for %.1fs; spilling to %s",
                now - failing,
                spool.directory,
            )
        high_water = self._spool_policy.high_water
        high = self._queue.fill_ratio() >= high_water
        if not (self._spilling or high):
            return
        if not self._persist_current():
            return
        while self._pending:
            if not self._spool_batch(self._pending[0]):
                return
            self._pending.popleft()
        while len(self._queue):
            if high:
                if self._queue.fill_ratio() < high_water / 2:
                    break
            elif not self._queue.batch_ready() and self._lingering():
                break
            if not self._spool_has_room() and self._queue.policy.overflow != "drop":
                self._spool_log.warning(
                    "logclient spool %s is full (%d bytes); records wait in memory",
                    spool.directory,
                    spool.bytes,
                )
                break
            batch = self._form_batch()
            if not self._spool_batch(batch):
                self._pending.append(batch)
                break

    def _persist_current(self) -> bool:
        """Before anything newer goes to the spool, the batch in hand must be there."""
        if self._current is None:
            return True
        root = self._current.root
        if root.spool_id is not None or self._spool is None:
            return True
        try:
            self._spool.append(root)
        except SpoolError as exc:
            self._spool_log.warning("logclient cannot spool the batch in flight: %s", exc)
            return False
        self.spilled_records += len(root.entries)
        return True

    def _spool_has_room(self) -> bool:
        spool = self._spool
        assert spool is not None
        # A file is never larger than the records' counted bytes plus a small header.
        worst = min(self._queue.nbytes, self._batching.max_bytes) + 256
        return spool.bytes + worst <= spool.policy.max_bytes

    def _spool_batch(self, batch: Batch) -> bool:
        """Write ``batch`` to the spool; True when it is there or was dropped by policy."""
        assert self._spool is not None
        try:
            self._spool.append(batch)
        except SpoolFullError as exc:
            if self._queue.policy.overflow == "drop":
                self._drop(batch, f"{exc} (QueuePolicy.overflow='drop')")
                return True
            self._spool_log.warning("logclient: %s; records wait in memory", exc)
            return False
        except SpoolError as exc:
            self._spool_log.warning("logclient: %s; records wait in memory", exc)
            return False
        self.spilled_records += len(batch.entries)
        return True

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

    # ---------------------------------------------------------------- shutdown

    def _shutdown(self) -> None:
        """Keep whatever is undelivered: into the spool, or count it as lost."""
        self._close_connections()
        undelivered = self._undelivered_records()
        if not undelivered:
            return
        if self._spool is None:
            self._count_drop(undelivered, "client closed with no spool and no server to take them")
            logger.error(
                "logclient closed with %d undelivered records and no spool: they are lost",
                undelivered,
            )
            return
        if not self._persist_current():
            self._count_drop(
                len(self._current.root.entries) if self._current else 0, "spool failed"
            )
        while self._pending:
            batch = self._pending.popleft()
            if not self._spool_batch(batch):
                self._count_drop(len(batch.entries), "spool failed at close")
        while len(self._queue):
            batch = self._form_batch()
            if not self._spool_batch(batch):
                self._count_drop(len(batch.entries), "spool failed at close")
        logger.info(
            "logclient closed with %d undelivered records kept in spool %s",
            undelivered,
            self._spool.directory,
        )

    def _undelivered_records(self) -> int:
        total = len(self._queue) + sum(len(b.entries) for b in self._pending)
        if self._current is not None:
            root = self._current.root
            if root.spool_id is None:
                total += len(root.entries)
        return total
