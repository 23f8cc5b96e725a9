"""Which connections the server holds, which of them are idle, and who makes room for a new one.

Connections are a resource a peer can hoard without sending a byte: 2,000
idle TCP connections (a port scanner, a load balancer's health checks, one
hostile host) used to fill the server so that a real client could not get in
at all. Two rules keep the door open:

- **per peer address**: one address holds at most ``max_per_address``
  connections;
- **longest idle first**: when an address is at its cap, or the server at
  ``max_connections``, the connection that has been idle longest (of that
  address, or of all) is closed to make room for the new one.

*Idle* means waiting for a frame to start: a connection in the middle of a
frame, or whose reply is being computed, is *busy* and never chosen. A
connection whose next frame has already arrived (readable, not yet noticed by
its thread) is passed over too. So only connections that do nothing lose
their place, and a client that uses its connection keeps it; a client whose
idle connection was closed reconnects (logclient does so at once, without
counting the server as down). A new connection is refused only when every
connection is busy.

The table is not thread-safe: the server's lock guards it.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from typing import Literal

__all__ = ["Connection", "ConnectionTable", "Eviction"]

#: Why a connection was closed to make room: its peer address was at its cap, or the server was full.
Eviction = Literal["address_full", "server_full"]

# Idle connections looked at per admission before giving up on making room:
# readable ones are skipped, and the accept loop must stay cheap under a flood.
_CANDIDATES = 16


class Connection:
    """One accepted socket and its thread."""

    __slots__ = ("address", "busy", "evicted", "identity", "peer", "reserved", "sock", "thread")

    def __init__(self, sock: socket.socket, peer: str, address: str) -> None:
        self.sock = sock
        #: ``host:port`` for logs.
        self.peer = peer
        #: The peer's address without the port: what the per-address cap counts.
        self.address = address
        self.busy = False
        #: Closed to make room (its thread is on its way out).
        self.evicted = False
        #: Bytes of the in-flight budget this connection holds (0 between frames).
        self.reserved = 0
        #: The client certificate's identity with mutual TLS, after the handshake.
        self.identity = ""
        self.thread: threading.Thread | None = None

    def __repr__(self) -> str:
        state = "evicted" if self.evicted else "busy" if self.busy else "idle"
        return f"<Connection {self.peer} {state}>"


class ConnectionTable:
    """Open connections, in order of how long they have been idle."""

    def __init__(
        self,
        max_connections: int,
        max_per_address: int,
        pending: Callable[[socket.socket], bool],
    ) -> None:
        self._max = max_connections
        self._max_per_address = max_per_address
        self._pending = pending
        self._all: set[Connection] = set()
        self._live = 0  # not evicted
        self._per_address: dict[str, int] = {}
        # Insertion-ordered: the first is the one idle longest.
        self._idle: dict[Connection, None] = {}
        self._idle_by_address: dict[str, dict[Connection, None]] = {}

    def __len__(self) -> int:
        return len(self._all)

    def __iter__(self) -> Iterator[Connection]:
        return iter(list(self._all))

    def __repr__(self) -> str:
        return (
            f"<ConnectionTable open={len(self._all)} live={self._live} idle={len(self._idle)} "
            f"addresses={len(self._per_address)} max={self._max} "
            f"max_per_address={self._max_per_address}>"
        )

    def addresses(self) -> int:
        """Distinct peer addresses with a live connection."""
        return len(self._per_address)

    def admit(self, conn: Connection) -> list[tuple[Connection, Eviction]] | None:
        """Add ``conn`` (idle), closing the longest-idle connections that must make room.

        Returns the connections to shut down (already taken out of the counts;
        the caller wakes their threads), or None when no room can be made: every
        connection in the way is busy. Then nothing changed.
        """
        victims: list[tuple[Connection, Eviction]] = []
        server_full = self._live >= self._max
        if self._per_address.get(conn.address, 0) >= self._max_per_address:
            # One of its own makes room (for the server's cap too, if it is full).
            victim = self._longest_idle(self._idle_by_address.get(conn.address, {}))
            if victim is None:
                return None
            victims.append((victim, "server_full" if server_full else "address_full"))
        elif server_full:
            victim = self._longest_idle(self._idle)
            if victim is None:
                return None
            victims.append((victim, "server_full"))
        for victim, _ in victims:
            victim.evicted = True
            self._forget(victim)
        self._all.add(conn)
        self._live += 1
        self._per_address[conn.address] = self._per_address.get(conn.address, 0) + 1
        self.set_idle(conn)
        return victims

    def set_busy(self, conn: Connection) -> None:
        """A frame started on ``conn``: it may not be closed to make room."""
        conn.busy = True
        self._idle.pop(conn, None)
        by_address = self._idle_by_address.get(conn.address)
        if by_address is not None:
            by_address.pop(conn, None)

    def set_idle(self, conn: Connection) -> None:
        """``conn`` waits for its next frame: the most recently idle of all."""
        conn.busy = False
        if conn.evicted:
            return
        self._idle.pop(conn, None)
        self._idle[conn] = None
        by_address = self._idle_by_address.setdefault(conn.address, {})
        by_address.pop(conn, None)
        by_address[conn] = None

    def remove(self, conn: Connection) -> None:
        """``conn``'s thread is done with it."""
        if conn not in self._all:
            return
        self._all.discard(conn)
        if not conn.evicted:
            self._forget(conn)

    def _forget(self, conn: Connection) -> None:
        """Take a live connection out of the counts and the idle order."""
        self._live -= 1
        left = self._per_address[conn.address] - 1
        if left:
            self._per_address[conn.address] = left
        else:
            del self._per_address[conn.address]
        self._idle.pop(conn, None)
        by_address = self._idle_by_address.get(conn.address)
        if by_address is not None:
            by_address.pop(conn, None)
            if not by_address:
                del self._idle_by_address[conn.address]

    def _longest_idle(self, idle: dict[Connection, None]) -> Connection | None:
        for looked, conn in enumerate(idle):
            if looked >= _CANDIDATES:
                return None
            if not self._pending(conn.sock):
                return conn
        return None
