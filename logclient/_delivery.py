"""The sender's window: several batches in flight on one connection, and what an error does.

See :mod:`logclient._sender` for the ordering argument. Runs on the sender
thread only.
"""

from __future__ import annotations

import logging
import time
from collections import deque

from logclient._batch import Batch
from logclient._connection import Acknowledgement, Connection, Transport
from logclient._policies import BatchPolicy, FailoverPolicy
from logclient._servers import ServerPool
from logclient._spool import Spool
from logclient.errors import BatchRejectedError, ServerUnavailableError
from logwire.serverset import Endpoint

__all__ = ["Delivery", "pipelines"]

logger = logging.getLogger("logclient._sender")


def pipelines(conn: Connection) -> bool:
    """True when ``conn`` can have several calls in flight (``send``/``receive``)."""
    return hasattr(conn, "receive") and hasattr(conn, "send")


class Delivery:
    """Mixed into :class:`~logclient._sender.Sender`: sending, answers, errors."""

    _pool: ServerPool
    _transport: Transport
    _spool: Spool | None
    _batching: BatchPolicy
    _failover: FailoverPolicy
    _window: deque[Batch]
    _sent_at: deque[float]
    _answers: deque[Acknowledgement]
    _conn: Connection | None
    _conn_reused: bool
    _conn_answered: int
    _next_endpoint: Endpoint | None
    _switching: bool
    _fresh_retry: Endpoint | None
    _front: deque[Batch]
    _conns: dict[Endpoint, Connection]
    _inflight: Connection | None
    _failing_since: float | None
    _spilling: bool
    _stopping: bool
    _abort: bool
    sent_records: int
    sent_batches: int
    acked_records: int
    acked_batches: int
    duplicates: int
    failovers: int
    batches_retried: int
    split_batches: int

    def _note_failing(self, reason: str, announce: bool = False) -> None:
        raise NotImplementedError

    def _wait_for_server(self) -> None:
        raise NotImplementedError

    def _discard(self, endpoint: Endpoint) -> None:
        raise NotImplementedError

    def _settle(self, batch: Batch) -> None:
        raise NotImplementedError

    def _drop(self, batch: Batch, reason: str) -> None:
        raise NotImplementedError

    def _count_drop(self, records: int, reason: str, batch: Batch | None = None) -> None:
        raise NotImplementedError

    # --------------------------------------------------------------- delivery

    def _deliver(self, batch: Batch) -> None:
        """Send ``batch`` (the oldest not yet sent): on the window's connection, or a new one."""
        conn = self._conn
        if self._window and conn is not None:
            chosen = self._pool.choose(batch.refused_by, batch.nbytes)
            if chosen != conn.endpoint:
                # Another server for this batch: first collect the window's answers.
                self._front.appendleft(batch)
                self._next_endpoint = chosen
                self._switching = True
                return
        else:
            conn = self._open(batch)
            if conn is None:
                return
        self._window.append(batch)
        now = time.monotonic()
        deadline = (self._sent_at[0] if self._sent_at else now) + self._failover.rpc_timeout_s
        self._sent_at.append(now)
        batch.attempts += 1
        if batch.attempts == 2:
            self.batches_retried += 1
        self.sent_batches += 1
        self.sent_records += batch.count
        try:
            if pipelines(conn):
                conn.send(batch, deadline)  # type: ignore[attr-defined]
            else:
                self._answers.append(conn.append(batch))
        except (ServerUnavailableError, BatchRejectedError) as exc:
            self._on_error(conn, exc)

    def _open(self, batch: Batch) -> Connection | None:
        """The connection for a new window, or None (``batch`` is then back in ``front``)."""
        fresh = self._fresh_retry
        self._fresh_retry = None
        endpoint = fresh or self._next_endpoint or self._pool.choose(batch.refused_by, batch.nbytes)
        self._next_endpoint = None
        self._switching = False
        if endpoint is None and batch.refused_by and self._pool.live():
            # Only servers that refused it as too large are up now: split it for them.
            self._refused_everywhere(batch)
            return None
        if endpoint is None:
            self._front.appendleft(batch)
            self._note_failing("no server available", announce=True)
            if self._stopping and self._spool is not None and self._pool.answered:
                # Closing with nowhere to send: spool now rather than wait out the timeout.
                # (Not while the source has yet to say which servers exist: a short-lived
                # process, a forked worker say, must not spool what a server would take.)
                self._abort = True
                return None
            self._wait_for_server()
            return None
        conn = self._conns.get(endpoint)
        if conn is not None and (
            fresh is not None or time.monotonic() - conn.last_used > self._failover.max_idle_s
        ):
            self._discard(endpoint)
            conn = None
        reused = conn is not None
        if conn is None:
            try:
                conn = self._connect(endpoint)
            except ServerUnavailableError as exc:
                self._front.appendleft(batch)
                self._on_unavailable(endpoint, batch, exc)
                return None
        self._conn = conn
        self._inflight = conn
        self._conn_reused = reused
        self._conn_answered = 0
        return conn

    def _connect(self, endpoint: Endpoint) -> Connection:
        conn = self._transport.connect(endpoint, self._failover)
        self._conns[endpoint] = conn
        return conn

    def _receive(self) -> None:
        """Wait for the answer to the oldest batch in the window."""
        conn = self._conn
        assert conn is not None
        try:
            if pipelines(conn):
                deadline = self._sent_at[0] + self._failover.rpc_timeout_s
                outcome = conn.receive(deadline)  # type: ignore[attr-defined]
            else:
                outcome = self._answers.popleft()
        except (ServerUnavailableError, BatchRejectedError) as exc:
            self._on_error(conn, exc)
            return
        batch = self._window.popleft()
        self._sent_at.popleft()
        self._conn_answered += 1
        if not self._window:
            self._inflight = None
        self._on_acknowledged(conn.endpoint, batch, outcome)

    def _requeue_window(self) -> list[Batch]:
        """Forget the window's connection; its batches go back to ``front``, in order."""
        batches = list(self._window)
        self._window.clear()
        self._sent_at.clear()
        self._answers.clear()
        self._front.extendleft(reversed(batches))
        self._conn = None
        self._inflight = None
        self._switching = False
        self._next_endpoint = None
        return batches

    def _on_error(self, conn: Connection, exc: ServerUnavailableError | BatchRejectedError) -> None:
        """Any error on the window's connection: discard it, resend every unanswered batch."""
        endpoint = conn.endpoint
        reused = self._conn_reused or self._conn_answered > 0
        self._discard(endpoint)
        batches = self._requeue_window()
        if isinstance(exc, BatchRejectedError):
            # The answer to the oldest batch: a rejection of that one only.
            rejected = self._front.popleft()
            self._on_rejected(endpoint, rejected, exc)
            return
        if exc.phase == "downgrade" and not self._abort:
            # The transport now speaks the older call to this server: retry at once.
            logger.info("logclient: %s: %s", endpoint, exc.reason)
            self._fresh_retry = endpoint
            return
        if reused and exc.phase == "call" and not exc.timeout and not self._abort:
            # The server may have closed an idle connection or restarted since we
            # last used it: one more try on a fresh connection before calling it down.
            logger.debug(
                "resending %d batches to %s on a fresh connection after %s",
                len(batches),
                endpoint,
                exc.reason,
            )
            self._fresh_retry = endpoint
            return
        self._on_unavailable(endpoint, batches[0] if batches else None, exc)

    def _on_acknowledged(self, endpoint: Endpoint, batch: Batch, outcome: Acknowledgement) -> None:
        self._pool.mark_up(endpoint)
        self.acked_batches += 1
        self.acked_records += batch.count
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
        self._settle(batch)

    def _on_unavailable(
        self, endpoint: Endpoint, batch: Batch | None, exc: ServerUnavailableError
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

    def _on_rejected(self, endpoint: Endpoint, batch: Batch, exc: BatchRejectedError) -> None:
        """A batch ``endpoint`` will not take as it is: elsewhere, split, trimmed or dropped.

        Too large: servers may have different frame limits, so the batch goes
        whole to a live server that has not refused it; only when every live
        server has, it is split in two (the halves may go anywhere), and a
        single record every live server refused is dropped. Never loops: each
        refusal removes a server or halves the batch.
        """
        if exc.kind == "too_large":
            self._pool.note_too_large(endpoint, batch.nbytes)
            batch.refused_by = batch.refused_by | {endpoint}
            if self._pool.live(batch.refused_by):
                logger.info("logclient: %s; trying %s on another server", exc, batch)
                self._front.appendleft(batch)
                return
            self._refused_everywhere(batch, exc)
            return
        if exc.kind == "invalid_category" and exc.category is not None:
            child = batch.without_category(exc.category)
            removed = batch.count - child.count
            if removed and child.messages:
                self._count_drop(removed, f"{exc} (records of that category only)", batch)
                self._front.appendleft(child)
                return
        self._drop(batch, str(exc))

    def _refused_everywhere(self, batch: Batch, exc: BatchRejectedError | None = None) -> None:
        """Every live server refused ``batch`` as too large: split it, or drop one record."""
        refused = ", ".join(sorted(map(str, batch.refused_by)))
        if batch.count > 1:
            first, second = batch.split()
            self.split_batches += 1
            logger.warning("logclient: %s refused %s as too large; splitting it", refused, batch)
            self._front.appendleft(second)
            self._front.appendleft(first)
            return
        reason = str(exc) if exc is not None else "too large"
        self._drop(batch, f"every live server refused it as too large ({refused}): {reason}")
