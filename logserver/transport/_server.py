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

Connection states, as :meth:`ThriftServer.close` relies on them: *idle*
(waiting for a frame to start; may be closed at any time), *busy* (from the
first byte of a frame until its reply is sent; counted as in flight).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import select
import selectors
import socket
import ssl
import struct
import threading
import time
from types import ModuleType
from typing import Literal, get_args

import structlog

from logserver.transport._budget import SMALL_FRAME, InflightBudget
from logserver.transport._connections import Connection, ConnectionTable, Eviction
from logserver.transport._limits import (
    AddressInUseError,
    ListenError,
    WireCounter,
    WireLimits,
    WireStats,
)
from logserver.transport._processor import FrameOutcome, FrameProcessor, Reply, Throttle
from logserver.transport._sockets import (
    Cut,
    discard,
    oserror,
    oversized_kind,
    peer_address,
    peer_name,
    readable,
    recv_exact,
    recv_frame,
    send_reply,
    shutdown,
    sniff_header,
)
from logserver.transport._tls import (
    ServerTLS,
    certificate_identity,
    handshake_failure_reason,
    set_client_identity,
)
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
_LENGTH = struct.Struct(">i")
# A too-large frame that looks like a Thrift call is read and discarded (into a
# small scratch buffer, nothing allocated) up to this many times the cap, and
# at least up to _DRAIN_MIN (logclient's default batch is 1 MiB: a server with a
# small cap must still tell it to split), so the client can read a clear error
# instead of a reset. Larger ones are cut.
_DRAIN_FACTOR = 4
_DRAIN_MIN = 4 * 2**20

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
        self._throttle = Throttle(60.0)
        self._processor = FrameProcessor(service, handler, limits.max_depth, self._throttle)

        self._lock = threading.Lock()
        self._idle_cond = threading.Condition(self._lock)
        self._conns = ConnectionTable(
            limits.max_connections, limits.connections_per_peer, pending=readable
        )
        self._budget = InflightBudget(limits.inflight_bytes)
        self._in_flight = 0
        self._closing = False
        self._state: _State = "new"
        self._counts: dict[WireCounter, int] = dict.fromkeys(get_args(WireCounter), 0)

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
            if self._state != "new":
                raise RuntimeError(f"{self!r} was already started")
            self._state = "starting"
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
        with self._idle_cond:
            return self._idle_cond.wait_for(lambda: self._in_flight == 0, timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Stop accepting, let requests in flight finish, close every connection, join threads.

        Requests still in flight after ``timeout`` are cut.
        """
        deadline = time.monotonic() + timeout
        self.stop_accepting()
        with self._lock:
            if self._state == "closed":
                return
            self._closing = True
            for conn in self._conns:
                if not conn.busy:
                    shutdown(conn.sock)
        finished = self.wait_idle(max(0.0, deadline - time.monotonic()))
        with self._lock:
            threads = [c.thread for c in self._conns if c.thread is not None]
            for conn in self._conns:
                shutdown(conn.sock)
        for t in threads:
            t.join(timeout=max(0.1, deadline - time.monotonic()))
        with self._lock:
            self._state = "closed"
            left = len(self._conns)
        if not finished or left:
            log.warning("closed with requests cut", in_flight_cut=not finished, threads_left=left)
        log.info("closed", port=self._port, **dataclasses.asdict(self.stats()))

    def stats(self) -> WireStats:
        """A snapshot of the counters."""
        with self._lock:
            return WireStats(connections_open=len(self._conns), **self._counts)

    def __repr__(self) -> str:
        with self._lock:
            return (
                f"<ThriftServer {self._host}:{self._port} {self._state} "
                f"open={len(self._conns)} in_flight={self._in_flight} "
                f"frames={self._counts['frames']} refused={self._counts['connections_refused']} "
                f"evicted={self._counts['connections_evicted']} {self._budget!r} "
                f"handler={type(self._handler).__name__}>"
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
                    self._warn("accept_failed", "accept failed", error=str(e))
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
                self._count("tls_handshake_failures")
                log.debug("tls wrap failed", peer=peer, error=oserror(e))
                return
        conn = Connection(sock, peer, peer_address(addr))
        with self._lock:
            self._counts["connections_total"] += 1
            victims = None if self._closing else self._conns.admit(conn)
            if victims is None:
                self._counts["connections_refused"] += 1
            else:
                self._counts["connections_evicted"] += len(victims)
        if victims is None:
            sock.close()
            if self._closing:
                return
            self._warn(
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
            target=self._serve, args=(conn,), name=f"wire-{peer}", daemon=True
        )
        conn.thread = thread
        try:
            thread.start()
        except RuntimeError as e:  # can't start new thread
            with self._lock:
                self._conns.remove(conn)
                self._counts["connections_refused"] += 1
            sock.close()
            self._warn("thread_failed", "connection refused: no thread", peer=peer, error=str(e))

    def _evict(self, victim: Connection, why: Eviction) -> None:
        """Wake an idle connection's thread so that it closes: another needs its place."""
        shutdown(victim.sock)
        if why == "address_full":
            self._warn(
                "evicted_address_full",
                "idle connection closed: its peer address is at its connection cap",
                peer=victim.peer,
                max_connections_per_peer=self._limits.connections_per_peer,
            )
        else:
            self._warn(
                "evicted_server_full",
                "idle connection closed: the server is at its connection cap",
                peer=victim.peer,
                max_connections=self._limits.max_connections,
            )

    # ------------------------------------------------------------ serving

    def _serve(self, conn: Connection) -> None:
        log.debug("connection opened", peer=conn.peer)
        why = "closed"
        try:
            if self._tls is not None:
                self._handshake(conn)
            while self._serve_one(conn):
                pass
        except Cut as cut:
            why = cut.why
            # While closing or making room, the server itself shut the socket down:
            # not the peer's error.
            if cut.counter is not None and not (
                (self._closing or conn.evicted) and cut.counter == "connection_errors"
            ):
                self._count(cut.counter)
        except Exception:
            why = "error"
            log.exception("connection failed unexpectedly", peer=conn.peer)
        finally:
            self._unreserve(conn)
            with self._idle_cond:
                if conn.busy:
                    self._conns.set_idle(conn)
                    self._release()
                self._conns.remove(conn)
                conn.sock.close()
            log.debug("connection closed", peer=conn.peer, why=why, evicted=conn.evicted)

    def _handshake(self, conn: Connection) -> None:
        """Complete the TLS handshake within the handshake timeout, or cut the connection.

        The connection counts as idle meanwhile: close() may end it at any time.
        """
        assert self._tls is not None
        sock = conn.sock
        assert isinstance(sock, ssl.SSLSocket)
        # CPython keeps one deadline over the whole handshake: trickling bytes
        # does not extend it.
        sock.settimeout(self._tls.handshake_timeout_s)
        try:
            sock.do_handshake()
        except (OSError, ValueError) as e:
            if self._closing or conn.evicted:
                raise Cut(None, "closing" if self._closing else "evicted") from None
            reason, hint = handshake_failure_reason(e)
            extra = {"hint": hint} if hint else {}
            self._warn(
                "tls_handshake", "TLS handshake failed", peer=conn.peer, reason=reason, **extra
            )
            raise Cut("tls_handshake_failures", f"tls handshake: {reason}") from None
        self._count("tls_handshakes")
        conn.identity = certificate_identity(sock.getpeercert() or {})
        set_client_identity(conn.identity)
        log.debug(
            "tls handshake done", peer=conn.peer, version=sock.version(), client=conn.identity
        )

    def _serve_one(self, conn: Connection) -> bool:
        """Receive one frame and answer it; False when the peer closed between frames."""
        sock = conn.sock
        limits = self._limits
        prefix = bytearray(4)
        sock.settimeout(limits.idle_timeout_s)
        try:
            got = sock.recv_into(prefix, 4)
        except TimeoutError:
            log.debug("idle connection closed", peer=conn.peer, idle_s=limits.idle_timeout_s)
            raise Cut("idle_closed", "idle") from None
        except OSError as e:
            raise Cut(None if self._closing else "connection_errors", oserror(e)) from None
        if got == 0:
            return False

        deadline = time.monotonic() + limits.frame_timeout_s
        with self._lock:
            self._conns.set_busy(conn)
            self._in_flight += 1
        recv_exact(sock, memoryview(prefix)[got:], deadline)
        length = _LENGTH.unpack(prefix)[0]
        if length > limits.max_frame_bytes:
            self._refuse_large(conn, bytes(prefix), length, deadline)
        if length <= 0:
            self._warn("bad_length", "invalid frame length", peer=conn.peer, length=length)
            raise Cut("protocol_errors", "bad frame length")

        if self._reserve(conn, length, deadline):
            frame = recv_frame(sock, length, deadline)
            self._count("frames")
            decoded = self._processor.decode(frame, conn.peer)
            # The records are copies: the frame's memory goes before the handler runs.
            del frame
            reply = (
                decoded
                if isinstance(decoded, Reply)
                else self._processor.answer(decoded, conn.peer)
            )
            del decoded
            self._answered(conn, reply, deadline)
        else:
            self._answer_busy(conn, length, deadline)

        self._unreserve(conn)
        with self._idle_cond:
            self._conns.set_idle(conn)
            self._release()
            # Seen under the lock that close() takes to shut idle connections down:
            # either it saw this connection busy, or this thread sees the flag.
            return not self._closing

    def _answered(self, conn: Connection, reply: Reply, deadline: float) -> None:
        """Count a processed frame's outcome and send its reply (if any)."""
        if reply.outcome is FrameOutcome.PROTOCOL_ERROR or reply.outcome is FrameOutcome.GARBAGE:
            self._count("protocol_errors")
        elif reply.outcome is FrameOutcome.INTERNAL_ERROR:
            self._count("internal_errors")
        if reply.data is not None:
            send_reply(conn.sock, reply.data, deadline)
        if reply.close or reply.outcome is FrameOutcome.GARBAGE:
            raise Cut(None, "not a thrift message")

    def _reserve(self, conn: Connection, length: int, deadline: float) -> bool:
        """Reserve the frame's bytes in the in-flight budget, waiting for room up to half
        the frame timeout (the other half is left to read the frame, or to read it into
        nothing and answer). False if no room was made."""
        budget = self._budget
        if length > SMALL_FRAME and length > budget.limit - budget.used:
            self._count("frames_waited")
        wait = deadline - self._limits.frame_timeout_s / 2 - time.monotonic()
        if not budget.acquire(conn.address, length, wait):
            return False
        conn.reserved = length
        return True

    def _unreserve(self, conn: Connection) -> None:
        if conn.reserved:
            reserved, conn.reserved = conn.reserved, 0
            self._budget.release(conn.address, reserved)

    def _answer_busy(self, conn: Connection, length: int, deadline: float) -> None:
        """No room for this frame in time: read it into nothing and say so.

        The connection stays open: the client may well retry later on it.
        """
        self._count("frames_busy")
        budget = self._budget
        self._warn(
            "busy",
            "frame answered busy: too many request bytes in flight",
            peer=conn.peer,
            length=length,
            inflight_bytes=budget.used,
            max_inflight_bytes=budget.limit,
            waiting=budget.waiting,
        )
        header = sniff_header(conn.sock, deadline)
        if header is None:
            raise Cut("protocol_errors", "not a thrift call")
        name, seqid, consumed = header
        discard(conn.sock, length - consumed, deadline)
        reason = (
            f"server busy: {budget.used} request bytes in flight, the limit is {budget.limit}; "
            "retry later or elsewhere"
        )
        send_reply(conn.sock, self._processor.busy(name, seqid, reason), deadline)

    def _release(self) -> None:
        """One request is no longer in flight; caller holds the lock."""
        self._in_flight -= 1
        if self._in_flight == 0:
            self._idle_cond.notify_all()

    def _refuse_large(self, conn: Connection, prefix: bytes, length: int, deadline: float) -> None:
        """Refuse a frame over the cap without allocating it; always ends the connection."""
        self._count("frames_too_large")
        cap = self._limits.max_frame_bytes
        kind, what = oversized_kind(prefix)
        self._warn(kind, what, peer=conn.peer, length=length, max_frame_bytes=cap)
        if kind == "too_large" and length <= max(_DRAIN_FACTOR * cap, _DRAIN_MIN):
            header = sniff_header(conn.sock, deadline)
            if header is not None:
                # A real client with a batch too big: read the frame into nothing so
                # that it reads our answer instead of a reset.
                name, seqid, consumed = header
                discard(conn.sock, length - consumed, deadline)
                send_reply(
                    conn.sock, self._processor.frame_too_large(name, seqid, length, cap), deadline
                )
        raise Cut(None, kind)

    # ------------------------------------------------------------ helpers

    def _count(self, name: WireCounter, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def _warn(self, kind: str, event: str, **fields: object) -> None:
        held = self._throttle.allow(kind)
        if held is None:
            log.debug(event, **fields)
        else:
            log.warning(event, held_back=held, **fields)
