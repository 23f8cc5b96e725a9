"""LogClient: what an application holds to send logs.

``log()`` validates and enqueues; it never waits on the network. One
background thread (see :mod:`logclient._sender`) batches, sends, fails over
and spills to disk. ``flush()`` waits for acknowledgements, ``close()`` flushes
(bounded), spools what is left and stops every thread.
"""

from __future__ import annotations

import atexit
import importlib
import logging
import os
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from logclient import _forksafe, _uwsgi
from logclient._connection import ThriftTransport, Transport
from logclient._policies import (
    BatchPolicy,
    ChoicePolicy,
    FailoverPolicy,
    HedgePolicy,
    QueuePolicy,
    ReplicationPolicy,
    SpoolPolicy,
    TLSPolicy,
)
from logclient._queue import RecordQueue
from logclient._sender import Sender
from logclient._servers import ServerPool
from logclient._source import follow, follow_now
from logclient._spool import Spool
from logclient._stats import ClientStats
from logclient.errors import (
    DiscoveryError,
    InvalidCategoryError,
    LogClientError,
    MessageTooLargeError,
    SpoolError,
)
from logwire.categories import category_problem
from logwire.compression import CompressionPolicy
from logwire.zktls import ZkTLSPolicy

if TYPE_CHECKING:
    from logclient._source import KnownServer, ServerSource
    from logwire.serverset import Endpoint

__all__ = ["ClientStats", "LogClient"]

logger = logging.getLogger(__name__)

#: How long ``close()`` may take when the interpreter exits with the client open.
ATEXIT_TIMEOUT_S = 5.0
_CATEGORY_CACHE = 10_000


