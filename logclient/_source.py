"""The protocol every source of servers follows, the fixed source that needs no ZooKeeper,
and which source a client given ``zk_hosts`` uses.

Kept apart from :class:`~logclient.discovery.ZooKeeperServers` because it
loads nothing: unit tests and setups without ZooKeeper use :class:`StaticServers`,
and the sender only ever sees :class:`ServerSource`, so it can be tested
without ZooKeeper and the watcher without a sender. Import these names from
:mod:`logclient.discovery` (or :mod:`logclient`), not from here.

A source that knows more than endpoints (which registration of a server it
sees, and in what order servers registered) also offers ``members()`` and
``subscribe_members()`` (:class:`MemberSource`): a server restarted on the
same endpoint registers anew, which is news for the client (its failures
before the restart say nothing about it now), and the ``leader`` choice needs
the registration order.

A client given ``zk_hosts`` reads the servers file named by
``LOGCLIENT_SERVERS_FILE`` when that is set, else ZooKeeper
(:func:`default_source`); either is imported only then, so an app with a
static server list never loads kazoo.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from logclient.errors import DiscoveryError, LogClientError
from logwire.serverset import Endpoint, zone_problem

if TYPE_CHECKING:
    from logwire.zktls import ZkTLSPolicy

__all__ = [
    "KnownServer",
    "Listener",
    "MemberListener",
    "MemberSource",
    "ServerSource",
    "StaticServers",
    "default_source",
    "follow",
    "follow_now",
    "node_order",
    "one_per_endpoint",
]

Listener = Callable[[frozenset[Endpoint]], None]


@dataclass(frozen=True)
class KnownServer:
    """A server as a source knows it: its endpoint and, when the source can tell, its member.

    ``node`` names the member (the registration): a new name for a known
    endpoint is a new registration, a restart or a re-registration after a
    lost session. ``order`` is the member's place in registration order
    (ZooKeeper's counter at the end of the node's name: lower registered
    earlier); None when the source cannot tell. Both are empty for a source
    that lists endpoints only, and ``zone`` for a server that registered none.
    """

    endpoint: Endpoint
    node: str = ""
    order: int | None = None
    #: The failure domain the server registered in (``logserver serve --zone``; "" when it
    #: did not say). Copies of a batch spread across zones first.
    zone: str = ""

    def __str__(self) -> str:
        return f"{self.endpoint}" + (f" ({self.node})" if self.node else "")

    def order_key(self) -> tuple[int, int, Endpoint]:
        """Registration order first, then the endpoint; servers of unknown order last."""
        return (0, self.order, self.endpoint) if self.order is not None else (1, 0, self.endpoint)


MemberListener = Callable[[tuple[KnownServer, ...]], None]


def one_per_endpoint(servers: Iterable[Endpoint | KnownServer]) -> tuple[KnownServer, ...]:
    """One server per endpoint, sorted by endpoint; an endpoint listed twice keeps its
    newest registration (the highest order), so a restarted server's ghost node never
    stands for it. A plain endpoint is a server whose registration is unknown."""
    newest: dict[Endpoint, KnownServer] = {}
    for item in servers:
        server = item if isinstance(item, KnownServer) else KnownServer(item)
        held = newest.get(server.endpoint)
        if held is None or _order(server) > _order(held):
            newest[server.endpoint] = server
    return tuple(newest[e] for e in sorted(newest))


def _order(server: KnownServer) -> int:
    return -1 if server.order is None else server.order


def node_order(name: str) -> int | None:
    """The counter ZooKeeper appended to a sequential node's name (``member_0000000042``: 42)."""
    digits = len(name) - len(name.rstrip("0123456789"))
    return int(name[-digits:]) if digits else None


