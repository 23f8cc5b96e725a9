"""The membership a server source (ZooKeeper or the agent's file) publishes to the client.

Kept apart from the watching because it is where the "keep the last good
membership" rule of docs/zookeeper.md holds: only :meth:`Membership.publish`
replaces the set, and the watcher calls it only when ZooKeeper, while
connected, said what the children are. A disconnect or an outage publishes
nothing, so the client keeps sending to the servers it knew. A
:class:`~logclient.FileServers` publishes only what a usable servers file
says, by the same rule. No kazoo here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from logclient._source import KnownServer, Listener, MemberListener, one_per_endpoint
from logwire.serverset import Endpoint

__all__ = ["DiscoveryStats", "Membership"]

# Logged under the discovery module's name, which applications configure.
logger = logging.getLogger("logclient.discovery")


@dataclass(frozen=True)
class DiscoveryStats:
    """A snapshot of a :class:`~logclient.discovery.ZooKeeperServers`, for health checks and tests.

    ``state`` is kazoo's connection state (``CONNECTED``, ``SUSPENDED``,
    ``LOST``) or ``NOT_STARTED``/``CLOSED``. ``updates`` counts changes of the
    published server set, ``malformed_nodes`` the distinct znodes skipped
    because their data is not a ServerSet member, ``last_update`` is the
    ``time.monotonic()`` of the last change (None before the first).
    """

    state: str
    connected: bool
    answered: bool
    servers: int
    nodes: int
    updates: int
    malformed_nodes: int
    last_update: float | None


class Membership:
    """The last good set of ALIVE servers under one path, its counters and its listeners.

    Thread-safe. Listeners run on the thread that publishes, outside the lock,
    and one that raises is logged and does not stop the others. Endpoint
    listeners (``subscribe``) hear of changes of the endpoint set; member
    listeners (``subscribe_members``) also of a known endpoint's new
    registration (a restarted server).
    """

    def __init__(self, zk_path: str) -> None:
        self._zk_path = zk_path
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._listeners: list[Listener] = []
        self._member_listeners: list[MemberListener] = []
        # Guarded by _lock:
        self._servers: frozenset[Endpoint] = frozenset()
        self._members: tuple[KnownServer, ...] = ()
        self._answered = False
        self._nodes = 0
        self._updates = 0
        self._last_update: float | None = None
        self._malformed: set[int] = set()  # czxid of every malformed node seen

    def __repr__(self) -> str:
        with self._lock:
            servers = sorted(map(str, self._servers))
            return (
                f"servers={servers} nodes={self._nodes} updates={self._updates} "
                f"malformed={len(self._malformed)}"
            )

    def servers(self) -> frozenset[Endpoint]:
        """The last published set (empty before the first answer)."""
        with self._lock:
            return self._servers

    def members(self) -> tuple[KnownServer, ...]:
        """The last published servers with their registrations, sorted by endpoint."""
        with self._lock:
            return self._members

    def known_without_lock(self) -> int:
        """How many servers are known, for kazoo's thread: it must never wait for the lock.

        A user's :meth:`wait_for` predicate runs under the lock and may take
        its time; reading one reference needs no lock in CPython.
        """
        return len(self._servers)

    @property
    def answered(self) -> bool:
        """True once ZooKeeper first said what the children are (read without the lock)."""
        return self._answered

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(servers)`` after every change of the endpoint set."""
        with self._lock:
            self._listeners.append(listener)

    def subscribe_members(self, listener: MemberListener) -> None:
        """Call ``listener(members)`` after every change, new registrations included."""
        with self._lock:
            self._member_listeners.append(listener)

    def wait_for(self, predicate: Callable[[frozenset[Endpoint]], bool], timeout: float) -> bool:
        """Wait until ``predicate(servers)`` holds; False after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self._servers):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
            return True

    def wake(self) -> None:
        """Make every :meth:`wait_for` look at its predicate again (on close)."""
        with self._changed:
            self._changed.notify_all()

    def reinit_after_fork(self) -> None:
        """In a child after fork(): fresh locks, as a thread of the parent may have held them.

        Must not log or wait: the caller may hold its own process lock.
        """
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)

    def note_malformed(self, czxid: int) -> bool:
        """Count a malformed node once; True the first time this node is seen."""
        with self._lock:
            first = czxid not in self._malformed
            self._malformed.add(czxid)
        return first

    def stats(self, state: str, connected: bool) -> DiscoveryStats:
        """A snapshot with the connection ``state`` of the caller."""
        with self._lock:
            return DiscoveryStats(
                state=state,
                connected=connected,
                answered=self._answered,
                servers=len(self._servers),
                nodes=self._nodes,
                updates=self._updates,
                malformed_nodes=len(self._malformed),
                last_update=self._last_update,
            )

    def publish(self, servers: Iterable[Endpoint | KnownServer], nodes: int) -> None:
        """What the source said: ``servers`` out of ``nodes`` children; tell listeners of changes.

        Plain endpoints are servers whose registration the source cannot tell.
        An endpoint listed twice keeps its newest registration (the highest
        order): a restarted server's ghost node never stands for it.
        """
        members = one_per_endpoint(servers)
        endpoints = frozenset(m.endpoint for m in members)
        with self._lock:
            self._answered = True
            self._nodes = nodes
            if members == self._members:
                return
            previous, self._members = self._members, members
            added, removed = endpoints - self._servers, self._servers - endpoints
            endpoints_changed = endpoints != self._servers
            self._servers = endpoints
            self._updates += 1
            self._last_update = time.monotonic()
            listeners = list(self._listeners) if endpoints_changed else []
            member_listeners = list(self._member_listeners)
            self._changed.notify_all()
        before = {m.endpoint: m.node for m in previous}
        renewed = sorted(
            str(m) for m in members if before.get(m.endpoint) not in (None, m.node) and m.node
        )
        logger.info(
            "servers under %s: %d (+%s -%s%s)",
            self._zk_path,
            len(endpoints),
            ",".join(sorted(map(str, added))) or "none",
            ",".join(sorted(map(str, removed))) or "none",
            f", registered anew: {','.join(renewed)}" if renewed else "",
        )
        for listener in listeners:
            try:
                listener(endpoints)
            except Exception:
                logger.exception("discovery listener %r failed", listener)
        for member_listener in member_listeners:
            try:
                member_listener(members)
            except Exception:
                logger.exception("discovery listener %r failed", member_listener)
