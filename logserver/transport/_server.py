"""The framed Thrift server: sockets, threads and limits around thriftpy2's processor.

thriftpy2's ``make_server`` is not fit for a server on a network: it has no
frame size cap, logs a traceback per idle client, binds with ``SO_REUSEPORT``
(a second server silently shares the port), cannot be stopped while in
``accept()``, and decodes whatever it is sent. This server:

- reads the 4-byte frame length itself and refuses one over
  :attr:`WireLimits.max_frame_bytes` before allocating anything;
- validates every frame with :mod:`logserver.transport._guard` before thriftpy2
  decodes it, so a 25-byte frame cannot freeze the process;
- runs one thread per connection, at most :attr:`WireLimits.max_connections`
  and :attr:`WireLimits.max_connections_per_peer` from one address; beyond
  them the connection idle longest makes room, and a new connection is
  refused only when every connection is busy (:mod:`._connections`);
- reserves every frame's length in a server-wide budget of request bytes in
  flight before reading it (:mod:`._budget`); a frame that finds no room in
  time is read into nothing and answered busy, so memory stays bounded
  whatever legal frames arrive at once;
- closes idle connections quietly and cuts clients that trickle a frame;
- answers every request it can read, also when the handler raises an
  exception the IDL does not declare (``TApplicationException(INTERNAL_ERROR)``);
- logs what a peer does wrong at most once per kind per minute;
- with :class:`ServerTLS`, speaks TLS: the accept thread only wraps the socket,
  the handshake runs in the connection's thread within a deadline, so a silent
  or slow peer never holds up anyone else (see :mod:`logserver.transport._tls`).

This module binds, accepts and runs the server's lifecycle; each
connection's thread is :mod:`._serving`'s, and what they and ``close()``
share (connections, requests in flight, counters) is :mod:`._bookkeeping`'s,
which also says what *idle* and *busy* mean to :meth:`ThriftServer.close`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import select
import selectors
import socket
import threading
import time
from types import ModuleType
from typing import Literal

import structlog

from logserver.transport._bookkeeping import Bookkeeping
from logserver.transport._budget import InflightBudget
from logserver.transport._connections import Connection, Eviction
from logserver.transport._limits import (
    AddressInUseError,
    ListenError,
    WireLimits,
    WireStats,
)
from logserver.transport._processor import FrameProcessor, Throttle
from logserver.transport._serving import ConnectionServer
from logserver.transport._sockets import oserror, peer_address, peer_name, shutdown
from logserver.transport._tls import ServerTLS
from logwire.idl import log_thrift

__all__ = [
    "AddressInUseError",
    "ListenError",
    "ServerTLS",
    "ThriftServer",
    "WireLimits",
    "WireStats",
]

log = structlog.get_logger(__name__)

_BACKLOG = 1024

#: new -> starting -> serving -> stopped (not accepting) -> closed
_State = Literal["new", "starting", "serving", "stopped", "closed"]


class ThriftServer:
    """A threaded, framed, binary-protocol Thrift server for one service and handler.

    ``start()`` binds and returns; requests run on one thread per connection.
    Binary requests may be strict or non-strict (classic Scribe clients);
    replies are strict, which every Apache Thrift and thriftpy2 client reads.
    String fields reach the handler as ``bytes``. With ``tls`` every connection
    is TLS (mutual TLS when ``tls.client_ca_file`` is set); the certificate files are
    loaded here, so a bad one raises ConfigError before anything listens.
    """

    def __init__(
        self,
        handler: object,
        host: str = "127.0.0.1",
        port: int = 0,
        limits: WireLimits = WireLimits(),  # noqa: B008 - frozen, so one shared default is safe
        service: ModuleType = log_thrift.LogService,
        tls: ServerTLS | None = None,
    ) -> None:
        self._handler = handler
        self._tls = tls
        self._tls_context = tls.context() if tls is not None else None
        self._host = host
        self._port = port
        self._limits = limits
        self._service = service
        throttle = Throttle(60.0)
        self._books = Bookkeeping(limits, throttle)
        self._budget = InflightBudget(limits.inflight_bytes)
        self._serving = ConnectionServer(
            limits=limits,
            tls=tls,
            processor=FrameProcessor(service, handler, limits.max_depth, throttle),
            budget=self._budget,
            books=self._books,
        )
        # Guards the lifecycle state only; connections are the bookkeeping's.
        self._lock = threading.Lock()
        self._state: _State = "new"

        self._listener: socket.socket | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Bind, listen and start accepting.

        Raises :class:`AddressInUseError` if the port is taken, :class:`ListenError`
        for any other reason the address cannot be listened on.
        """
        with self._lock:
            state = self._state
            if state == "new":
                self._state = "starting"
        if state != "new":  # outside the lock: repr takes it
            raise RuntimeError(f"{self!r} was already started")
        try:
            self._listener = self._bind()
        except BaseException:
            with self._lock:
                self._state = "new"
            raise
        self._port = self._listener.getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"wire-accept-{self._port}", daemon=True
        )
        with self._lock:
            self._state = "serving"
        self._accept_thread.start()
        log.info(
            "listening",
            host=self._host,
            port=self._port,
            limits=repr(self._limits),
            tls=str(self._tls) if self._tls is not None else "off",
        )

    @property
    def port(self) -> int:
        """The port listened on (the one picked by the system when asked for port 0)."""
        return self._port

    @property
    def limits(self) -> WireLimits:
        """The limits this server enforces."""
        return self._limits

    def stop_accepting(self) -> None:
        """Close the listening socket; existing connections keep being served.

        Returns once the accept thread has exited, so the port is free again.
        """
        with self._lock:
            if self._state not in ("serving",):
                return
            self._state = "stopped"
        assert self._wake_w is not None and self._listener is not None
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._accept_thread is not None:
            self._accept_thread.join(timeout=5.0)
        self._listener.close()
        for s in (self._wake_r, self._wake_w):
            if s is not None:
                s.close()
        log.info("stopped accepting", port=self._port)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no request is in flight (being received or processed); False on timeout."""
        return self._books.wait_idle(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Stop accepting, let requests in flight finish, close every connection, join threads.

        Requests still in flight after ``timeout`` are cut.
        """
        deadline = time.monotonic() + timeout
        self.stop_accepting()
        with self._lock:
            if self._state == "closed":
                return
        self._books.shut_idle()
        finished = self.wait_idle(max(0.0, deadline - time.monotonic()))
        threads = self._books.cut_all()
        for t in threads:
            t.join(timeout=max(0.1, deadline - time.monotonic()))
        with self._lock:
            self._state = "closed"
        left = self._books.open_connections()
        if not finished or left:
            log.warning("closed with requests cut", in_flight_cut=not finished, threads_left=left)
        log.info("closed", port=self._port, **dataclasses.asdict(self.stats()))

    def stats(self) -> WireStats:
        """A snapshot of the counters."""
        return self._books.stats()

    def __repr__(self) -> str:
        with self._lock:
            state = self._state
        return (
            f"<ThriftServer {self._host}:{self._port} {state} {self._books.summary()} "
            f"{self._budget!r} handler={type(self._handler).__name__}>"
        )

    def __enter__(self) -> ThriftServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ accepting

    def _bind(self) -> socket.socket:
        try:
            infos = socket.getaddrinfo(
                self._host, self._port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
        except socket.gaierror as e:
            raise ListenError(self._host, self._port, str(e)) from e
        family, kind, proto, _, addr = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            # SO_REUSEADDR lets a restarted server bind past TIME_WAIT; on Linux it
            # still refuses a second listener. Never SO_REUSEPORT: that would let a
            # second server share the port and take half the clients silently.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(addr)
            sock.listen(_BACKLOG)
            sock.setblocking(False)
        except OSError as e:
            sock.close()
            if e.errno == errno.EADDRINUSE:
                raise AddressInUseError(self._host, self._port, "address in use") from e
            raise ListenError(self._host, self._port, e.strerror or str(e)) from e
        return sock

    def _accept_loop(self) -> None:
        assert self._listener is not None and self._wake_r is not None
        listener = self._listener
        with selectors.DefaultSelector() as sel:
            sel.register(listener, selectors.EVENT_READ)
            sel.register(self._wake_r, selectors.EVENT_READ)
            while True:
                ready = sel.select()
                if any(key.fileobj is self._wake_r for key, _ in ready):
                    return
                try:
                    sock, addr = listener.accept()
                except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                    continue
                except OSError as e:
                    # Out of descriptors or memory: the connection stays queued and
                    # the socket stays readable; pause instead of spinning.
                    self._books.warn("accept_failed", "accept failed", error=str(e))
                    if select.select([self._wake_r], [], [], 0.1)[0]:
                        return
                    continue
                try:
                    self._admit(sock, addr)
                except Exception:
                    # The accept thread must outlive any one connection's trouble.
                    log.exception("admitting a connection failed", peer=peer_name(addr))
                    with contextlib.suppress(OSError):
                        sock.close()

    def _admit(self, sock: socket.socket, addr: object) -> None:
        peer = peer_name(addr)
        if self._tls_context is not None:
            # Only wrap here: the handshake waits on the peer, so it runs in the
            # connection's thread (thriftpy2's TSSLServerSocket does it right here,
            # and one silent peer then blocks every new client).
            try:
                sock = self._tls_context.wrap_socket(
                    sock, server_side=True, do_handshake_on_connect=False
                )
            except OSError as e:  # the peer is already gone
                sock.close()
                self._books.count("tls_handshake_failures")
                log.debug("tls wrap failed", peer=peer, error=oserror(e))
                return
        conn = Connection(sock, peer, peer_address(addr))
        victims = self._books.admit(conn)
        if victims is None:
            sock.close()
            if self._books.closing:
                return
            self._books.warn(
                "connection_limit",
                "connection refused: no idle connection can make room",
                peer=peer,
                max_connections=self._limits.max_connections,
                max_connections_per_peer=self._limits.connections_per_peer,
            )
            return
        for victim, why in victims:
            self._evict(victim, why)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        thread = threading.Thread(
            target=self._serving.serve, args=(conn,), name=f"wire-{peer}", daemon=True
        )
        conn.thread = thread
        try:
            thread.start()
        except RuntimeError as e:  # can't start new thread
            self._books.refuse(conn)
            sock.close()
            self._books.warn(
                "thread_failed", "connection refused: no thread", peer=peer, error=str(e)
            )

    def _evict(self, victim: Connection, why: Eviction) -> None:
        """Wake an idle connection's thread so that it closes: another needs its place."""
        shutdown(victim.sock)
        if why == "address_full":
            self._books.warn(
                "evicted_address_full",
                "idle connection closed: its peer address is at its connection cap",
                peer=victim.peer,
                max_connections_per_peer=self._limits.connections_per_peer,
            )
        else:
            self._books.warn(
                "evicted_server_full",
                "idle connection closed: the server is at its connection cap",
                peer=victim.peer,
                max_connections=self._limits.max_connections,
            )
