"""One connection's thread: the TLS handshake, then frame after frame until the peer goes.

For each frame, in order: wait for its first bytes within the idle timeout
(an idle connection is closed quietly); from then on the whole frame must
arrive within the frame timeout (a client that trickles is cut); a length
over :attr:`WireLimits.max_frame_bytes` is refused before anything is
allocated (a real client's too-large call is read into nothing and answered,
so it learns to split its batch); the frame's bytes are reserved in the
server-wide in-flight budget (:mod:`._budget`) before it is read, and a frame
that finds no room in time is read into nothing and answered busy; the frame
is decoded and answered by the :class:`~logserver.transport._processor.FrameProcessor`.
The connection's idle/busy state and the counters are the
:class:`~logserver.transport._bookkeeping.Bookkeeping`'s.
"""

from __future__ import annotations

import ssl
import struct
import time

import structlog

from logserver.transport._bookkeeping import Bookkeeping
from logserver.transport._budget import SMALL_FRAME, InflightBudget
from logserver.transport._connections import Connection
from logserver.transport._limits import WireLimits
from logserver.transport._processor import FrameOutcome, FrameProcessor, Reply
from logserver.transport._sockets import (
    Cut,
    discard,
    oserror,
    oversized_kind,
    recv_exact,
    recv_frame,
    send_reply,
    sniff_header,
)
from logserver.transport._tls import (
    ServerTLS,
    certificate_identity,
    handshake_failure_reason,
    set_client_identity,
)

__all__ = ["ConnectionServer"]

log = structlog.get_logger(__name__)

_LENGTH = struct.Struct(">i")
# A too-large frame that looks like a Thrift call is read and discarded (into a
# small scratch buffer, nothing allocated) up to this many times the cap, and
# at least up to _DRAIN_MIN (logclient's default batch is 1 MiB: a server with a
# small cap must still tell it to split), so the client can read a clear error
# instead of a reset. Larger ones are cut.
_DRAIN_FACTOR = 4
_DRAIN_MIN = 4 * 2**20


class ConnectionServer:
    """Serves connections, one thread each (:meth:`serve` is the thread's target)."""

    def __init__(
        self,
        *,
        limits: WireLimits,
        tls: ServerTLS | None,
        processor: FrameProcessor,
        budget: InflightBudget,
        books: Bookkeeping,
    ) -> None:
        self._limits = limits
        self._tls = tls
        self._processor = processor
        self._budget = budget
        self._books = books

    def __repr__(self) -> str:
        return f"<ConnectionServer tls={'on' if self._tls else 'off'} {self._budget!r}>"

    def serve(self, conn: Connection) -> None:
        """Serve ``conn`` until the peer closes, it is cut, or the server closes."""
        log.debug("connection opened", peer=conn.peer)
        books = self._books
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
                (books.closing or conn.evicted) and cut.counter == "connection_errors"
            ):
                books.count(cut.counter)
        except Exception:
            why = "error"
            log.exception("connection failed unexpectedly", peer=conn.peer)
        finally:
            self._unreserve(conn)
            books.gone(conn)
            log.debug("connection closed", peer=conn.peer, why=why, evicted=conn.evicted)

    def _handshake(self, conn: Connection) -> None:
        """Complete the TLS handshake within the handshake timeout, or cut the connection.

        The connection counts as idle meanwhile: close() may end it at any time.
        """
        assert self._tls is not None
        books = self._books
        sock = conn.sock
        assert isinstance(sock, ssl.SSLSocket)
        # CPython keeps one deadline over the whole handshake: trickling bytes
        # does not extend it.
        sock.settimeout(self._tls.handshake_timeout_s)
        try:
            sock.do_handshake()
        except (OSError, ValueError) as e:
            if books.closing or conn.evicted:
                raise Cut(None, "closing" if books.closing else "evicted") from None
            reason, hint = handshake_failure_reason(e)
            extra = {"hint": hint} if hint else {}
            books.warn(
                "tls_handshake", "TLS handshake failed", peer=conn.peer, reason=reason, **extra
            )
            raise Cut("tls_handshake_failures", f"tls handshake: {reason}") from None
        books.count("tls_handshakes")
        conn.identity = certificate_identity(sock.getpeercert() or {})
        set_client_identity(conn.identity)
        log.debug(
            "tls handshake done", peer=conn.peer, version=sock.version(), client=conn.identity
        )

    def _serve_one(self, conn: Connection) -> bool:
        """Receive one frame and answer it; False when the peer closed between frames."""
        books = self._books
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
            raise Cut(None if books.closing else "connection_errors", oserror(e)) from None
        if got == 0:
            return False

        deadline = time.monotonic() + limits.frame_timeout_s
        books.busy(conn)
        recv_exact(sock, memoryview(prefix)[got:], deadline)
        length = _LENGTH.unpack(prefix)[0]
        if length > limits.max_frame_bytes:
            self._refuse_large(conn, bytes(prefix), length, deadline)
        if length <= 0:
            books.warn("bad_length", "invalid frame length", peer=conn.peer, length=length)
            raise Cut("protocol_errors", "bad frame length")

        if self._reserve(conn, length, deadline):
            frame = recv_frame(sock, length, deadline)
            books.count("frames")
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
        return books.idle(conn)

    def _answered(self, conn: Connection, reply: Reply, deadline: float) -> None:
        """Count a processed frame's outcome and send its reply (if any)."""
        if reply.outcome is FrameOutcome.PROTOCOL_ERROR or reply.outcome is FrameOutcome.GARBAGE:
            self._books.count("protocol_errors")
        elif reply.outcome is FrameOutcome.INTERNAL_ERROR:
            self._books.count("internal_errors")
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
            self._books.count("frames_waited")
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
        self._books.count("frames_busy")
        budget = self._budget
        self._books.warn(
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

    def _refuse_large(self, conn: Connection, prefix: bytes, length: int, deadline: float) -> None:
        """Refuse a frame over the cap without allocating it; always ends the connection."""
        self._books.count("frames_too_large")
        cap = self._limits.max_frame_bytes
        kind, what = oversized_kind(prefix)
        self._books.warn(kind, what, peer=conn.peer, length=length, max_frame_bytes=cap)
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
