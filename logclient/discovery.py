"""Where the client learns which servers exist.

A :class:`ServerSource` gives the current set of live endpoints and calls back
when it changes. :class:`StaticServers` is a fixed list (for tests and for
setups without ZooKeeper); :class:`ZooKeeperServers` watches the registration
path. The sender only ever sees the protocol, so it can be tested without
ZooKeeper and the watcher without a sender.

This module is :class:`ZooKeeperServers` itself: its lifecycle, its thread and
the watches. The protocol and :class:`StaticServers` are in ``_source.py``
(they need no kazoo), what it publishes (the last good membership, counters,
listeners) in ``_membership.py``; all are importable from here.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from kazoo.exceptions import (
    ConnectionClosedError,
    ConnectionLoss,
    KazooException,
    NoNodeError,
    OperationTimeoutError,
    SessionExpiredError,
)
from kazoo.hosts import collect_hosts
from kazoo.protocol.states import KazooState, ZnodeStat
from kazoo.recipe.watchers import ChildrenWatch, DataWatch
from kazoo.retry import InterruptedError as RetryInterruptedError
from kazoo.retry import KazooRetry

from logclient._membership import DiscoveryStats, Membership
from logclient._source import (
    KnownServer,
    Listener,
    MemberListener,
    ServerSource,
    StaticServers,
    node_order,
)
from logclient.errors import DiscoveryError
from logwire.serverset import Endpoint, Member, MemberFormatError
from logwire.zkclient import new_client, retry_backoff, stop_client, zk_retry
from logwire.zktls import ZkTLSPolicy

__all__ = ["DiscoveryStats", "KnownServer", "ServerSource", "StaticServers", "ZooKeeperServers"]

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

_STOP = object()
# The longest wait between two attempts to set the path's watch.
_WATCH_RETRY_MAX_DELAY_S = 30.0


class _Closing(Exception):
    """Internal: close() was called; unwind the discovery thread."""


class ZooKeeperServers:
    """The live logservers registered under ``zk_path``, kept current by ZooKeeper watches.

    ``start()`` returns at once and keeps connecting in the background;
    :meth:`servers` is empty until ZooKeeper first answers. After that it is the
    last *good* membership: a disconnect, an expired session or a whole-ensemble
    outage never empties it; only ZooKeeper saying, while connected, that the
    path has no (usable) children does. Servers are identified by endpoint, so
    the ghost node of a quickly restarted server counts once; only members
    whose status is ``ALIVE`` are listed. Malformed node data is skipped,
    counted and logged once per node.

    Listeners run on this object's own thread ("logclient-discovery"), never on
    kazoo's. ``close()`` stops every thread ``start()`` started, bounded.

    ``tls`` (a :class:`~logclient.ZkTLSPolicy`) connects to ZooKeeper's TLS
    client port, verifying its certificate. Discovery only reads, so it needs
    no ZooKeeper credentials even when the servers register under an ACL.
    """

    def __init__(
        self,
        zk_hosts: str,
        zk_path: str = "/logservers",
        *,
        session_timeout_s: float = 10.0,
        retry_max_delay_s: float = 1.0,
        tls: ZkTLSPolicy | None = None,
    ) -> None:
        if tls is not None and not isinstance(tls, ZkTLSPolicy):
            raise DiscoveryError(f"tls must be a ZkTLSPolicy, not {type(tls).__name__}")
        try:
            hosts, chroot = collect_hosts(zk_hosts)
        except (ValueError, AttributeError, TypeError) as exc:
            raise DiscoveryError(f"invalid ZooKeeper hosts {zk_hosts!r}: {exc}") from exc
        if not hosts:
            raise DiscoveryError(f"invalid ZooKeeper hosts {zk_hosts!r}: no host")
        if not _valid_path(zk_path) or (chroot is not None and not _valid_path(chroot)):
            raise DiscoveryError(f"invalid ZooKeeper path {zk_path!r} (hosts {zk_hosts!r})")
        if session_timeout_s <= 0 or retry_max_delay_s <= 0:
            raise DiscoveryError("session_timeout_s and retry_max_delay_s must be positive")
        self.zk_hosts = zk_hosts
        self.zk_path = zk_path
        self.tls = tls
        self._prefix = zk_path.rstrip("/") + "/"
        self._session_timeout_s = session_timeout_s
        self._retry_max_delay_s = retry_max_delay_s
        self._lock = threading.Lock()
        self._members = Membership(zk_path)
        self._events: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closing = threading.Event()
        self._connected = threading.Event()
        self._client: Any = None
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._started = False
        self._closed = False
        # Guarded by _lock (read by stats()/__repr__):
        self._state = "NOT_STARTED"
        # Owned by the discovery thread:
        self._cache: dict[str, Member | None] = {}  # child name -> member (None: malformed)
        self._generation = 0
        self._armed_czxid: int | None = None
        self._children_watch: ChildrenWatch | None = None

    # ---------------------------------------------------------------- public

    def __repr__(self) -> str:
        with self._lock:
            state = self._state
        return (
            f"<ZooKeeperServers {self.zk_hosts}{self.zk_path} state={state} "
            f"tls={self.tls is not None} {self._members!r}>"
        )

    def start(self) -> None:
        """Start watching; never blocks on the network (idempotent)."""
        with self._lock:
            if self._closed:
                raise DiscoveryError("discovery was closed; create a new one")
            if self._started:
                return
            self._started = True
            self._state = KazooState.LOST  # kazoo's state until the first connect
        try:
            self._client = new_client(
                self.zk_hosts,
                session_timeout_s=self._session_timeout_s,
                retry_max_delay_s=self._retry_max_delay_s,
                tls=self.tls,
            )
        except (KazooException, ValueError) as exc:
            raise DiscoveryError(f"cannot use ZooKeeper at {self.zk_hosts!r}: {exc}") from exc
        self._client.add_listener(self._on_state)
        self._client.start_async()
        self._thread = threading.Thread(target=self._run, name="logclient-discovery", daemon=True)
        self._thread.start()

    @property
    def answered(self) -> bool:
        """True once ZooKeeper said which servers exist (an empty set means none, then)."""
        return self._members.answered

    def restart_in_child(self) -> None:
        """In a child after fork(): a ZooKeeper session and thread of the child's own.

        kazoo is not fork-safe (its threads are the parent's, and a client
        started before the fork hangs in the child): the parent's client is
        dropped, never called, and a new one started if the parent's was. The
        last known servers and the listeners stay. Once per child; a source
        shared by several clients is restarted by the first.
        """
        pid = os.getpid()
        if self._pid == pid:
            return
        self._pid = pid
        self._lock = threading.Lock()
        self._members.reinit_after_fork()
        self._events = queue.SimpleQueue()
        self._closing = threading.Event()
        self._connected = threading.Event()
        self._client = None
        self._thread = None
        self._cache = {}
        self._generation += 1
        self._armed_czxid = None
        self._children_watch = None
        running = self._started and not self._closed
        self._started = False
        self._state = "NOT_STARTED"
        if running:
            self.start()

    def servers(self) -> frozenset[Endpoint]:
        """The last known good set of ALIVE endpoints (empty before ZooKeeper first answers)."""
        return self._members.servers()

    def members(self) -> tuple[KnownServer, ...]:
        """The last known good ALIVE servers with their member nodes, sorted by endpoint.

        A server restarted while its old node lingers (a ghost, until its
        session expires) is listed once, with its newest node.
        """
        return self._members.members()

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(servers)`` after every change, on the discovery thread."""
        self._members.subscribe(listener)

    def subscribe_members(self, listener: MemberListener) -> None:
        """Call ``listener(members)`` after every change (a new registration of a known
        endpoint included), on the discovery thread."""
        self._members.subscribe_members(listener)

    def wait_for(self, predicate: Callable[[frozenset[Endpoint]], bool], timeout: float) -> bool:
        """Wait until ``predicate(servers())`` holds; False after ``timeout`` seconds."""
        return self._members.wait_for(predicate, timeout)

    def stats(self) -> DiscoveryStats:
        """Counters and connection state, for health checks and tests."""
        with self._lock:
            state = self._state
        return self._members.stats(state, connected=state == KazooState.CONNECTED)

    def close(self, timeout: float = 5.0) -> None:
        """Stop watching and every thread ``start()`` started; bounded by ``timeout``; idempotent.

        The last known servers stay readable through :meth:`servers`.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._state = "CLOSED"
        self._members.wake()
        deadline = time.monotonic() + timeout
        self._closing.set()
        self._connected.set()  # wakes a thread still waiting for the first connect
        self._events.put(_STOP)
        client = self._client
        if client is not None:
            client.remove_listener(self._on_state)
            # kazoo's stop() can hang (#582) and must not run on its own threads.
            stopper = stop_client(
                client, deadline=deadline, name="logclient-discovery-stop", on_error=_stop_failed
            )
            if stopper.is_alive():
                logger.warning("ZooKeeper client for %s did not stop within %.1fs", self, timeout)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                logger.warning("discovery thread did not stop within %.1fs", timeout)

    # --------------------------------------------------------- kazoo threads

    def _on_state(self, state: str) -> None:
        """On kazoo's connection thread: record and log only, never block."""
        if self._closing.is_set():
            return
        # No lock here: a user's wait_for() predicate may hold the membership's, and this
        # thread must not wait for any.
        self._state = state
        if state == KazooState.CONNECTED:
            self._connected.set()
            logger.info("connected to ZooKeeper %s, watching %s", self.zk_hosts, self.zk_path)
        else:
            logger.warning(
                "ZooKeeper %s is %s; keeping the last known %d servers",
                self.zk_hosts,
                state,
                self._members.known_without_lock(),
            )

    def _on_parent(self, data: bytes | None, stat: ZnodeStat | None, event: Any = None) -> bool:
        if self._closing.is_set():
            return False
        self._events.put(("parent", stat.czxid if stat is not None else None))
        return True

    # ----------------------------------------------------- discovery thread

    def _run(self) -> None:
        try:
            self._watch_parent()
            while True:
                batch = [self._events.get()]
                while True:  # coalesce a burst: only the newest children list matters
                    try:
                        batch.append(self._events.get_nowait())
                    except queue.Empty:
                        break
                for index, item in enumerate(batch):
                    if item is _STOP or self._closing.is_set():
                        return
                    if item[0] == "children" and any(
                        later is not _STOP and later[:2] == item[:2] for later in batch[index + 1 :]
                    ):
                        continue  # a newer list from the same watch follows
                    self._handle(item)
        except (_Closing, ConnectionClosedError, RetryInterruptedError):
            pass
        finally:
            logger.debug("discovery thread for %s exits", self.zk_path)

    def _handle(self, item: tuple[Any, ...]) -> None:
        backoff = retry_backoff(self._retry_max_delay_s)
        while True:
            try:
                if item[0] == "parent":
                    self._parent_changed(item[1])
                else:
                    self._children_changed(item[1], item[2])
                return
            except (_Closing, ConnectionClosedError, RetryInterruptedError):
                raise
            except Exception:  # never let one bad event kill discovery
                logger.warning("discovery update failed; retrying", exc_info=True)
                if self._closing.wait(backoff.delay()):
                    raise _Closing from None
                backoff = backoff.next()

    def _retrying(self) -> KazooRetry:
        return zk_retry(self._retry_max_delay_s, interrupt=self._closing.is_set)

    def _watch_parent(self) -> None:
        """A DataWatch on the path: it arms (and re-arms) the ChildrenWatch.

        Discovery never creates the path, even when it is missing: a path a
        client created would carry no ACL, and the servers, which lock it down
        with ``--zk-auth-file``, must be the ones to create it. The DataWatch
        reports the path's creation, so a missing path costs nothing (and a
        ChildrenWatch is only ever set on a path that exists, kazoo #149).
        """
        # Until the first connect, kazoo refuses calls outright (its state is CLOSED).
        self._connected.wait()
        if self._closing.is_set():
            raise _Closing
        # Connection trouble is kazoo's to retry; what is left here (an ACL, say) is slow to fix.
        backoff = replace(retry_backoff(), max_s=_WATCH_RETRY_MAX_DELAY_S)
        while True:
            try:
                # Survives reconnects and a missing node; reports creation and deletion.
                DataWatch(self._client, self.zk_path, self._on_parent)
                return
            except (ConnectionClosedError, RetryInterruptedError):
                raise
            except Exception:
                logger.warning("cannot watch %s; retrying", self.zk_path, exc_info=True)
                if self._closing.wait(backoff.delay()):
                    raise _Closing from None
                backoff = backoff.next()

    def _parent_changed(self, czxid: int | None) -> None:
        if czxid is None:
            # ZooKeeper says the path does not exist: there are no servers.
            if self._armed_czxid is not None or not self._members.answered:
                logger.warning("%s does not exist; waiting for it to be created", self.zk_path)
            self._disarm()
            self._members.publish(frozenset(), nodes=0)
            return
        if czxid == self._armed_czxid:
            return  # the same node (its data changed); the ChildrenWatch is still good
        # (Re)created: a ChildrenWatch on a deleted node stops for good (kazoo #149).
        if self._armed_czxid is not None:
            logger.info("%s was re-created; watching it again", self.zk_path)
        self._disarm()
        self._armed_czxid = czxid
        generation = self._generation

        def on_children(children: list[str]) -> bool | None:
            if generation != self._generation or self._closing.is_set():
                return False  # a stale watch: stop it
            self._events.put(("children", generation, list(children)))
            return None

        self._children_watch = ChildrenWatch(self._client, self.zk_path, on_children)

    def _disarm(self) -> None:
        self._generation += 1
        self._armed_czxid = None
        self._cache.clear()  # sequence numbers restart in a re-created parent
        old, self._children_watch = self._children_watch, None
        session_watcher = getattr(old, "_session_watcher", None)
        if session_watcher is not None:
            # A watch stopped by NoNode never removes its session listener itself.
            self._client.remove_listener(session_watcher)

    def _children_changed(self, generation: int, children: list[str]) -> None:
        if generation != self._generation:
            return
        names = set(children)
        for gone in self._cache.keys() - names:
            del self._cache[gone]
        self._cache.update(self._read_members([n for n in children if n not in self._cache]))
        if generation != self._generation:
            return
        alive = [
            KnownServer(m.endpoint, name, node_order(name), m.zone)
            for name, m in self._cache.items()
            if m is not None and m.status == "ALIVE"
        ]
        self._members.publish(alive, nodes=len(names))

    def _read_members(self, names: list[str]) -> dict[str, Member | None]:
        """Read new children in parallel; a vanished child is left out (its deletion is coming)."""
        pending = [(name, self._client.get_async(self._prefix + name)) for name in names]
        members: dict[str, Member | None] = {}
        for name, result in pending:
            try:
                data, stat = result.get()
            except NoNodeError:
                continue
            except (ConnectionLoss, SessionExpiredError, OperationTimeoutError):
                try:
                    data, stat = self._retrying()(self._client.get, self._prefix + name)
                except NoNodeError:
                    continue
            except (ConnectionClosedError, RetryInterruptedError):
                raise
            except KazooException as exc:  # e.g. NoAuth on that one node: skip it, once
                members[name] = None
                logger.warning("cannot read %s%s (%r); skipping it", self._prefix, name, exc)
                continue
            try:
                members[name] = Member.from_json(data)
            except MemberFormatError as exc:
                members[name] = None
                if self._members.note_malformed(stat.czxid):
                    logger.warning("skipping malformed node %s%s: %s", self._prefix, name, exc)
        return members


def _stop_failed(exc: Exception) -> None:
    logger.warning("error while closing the ZooKeeper client", exc_info=exc)


def _valid_path(path: str) -> bool:
    if not isinstance(path, str) or not path.startswith("/") or "\x00" in path:
        return False
    if path == "/":
        return True
    parts = path.split("/")[1:]
    return all(part and part not in (".", "..") for part in parts)
