"""LogClient: what an application holds to send logs.

``log()`` validates and enqueues; it never waits on the network. One
background thread (see :mod:`logclient._sender`) batches, sends, fails over
and spills to disk. ``flush()`` waits for acknowledgements, ``close()`` flushes
(bounded), spools what is left and stops every thread.

The LogClient is the facade: it checks what the app gives it, knows which
process it runs in, and follows ``fork()`` and uWSGI's deferred start (the
slow path of every call, below). What runs it in one process (producer,
queue, server pool, spool slot, sender thread) is a
:class:`~logclient._instance.ClientInstance`, replaced as a whole in a child;
which source of servers a client given ``zk_hosts`` uses is decided by
:func:`logclient._source.default_source`.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import warnings
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from logclient import _exits, _forksafe, _uwsgi
from logclient._connection import ThriftTransport, Transport
from logclient._instance import ClientInstance, Policies
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
from logclient._source import default_source, follow, follow_now
from logclient._spool import Spool
from logclient._stats import ClientStats
from logclient.errors import (
    DiscoveryError,
    InvalidCategoryError,
    LogClientError,
    MessageTooLargeError,
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
        self.tls = tls
        if queue.max_bytes < batching.max_bytes:
            raise ValueError("QueuePolicy.max_bytes must be at least BatchPolicy.max_bytes")
        self.batching = batching
        self.failover = failover
        self.choice = ChoicePolicy.of(choice)
        self.queue_policy = queue
        self.spool_policy = spool
        self.replication = replication
        self.hedging = hedging
        policies = Policies(batching, failover, self.choice, queue, spool, replication, hedging)
        self._max_message = batching.max_message_bytes
        self._categories: dict[str, None] = {}
        # A source the client made is the client's to close; one it was given is not.
        self._owns_source = servers is None
        self._source: ServerSource = (
            servers if servers is not None else default_source(zk_hosts or "", zk_path, zk_tls)
        )
        _forksafe.install()
        _uwsgi.check_once()
        # Threads started here could deadlock the workers uWSGI forks: start none, take
        # no spool slot (the worker that takes the slot delivers what is in it).
        self._deferred = _uwsgi.master_forks_later()
        opened = Spool.open(spool) if spool.enabled and not self._deferred else None
        # Replaced as a whole where the client starts afresh (see _renew).
        self._instance = ClientInstance(policies, transport, opened)
        self._close_lock = threading.Lock()
        self._closed = False
        # The process whose copy of the client this is, and the one it runs in: the same,
        # or 0 while deferred (then every call takes the slow path, _here()).
        self._home = os.getpid()
        self._pid = self._home
        # While deferred: lets the first process to start the client send what was logged.
        self._inheritance: _forksafe.Inheritance | None = None
        self._start()

    def _start(self) -> None:
        try:
            # Before start(), so that the first servers are known when the sender starts.
            follow(self._source, self._on_servers)
            if not self._deferred:
                self._source.start()
        except LogClientError:
            self._instance.release()
            raise
        except Exception as exc:
            self._instance.release()
            if self._owns_source:
                self._source.close(1.0)
            raise DiscoveryError(f"cannot start server discovery {self._source!r}: {exc}") from exc
        if self._deferred:
            self._inheritance = _forksafe.Inheritance()
            self._pid = 0
        else:
            self._instance.start()
        _exits.close_at_exit(self._atexit)

    def _on_servers(
        self, servers: Iterable[Endpoint | KnownServer], *, answered: bool = True
    ) -> None:
        """The source's listener (its thread); ignored by a copy of this client in a child
        that has not started afresh yet (its pool is the parent's)."""
        if self._pid == os.getpid():
            self._instance.pool.update(servers, answered=answered)

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("deferred" if self._deferred else "open")
        return f"<LogClient {state} {self._instance.summary()}>"

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
        self._instance.queue.put(category, data)

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
        return self._instance.flush(timeout, require_acknowledged=require_acknowledged)

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
        _exits.forget_at_exit(self._atexit)
        stopped = self._instance.stop(deadline)
        if self._owns_source:
            try:
                self._source.close(max(0.5, min(2.0, deadline - time.monotonic())))
            except Exception:
                logger.exception("logclient: closing server discovery failed")
        if stopped:
            self._instance.release()
        stats = self.stats()
        if stats.spooled:
            logger.info(
                "logclient closed; %d records wait in spool %s",
                stats.spooled,
                stats.spool_directory,
            )

    def _atexit(self) -> None:
        try:
            self.close(ATEXIT_TIMEOUT_S)
        except Exception:
            logger.exception("logclient: close at interpreter exit failed")

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def producer(self) -> str:
        """This client's producer in this process (docs/glossary.md); a child gets its own."""
        return self._instance.producer

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
        return self._instance.stats(closed=self._closed)

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
        self._instance.forget_in_child()

    def _renew(self, pid: int, *, in_child: bool) -> None:
        """Start the client in this process with state of its own (the process lock is held)."""
        parent_deferred = self._deferred
        inherit = self._inheritance is not None and self._inheritance.claim()
        self._drop_inheritance()
        if in_child:
            restart = getattr(self._source, "restart_in_child", None)
            if restart is not None:
                restart()
        if parent_deferred:
            self._source.start()
        # The source's listener still ignores this process (_pid): the new pool is
        # seeded from the old one, then from the source once the instance is in place.
        instance = self._instance.successor(inherit_records=inherit, main_slot_free=parent_deferred)
        self._instance = instance
        self._deferred = False
        self._home = self._pid = pid
        follow_now(self._source, instance.pool.update)
        instance.start()
        _exits.close_at_exit(self._atexit)

    def _drop_inheritance(self) -> None:
        if self._inheritance is not None:
            self._inheritance.close()
            self._inheritance = None

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
        return self._instance.spool_directory