class LogClient:
    """Sends log records to the logservers, failing over without losing or duplicating any.

    Give either ``zk_hosts`` (and ``zk_path``): the servers registered in
    ZooKeeper, or ``servers``: any :class:`~logclient.discovery.ServerSource`
    (e.g. ``StaticServers(["host:port"])``, or ``FileServers(path)``: the file
    the host's discovery agent keeps; it is started here but left open by
    :meth:`close`, as it may be shared). With the environment variable
    ``LOGCLIENT_SERVERS_FILE`` set, a client given ``zk_hosts`` reads that file
    instead and opens no ZooKeeper session (logged once per process). ``transport`` is the network seam
    (tests only). The client starts at once: it takes its spool directory (a
    spool left by an earlier process is delivered first), starts discovery and
    its sender thread, and registers an ``atexit`` hook that closes it. One
    exception: in a uWSGI master that forks its workers from C it starts
    nothing (see :mod:`logclient._uwsgi`); the workers do, on first use.

    A client made before ``fork()`` works in the child: it starts afresh there
    on first use (see :meth:`_enter_child`).

    ``tls`` turns on TLS to every server (see :class:`~logclient.TLSPolicy`: the
    server's certificate and host name are verified; a client certificate is
    presented for mutual TLS); a bad CA or certificate file raises ValueError
    here. A server that fails verification is logged, treated as down, and
    sent nothing.

    ``compression`` (a :class:`~logclient.CompressionPolicy`): batches travel
    compressed (``AppendCompressed``, Zstandard level 1 by default), which a
    server stores as they came; a batch that compression would not make smaller
    travels as it is. ``CompressionPolicy("none")`` sends everything uncompressed.
    A server older than ``AppendCompressed`` answers UNKNOWN_METHOD and gets
    uncompressed batches from then on. (It applies to the client's own transport,
    not to one given as ``transport``.)

    ``replication`` (a :class:`~logclient.ReplicationPolicy`): each batch is
    stored on ``copies`` distinct servers (spread over zones, then hosts) and
    acknowledged once ``acks`` of them hold it; with fewer live servers than
    ``acks`` records wait and spool as with no server (``stats().servers_short``).
    ``hedging`` (a :class:`~logclient.HedgePolicy`, on by default): the batches
    of a server that has not answered within the hedge delay (from recent round
    trips, 50 ms to 1 s) also go to another live server.

    ``zk_tls`` (a :class:`~logclient.ZkTLSPolicy`) connects to ZooKeeper's TLS
    client port, verifying its certificate. Discovery only reads, so no
    ZooKeeper credentials are needed even when the servers register under an
    ACL.

    ``producer`` names this client instance: a random hex string, the first
    half of every batch id ``(producer, sequence)`` it sends (docs/glossary.md).

    Use it as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        zk_hosts: str | None = None,
        zk_path: str = "/logservers",
        *,
        servers: ServerSource | None = None,
        batching: BatchPolicy = BatchPolicy(),  # noqa: B008 - frozen, shared safely
        failover: FailoverPolicy = FailoverPolicy(),  # noqa: B008
        choice: ChoicePolicy | str = "random",
        queue: QueuePolicy = QueuePolicy(),  # noqa: B008
        spool: SpoolPolicy = SpoolPolicy(),  # noqa: B008
        transport: Transport | None = None,
        tls: TLSPolicy | None = None,
        zk_tls: ZkTLSPolicy | None = None,
        compression: CompressionPolicy = CompressionPolicy(),  # noqa: B008
        replication: ReplicationPolicy = ReplicationPolicy(),  # noqa: B008
        hedging: HedgePolicy = HedgePolicy(),  # noqa: B008
    ) -> None:
        if (zk_hosts is None) == (servers is None):
            raise TypeError("LogClient needs exactly one of zk_hosts or servers")
        if servers is not None and zk_tls is not None:
            raise TypeError("zk_tls applies to zk_hosts; a given server source has its own")
        if transport is not None and tls is not None:
            raise TypeError("LogClient takes tls or a transport, not both")
        # Before anything starts: a CA or certificate that cannot be loaded fails here.
        transport = transport or ThriftTransport(tls=tls, compression=compression)
        self._transport = transport
        self.tls = tls
        if queue.max_bytes < batching.max_bytes:
            raise ValueError("QueuePolicy.max_bytes must be at least BatchPolicy.max_bytes")
        self.producer = uuid.uuid4().hex
        self.batching = batching
        self.failover = failover
        self.choice = ChoicePolicy.of(choice)
        self.queue_policy = queue
        self.spool_policy = spool
        self.replication = replication
        self.hedging = hedging
        self._max_message = batching.max_message_bytes
        self._categories: dict[str, None] = {}
        self._queue = RecordQueue(queue, batching)
        self._pool = ServerPool(failover, self.choice, on_change=self._queue.doorbell.set)
        # A source the client made is the client's to close; one it was given is not.
        self._owns_source = servers is None
        self._source: ServerSource = (
            servers if servers is not None else _default_source(zk_hosts or "", zk_path, zk_tls)
        )
        _forksafe.install()
        _uwsgi.check_once()
        # Threads started here could deadlock the workers uWSGI forks: start none, take
        # no spool slot (the worker that takes the slot delivers what is in it).
        self._deferred = _uwsgi.master_forks_later()
        self._spool = Spool.open(spool) if spool.enabled and not self._deferred else None
        self._sender = self._new_sender()
        self._close_lock = threading.Lock()
        self._closed = False
        # The process whose copy of the client this is, and the one it runs in: the same,
        # or 0 while deferred (then every call takes the slow path, _here()).
        self._home = os.getpid()
        self._pid = self._home
        # While deferred: lets the first process to start the client send what was logged.
        self._inheritance: _forksafe.Inheritance | None = None
        self._start()

    def _new_sender(self) -> Sender:
        return Sender(
            queue=self._queue,
            pool=self._pool,
            transport=self._transport,
            spool=self._spool,
            batching=self.batching,
            failover=self.failover,
            spool_policy=self.spool_policy,
            producer=self.producer,
            replication=self.replication,
            hedging=self.hedging,
        )

    def _start(self) -> None:
        try:
            # Before start(), so that the first servers are known when the sender starts.
            follow(self._source, self._on_servers)
            if not self._deferred:
                self._source.start()
        except LogClientError:
            self._release()
            raise
        except Exception as exc:
            self._release()
            if self._owns_source:
                self._source.close(1.0)
            raise DiscoveryError(f"cannot start server discovery {self._source!r}: {exc}") from exc
        if self._deferred:
            self._inheritance = _forksafe.Inheritance()
            self._pid = 0
        else:
            self._sender.start()
        self._register_exit()

    def _register_exit(self) -> None:
        """Close at interpreter exit: ``atexit``, and ``multiprocessing``'s finalizers.

        A ``multiprocessing`` worker ends with ``os._exit()`` after running
        ``multiprocessing.util``'s finalizers, not ``atexit``; the fork start
        method clears the parent's finalizers in the worker, so a client
        started in the worker (or inherited and started afresh there)
        registers its own.
        """
        atexit.register(self._atexit)
        _uwsgi.on_exit(self._atexit)
        mp_util = sys.modules.get("multiprocessing.util")
        if mp_util is not None:
            mp_util.Finalize(None, self._atexit, exitpriority=10)

    def _on_servers(
        self, servers: Iterable[Endpoint | KnownServer], *, answered: bool = True
    ) -> None:
        """The source's listener (its thread); ignored by a copy of this client in a child
        that has not started afresh yet (its pool is the parent's)."""
        if self._pid == os.getpid():
            self._pool.update(servers, answered=answered)

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("deferred" if self._deferred else "open")
        spool = self._spool
        return (
            f"<LogClient {state} producer={self.producer[:8]} "
            f"server={self._pool.current} known={[str(e) for e in self._pool.known]} "
            f"queued={len(self._queue)} spooled={spool.records if spool is not None else 0} "
            f"acked={self._sender.ledger.acked_records} "
            f"failovers={self._sender.outcomes.failovers} "
            f"dropped={self._queue.dropped + self._sender.ledger.dropped_records}>"
        )

    def __enter__(self) -> LogClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ the API

    def log(self, category: str, message: str | bytes) -> None:
        """Queue one record; returns at once (never waits on the network).

        Raises InvalidCategoryError or MessageTooLargeError for a record no
        server would store, ClientClosedError after ``close()``, and, when the
        queue is full, whatever ``QueuePolicy.overflow`` says (QueueFullError
        for "block" after ``block_timeout_s`` and for "raise").
        """
        if self._pid != _forksafe.STATE.pid:
            self._here()
        if category not in self._categories:
            self._check_category(category)
        if isinstance(message, str):
            try:
                data = message.encode()
            except UnicodeEncodeError:
                data = message.encode("utf-8", "backslashreplace")
        elif isinstance(message, bytes):
            data = message
        elif isinstance(message, bytearray | memoryview):
            data = bytes(message)
        else:
            raise TypeError(f"message must be str or bytes, not {type(message).__name__}")
        if len(data) > self._max_message:
            raise MessageTooLargeError(len(data), self._max_message)
        self._queue.put(category, data)

    def _check_category(self, category: str) -> None:
        if not isinstance(category, str):
            raise InvalidCategoryError(repr(category), "category must be a str")
        problem = category_problem(category)
        if problem is not None:
            raise InvalidCategoryError(category, problem)
        if len(self._categories) < _CATEGORY_CACHE:
            self._categories[category] = None

    def flush(self, timeout: float | None = None, *, require_acknowledged: bool = False) -> bool:
        """Wait until every record logged before this call is settled; True once it is.

        A record is *settled* when a server acknowledged it (stored it durably,
        or had it already), or when the client gave it up by policy: dropped,
        counted in ``stats().dropped`` and logged (a full queue or spool with
        ``QueuePolicy.overflow="drop"``, a category no server accepts, a record
        no live server takes as too large). While any record logged before
        the call is queued, in a batch being sent or waiting to be resent, or
        only in the spool, ``flush()`` does not return True: it returns False
        when ``timeout`` seconds pass first (``None`` waits as long as it
        takes), or when the client is closed.

        ``require_acknowledged=True`` asks for more: True only when every
        record logged before the call (since the client started) was
        acknowledged; False as soon as all are settled and one of them (or a
        record in the same batch) was dropped. ``stats().dropped`` says how many.

        In a uWSGI master that forks its workers from C the client sends
        nothing (see :mod:`logclient._uwsgi`): ``flush()`` returns False at once.
        """
        if self._pid != os.getpid():
            self._here()
            if self._deferred:
                return False
        target = self._queue.accepted
        if not self._sender.flush(timeout, target):
            return False
        if require_acknowledged:
            first_queue_drop = self._queue.first_drop_at
            if self._sender.settlement.dropped_before(target):
                return False
            if first_queue_drop is not None and first_queue_drop <= target:
                return False
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Flush for most of ``timeout``, spool what is undelivered, stop every thread.

        With no server reachable and a spool, records go to the spool at once
        instead of waiting out the timeout. Idempotent; ``log()`` afterwards
        raises ClientClosedError.
        """
        if self._pid != os.getpid():
            if self._home != os.getpid():
                self._close_in_child()
                return
            # A deferred client closed where it was made: it starts, to deliver, and stops.
            self._here(start=True)
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        deadline = time.monotonic() + timeout
        atexit.unregister(self._atexit)
        _uwsgi.remove_on_exit(self._atexit)
        self._queue.close()
        stopped = self._sender.stop(deadline)
        if self._owns_source:
            try:
                self._source.close(max(0.5, min(2.0, deadline - time.monotonic())))
            except Exception:
                logger.exception("logclient: closing server discovery failed")
        if stopped:
            self._release()
        stats = self.stats()
        if stats.spooled:
            logger.info(
                "logclient closed; %d records wait in spool %s",
                stats.spooled,
                stats.spool_directory,
            )

    def _release(self) -> None:
        if self._spool is not None:
            self._spool.close()

    def _atexit(self) -> None:
        try:
            self.close(ATEXIT_TIMEOUT_S)
        except Exception:
            logger.exception("logclient: close at interpreter exit failed")

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def producer_id(self) -> str:
        """Deprecated: the old name of :attr:`producer` (see docs/glossary.md)."""
        warnings.warn(
            "LogClient.producer_id is now LogClient.producer", DeprecationWarning, stacklevel=2
        )
        return self.producer

    def stats(self) -> ClientStats:
        """Counters and state, for health checks, tests and debugging."""
        if self._pid != os.getpid():
            self._here()
        sender = self._sender
        dispatch, outcomes, ledger = sender.dispatch, sender.outcomes, sender.ledger
        spool = self._spool
        current = self._pool.current
        return ClientStats(
            producer=self.producer,
            current_server=str(current) if current else None,
            known_servers=tuple(str(e) for e in self._pool.known),
            down_servers=tuple(str(e) for e in self._pool.down()),
            queued=len(self._queue),
            queued_bytes=self._queue.nbytes,
            in_flight=sender.in_memory_records(),
            spooled=spool.records if spool is not None else 0,
            spooled_batches=spool.batches if spool is not None else 0,
            spooled_bytes=spool.bytes if spool is not None else 0,
            logged=self._queue.accepted,
            sent=dispatch.sent_records,
            acknowledged=ledger.acked_records,
            duplicates=outcomes.duplicates,
            failovers=outcomes.failovers,
            dropped=self._queue.dropped + ledger.dropped_records,
            unsettled=sender.settlement.unsettled(self._queue.accepted),
            batches_retried=dispatch.batches_retried,
            spilled=sender.spilled_records,
            spool_directory=str(spool.directory) if spool is not None else None,
            closed=self._closed,
            servers_short=max(0, self.replication.required - len(self._pool.live())),
            waiting_for_copies=ledger.waiting_records(),
            copies_given_up=ledger.copies_given_up,
            hedged=dispatch.hedging.hedged_batches,
            sent_batches=dispatch.sent_batches,
        )

    # ------------------------------------------------- after fork(), and deferred

    def _here(self, *, start: bool = False) -> None:
        """The slow path of every call: the client does not run in this process (yet).

        In a child of the process whose copy this is: start afresh here
        (:meth:`_enter_child`). In the same process while deferred: start once
        this is no longer a uWSGI process that forks workers later (worker 1
        of a uWSGI without master loads the app, forks the others, then
        serves), or when ``start`` (``close()`` delivers what it logged).
        Also sets :data:`_forksafe.STATE.pid`, which no fork hook set when uWSGI
        forked this process, so that ``log()`` takes the fast path again.
        """
        with _forksafe.process_lock():
            pid = os.getpid()
            _forksafe.STATE.pid = pid
            if self._pid == pid:
                return
            if self._home != pid:
                self._enter_child(pid)
            elif self._deferred and (start or not _uwsgi.master_forks_later()):
                self._renew(pid, in_child=False)

    def _enter_child(self, pid: int) -> None:
        """First use in a child of the process that made this client: start afresh here.

        Nothing of the parent's client is touched beyond dropping references
        and closing the child's copies of descriptors (sockets, the spool
        lock): its threads did not come along and its locks may be held for
        ever. The child gets its own producer, queue, server pool (seeded with
        the servers the parent knew), spool slot, sender thread and, with
        ZooKeeper, session. What the parent had queued or in flight stays the
        parent's: the child never sends it (no duplicates), except when the
        parent was deferred (a uWSGI master, which never sends): then the
        first of its children to start sends what it had queued.
        """
        self._let_go_of_parent()
        if self._closed:
            self._drop_inheritance()
            self._home = self._pid = pid
            return
        self._renew(pid, in_child=True)

    def _let_go_of_parent(self) -> None:
        """In a child: close our copies of the parent's descriptors, take none of its locks."""
        self._close_lock = threading.Lock()
        self._sender.forget_in_child()
        if self._spool is not None:
            self._spool.abandon_in_child()
            self._spool = None

    def _renew(self, pid: int, *, in_child: bool) -> None:
        """Start the client in this process with state of its own (the process lock is held)."""
        inherited: tuple[list[str], list[bytes]] = ([], [])
        parent_deferred = self._deferred
        if self._inheritance is not None and self._inheritance.claim():
            inherited = self._queue.records_unlocked()
        self._drop_inheritance()
        known, answered = self._pool.members_unlocked(), self._pool.answered
        self.producer = uuid.uuid4().hex
        self._queue = RecordQueue(self.queue_policy, self.batching)
        for category, message in zip(*inherited, strict=True):
            self._queue.put(category, message)
        self._pool = ServerPool(self.failover, self.choice, on_change=self._queue.doorbell.set)
        self._pool.update(known, answered=answered)
        if in_child:
            restart = getattr(self._source, "restart_in_child", None)
            if restart is not None:
                restart()
        if parent_deferred:
            self._source.start()
        self._spool = self._own_spool(main_slot_free=parent_deferred)
        self._sender = self._new_sender()
        self._deferred = False
        self._home = self._pid = pid
        follow_now(self._source, self._pool.update)
        self._sender.start()
        self._register_exit()

    def _drop_inheritance(self) -> None:
        if self._inheritance is not None:
            self._inheritance.close()
            self._inheritance = None

    def _own_spool(self, *, main_slot_free: bool) -> Spool | None:
        if not self.spool_policy.enabled:
            return None
        try:
            return Spool.open_anew(self.spool_policy, main_slot_free=main_slot_free)
        except SpoolError as exc:
            logger.warning(
                "logclient in process %d: no spool (%s); undelivered records stay in memory",
                os.getpid(),
                exc,
            )
            return None

    def _close_in_child(self) -> None:
        """``close()`` in a child that never used this client: nothing to deliver or start."""
        with _forksafe.process_lock():
            if self._home != os.getpid():
                self._let_go_of_parent()
                self._drop_inheritance()
                self._closed = True
                self._deferred = False
                self._home = self._pid = os.getpid()
                atexit.unregister(self._atexit)
                return
        self.close()

    @property
    def spool_directory(self) -> Path | None:
        """The spool directory this client holds (None without a spool)."""
        return self._spool.directory if self._spool is not None else None


