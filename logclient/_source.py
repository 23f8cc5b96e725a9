"""The protocol every source of servers follows, and the fixed source that needs no ZooKeeper.

Kept apart from :class:`~logclient.discovery.ZooKeeperServers` because it
loads nothing: unit tests and setups without ZooKeeper use :class:`StaticServers`,
and the sender only ever sees :class:`ServerSource`, so it can be tested
without ZooKeeper and the watcher without a sender. Import these names from
:mod:`logclient.discovery` (or :mod:`logclient`), not from here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Protocol

from logwire.serverset import Endpoint

__all__ = ["Listener", "ServerSource", "StaticServers"]

Listener = Callable[[frozenset[Endpoint]], None]


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


class StaticServers:
    """A fixed set of servers; ``set()`` replaces it (tests use that to simulate changes)."""

    def __init__(self, servers: Iterable[Endpoint | str]) -> None:
        self._servers = frozenset(_endpoint(s) for s in servers)
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<StaticServers {sorted(map(str, self._servers))}>"

    def start(self) -> None:
        pass

    def servers(self) -> frozenset[Endpoint]:
        return self._servers

    def subscribe(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.append(listener)

    def set(self, servers: Iterable[Endpoint | str]) -> None:
        self._servers = frozenset(_endpoint(s) for s in servers)
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener(self._servers)

    def close(self, timeout: float = 5.0) -> None:
        pass


def _endpoint(value: Endpoint | str) -> Endpoint:
    return value if isinstance(value, Endpoint) else Endpoint.parse(value)