class ServerSource(Protocol):
    """The live servers a client may send to."""

    def start(self) -> None:
        """Begin watching; must not block on the network."""
        ...

    def servers(self) -> frozenset[Endpoint]:
        """The last known good set of endpoints (possibly empty before the first answer)."""
        ...

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(servers)`` on every change (from the source's own thread)."""
        ...

    def close(self, timeout: float = 5.0) -> None:
        """Stop watching; bounded by ``timeout``."""
        ...

    # Optional: ``restart_in_child()``. A client made before fork() calls it in the child
    # (once it is used there, before anything else): the source must then drop what
    # belongs to the parent (threads, sessions, locks a parent thread may have held) and
    # start its own, without touching the parent's (kazoo is not fork-safe).


@runtime_checkable
class MemberSource(ServerSource, Protocol):
    """A :class:`ServerSource` that also tells registrations and their order apart."""

    def members(self) -> tuple[KnownServer, ...]:
        """The last known good servers, one per endpoint, sorted by endpoint."""
        ...

    def subscribe_members(self, listener: MemberListener) -> None:
        """Call ``listener(members)`` on every change, a new registration of a known
        endpoint included (from the source's own thread)."""
        ...


class StaticServers:
    """A fixed list of servers; ``set()`` replaces it (tests use that to simulate changes).

    The list's order is the servers' registration order for ``choice="leader"``:
    the first live server listed leads. ``set()`` with an endpoint listed before
    counts as its new registration only when ``restarted`` names it. ``zones``
    maps endpoints to the zone each server is in (see
    :class:`~logclient.ReplicationPolicy`); servers it leaves out have none.
    """

    def __init__(
        self,
        servers: Iterable[Endpoint | str],
        *,
        zones: Mapping[Endpoint | str, str] | None = None,
    ) -> None:
        self._listeners: list[Listener] = []
        self._member_listeners: list[MemberListener] = []
        self._lock = threading.Lock()
        self._generation: dict[Endpoint, int] = {}
        self._zones = {_endpoint(e): _zone(z) for e, z in (zones or {}).items()}
        self._members = self._number(servers, ())

    def __repr__(self) -> str:
        return f"<StaticServers {[str(m.endpoint) for m in self._members]}>"

    def _number(
        self, servers: Iterable[Endpoint | str], restarted: Iterable[Endpoint | str]
    ) -> tuple[KnownServer, ...]:
        ordered = list(dict.fromkeys(_endpoint(s) for s in servers))
        for endpoint in map(_endpoint, restarted):
            self._generation[endpoint] = self._generation.get(endpoint, 0) + 1
        return tuple(
            KnownServer(
                e, f"static-{e}-{self._generation.get(e, 0)}", order, self._zones.get(e, "")
            )
            for order, e in enumerate(ordered)
        )

    def start(self) -> None:
        pass

    def servers(self) -> frozenset[Endpoint]:
        return frozenset(m.endpoint for m in self._members)

    def members(self) -> tuple[KnownServer, ...]:
        return tuple(sorted(self._members, key=lambda m: m.endpoint))

    def subscribe(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.append(listener)

    def subscribe_members(self, listener: MemberListener) -> None:
        with self._lock:
            self._member_listeners.append(listener)

    def set(
        self, servers: Iterable[Endpoint | str], *, restarted: Iterable[Endpoint | str] = ()
    ) -> None:
        """Replace the list; endpoints in ``restarted`` count as registered anew."""
        with self._lock:
            self._members = self._number(servers, restarted)
            listeners = list(self._listeners)
            member_listeners = list(self._member_listeners)
        for listener in listeners:
            listener(self.servers())
        for member_listener in member_listeners:
            member_listener(self.members())

    def close(self, timeout: float = 5.0) -> None:
        pass

    def restart_in_child(self) -> None:
        """In a child after fork(): a fresh lock (a thread of the parent may have held it)."""
        self._lock = threading.Lock()


def _zone(value: str) -> str:
    problem = zone_problem(value) if isinstance(value, str) else "not a str"
    if problem is not None:
        raise ValueError(f"bad zone {value!r}: {problem}")
    return value


def _endpoint(value: Endpoint | str) -> Endpoint:
    return value if isinstance(value, Endpoint) else Endpoint.parse(value)


Update = Callable[..., None]


def follow(source: ServerSource, update: Update) -> None:
    """Subscribe ``update`` to ``source``, then give it the current servers.

    In that order: a change published by the source's thread can then never
    be overwritten by an older set. A source that tells registrations apart
    (a :class:`MemberSource`) passes them on.
    """
    if isinstance(source, MemberSource):
        source.subscribe_members(update)
    else:
        source.subscribe(update)
    follow_now(source, update)


def follow_now(source: ServerSource, update: Update) -> None:
    """Give ``update`` the servers ``source`` knows now (and whether it has answered yet)."""
    servers = source.members() if isinstance(source, MemberSource) else source.servers()
    update(servers, answered=bool(getattr(source, "answered", True)))


def default_source(zk_hosts: str, zk_path: str, tls: ZkTLSPolicy | None) -> ServerSource:
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