def _default_source(zk_hosts: str, zk_path: str, tls: ZkTLSPolicy | None) -> ServerSource:
    """The servers file named by ``LOGCLIENT_SERVERS_FILE`` if set, else ZooKeeper.

    The variable moves a fleet to the host's discovery agent without touching
    the apps (see :func:`logclient._fileservers.servers_file_from_env`).
    """
    from logclient._fileservers import servers_file_from_env

    source = servers_file_from_env(zk_hosts, zk_path)
    if source is not None:
        return source
    return _zookeeper_source(zk_hosts, zk_path, tls)


def _zookeeper_source(zk_hosts: str, zk_path: str, tls: ZkTLSPolicy | None) -> ServerSource:
    """``ZooKeeperServers``, imported only when used (kazoo is loaded only then)."""
    discovery = importlib.import_module("logclient.discovery")
    factory = getattr(discovery, "ZooKeeperServers", None)
    if factory is None:
        raise DiscoveryError("ZooKeeper discovery is not available in this version of logclient")
    try:
        source: ServerSource = factory(zk_hosts, zk_path, tls=tls)
    except LogClientError:
        raise
    except Exception as exc:
        raise DiscoveryError(f"cannot use ZooKeeper at {zk_hosts!r}{zk_path}: {exc}") from exc
    return source
