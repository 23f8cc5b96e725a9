"""What the accept thread, the connection threads and ``close()`` share, under one lock.

:class:`Bookkeeping` holds the server's connections (the
:class:`~logserver.transport._connections.ConnectionTable`: which are idle,
who makes room for a new one), how many requests are in flight, whether the
server is closing, and the counters :class:`WireStats` reports. Every change
to them is one method here, so the rule that ``close()`` relies on is kept in
one place: a connection is *idle* (waiting for a frame to start; close may
shut it down at any time) or *busy* (from the first byte of a frame until its
reply is sent; counted as in flight). A connection going idle checks the
closing flag under the same lock that :meth:`Bookkeeping.shut_idle` takes, so
either close saw it busy (and waits for it) or it sees the flag (and ends).

It also reports what peers do wrong: at most one warning per kind per minute
(the throttle it shares with the frame processor), the rest at debug level,
counted as held back.
"""

from __future__ import annotations

import threading
from typing import get_args

import structlog

from logserver.transport._connections import Connection, ConnectionTable, Eviction
from logserver.transport._limits import WireCounter, WireLimits, WireStats
from logserver.transport._processor import Throttle
from logserver.transport._sockets import readable, shutdown

__all__ = ["Bookkeeping"]

log = structlog.get_logger(__name__)


class Bookkeeping:
    """Connections, requests in flight, the closing flag and the counters of one server."""

    def __init__(self, limits: WireLimits, throttle: Throttle) -> None:
        self._lock = threading.Lock()
        self._idle_cond = threading.Condition(self._lock)
        self._conns = ConnectionTable(
            limits.max_connections, limits.connections_per_peer, pending=readable
        )
        self._throttle = throttle
        self._in_flight = 0
        self._closing = False
        self._counts: dict[WireCounter, int] = dict.fromkeys(get_args(WireCounter), 0)

    def __repr__(self) -> str:
        return f"<Bookkeeping {self.summary()}>"

    def summary(self) -> str:
        """Open connections, requests in flight and the main counters, for a repr."""
        with self._lock:
            return (
                f"open={len(self._conns)} in_flight={self._in_flight} "
                f"frames={self._counts['frames']} refused={self._counts['connections_refused']} "
                f"evicted={self._counts['connections_evicted']}"
            )

    @property
    def closing(self) -> bool:
        """Whether the server is closing (read without the lock: a hint, see :meth:`idle`)."""
        return self._closing

    def stats(self) -> WireStats:
        """A snapshot of the counters."""
        with self._lock:
            return WireStats(connections_open=len(self._conns), **self._counts)

    def open_connections(self) -> int:
        with self._lock:
            return len(self._conns)

    # ------------------------------------------------------------ admission

    def admit(self, conn: Connection) -> list[tuple[Connection, Eviction]] | None:
        """Take ``conn`` in; the idle connections to close to make room for it, or None
        if it is refused (every connection busy, or the server closing)."""
        with self._lock:
            self._counts["connections_total"] += 1
            victims = None if self._closing else self._conns.admit(conn)
            if victims is None:
                self._counts["connections_refused"] += 1
            else:
                self._counts["connections_evicted"] += len(victims)
        return victims

    def refuse(self, conn: Connection) -> None:
        """Take back an admitted connection whose thread could not start: it counts as refused."""
        with self._lock:
            self._conns.remove(conn)
            self._counts["connections_refused"] += 1

    # ------------------------------------------------------------ requests

    def busy(self, conn: Connection) -> None:
        """A frame started on ``conn``: it is busy and its request in flight."""
        with self._lock:
            self._conns.set_busy(conn)
            self._in_flight += 1

    def idle(self, conn: Connection) -> bool:
        """``conn``'s reply went out: it is idle again. False if the server is closing."""
        with self._idle_cond:
            self._conns.set_idle(conn)
            self._release()
            # Seen under the lock that shut_idle() takes to shut idle connections down:
            # either it saw this connection busy, or this thread sees the flag.
            return not self._closing

    def gone(self, conn: Connection) -> None:
        """``conn``'s thread ends: its request (if one was in flight) is over, its socket closed."""
        with self._idle_cond:
            if conn.busy:
                self._conns.set_idle(conn)
                self._release()
            self._conns.remove(conn)
            conn.sock.close()

    def _release(self) -> None:
        """One request is no longer in flight; caller holds the lock."""
        self._in_flight -= 1
        if self._in_flight == 0:
            self._idle_cond.notify_all()

    # ------------------------------------------------------------ closing

    def shut_idle(self) -> None:
        """The server is closing: no connection is admitted from now on, and the idle ones
        are shut down (their threads end); busy ones finish their request first."""
        with self._lock:
            self._closing = True
            for conn in self._conns:
                if not conn.busy:
                    shutdown(conn.sock)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no request is in flight (being received or processed); False on timeout."""
        with self._idle_cond:
            return self._idle_cond.wait_for(lambda: self._in_flight == 0, timeout)

    def cut_all(self) -> list[threading.Thread]:
        """Shut every connection down, busy or not; their threads, to join."""
        with self._lock:
            threads = [c.thread for c in self._conns if c.thread is not None]
            for conn in self._conns:
                shutdown(conn.sock)
        return threads

    # ------------------------------------------------------------ reporting

    def count(self, name: WireCounter, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def warn(self, kind: str, event: str, **fields: object) -> None:
        """Log what a peer did wrong: a warning at most once per ``kind`` per minute."""
        held = self._throttle.allow(kind)
        if held is None:
            log.debug(event, **fields)
        else:
            log.warning(event, held_back=held, **fields)
