"""One connection to one server, and the seam that makes connections.

thriftpy2 is used only here, and its exceptions stop here: :func:`map_errors`
turns every failure into :class:`~logclient.errors.ServerUnavailableError` (try
another server) or :class:`~logclient.errors.BatchRejectedError` (no server
will take this batch), as httpcore's ``map_exceptions`` does for sockets.

A connection is thrown away after *any* error: thriftpy2's client does not
check sequence ids, so a connection that timed out would hand the late reply
of one call to the next one.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from logclient._batch import Batch
from logclient._calls import (
    MAX_REPLY_BYTES,
    decode_append_reply,
    encode_append_call,
    encode_compressed_call,
    encode_packed_call,
)
from logclient._policies import FailoverPolicy, TLSPolicy
from logclient.errors import BatchRejectedError, Phase, ServerUnavailableError
from logwire.compression import CompressionPolicy
from logwire.serverset import Endpoint

if TYPE_CHECKING:
    from logclient._tls import ClientTLS

__all__ = [
    "Acknowledgement",
    "Connection",
    "Pipelined",
    "ThriftConnection",
    "ThriftTransport",
    "Transport",
    "map_errors",
]


@dataclass(frozen=True)
class Acknowledgement:
    """A server's answer that it holds a batch durably (``AppendResult`` in ``log.thrift``).

    ``duplicate``: it had the batch before and wrote nothing; ``stored``: records written.
    (Not storage's ``AppendOutcome``: that is what one server's disk did.)
    """

    duplicate: bool
    stored: int


class Connection(Protocol):
    """A connection the sender uses for one server until it fails.

    ``calls`` counts ``append`` calls made on it and ``last_used`` is the
    ``time.monotonic()`` of the last answer (or of the connect).

    A connection may also offer :class:`Pipelined`'s ``send`` and ``receive``:
    the sender then keeps several batches in flight on it
    (``BatchPolicy.max_in_flight``); without them, one at a time through ``append``.
    """

    endpoint: Endpoint
    calls: int
    last_used: float

    def append(self, batch: Batch) -> Acknowledgement:
        """Send ``batch``; raise ServerUnavailableError or BatchRejectedError."""
        ...

    def abort(self) -> None:
        """From another thread: make a blocked ``append`` fail now (used by ``close()``)."""
        ...

    def close(self) -> None:
        """Release the socket; idempotent."""
        ...


class Pipelined(Protocol):
    """The optional half of :class:`Connection` that lets calls overlap.

    A pipelined connection may also offer ``fileno() -> int`` (its socket, or -1
    once closed) and ``buffered() -> bool`` (reply bytes already read off the
    socket, as TLS does): the sender then waits on several connections at once
    and can hedge (see :class:`~logclient.HedgePolicy`); without them it reads
    one connection's answers at a time.
    """

    def send(self, batch: Batch, deadline: float) -> None:
        """Write ``batch``'s call by ``deadline`` (``time.monotonic()``); do not wait."""
        ...

    def receive(self, deadline: float) -> Acknowledgement:
        """The answer to the oldest call not yet answered; errors as ``append``."""
        ...


class Transport(Protocol):
    """Makes connections: the network seam (tests may pass their own)."""

    def connect(self, endpoint: Endpoint, policy: FailoverPolicy) -> Connection:
        """Open a connection or raise ServerUnavailableError(phase="connect")."""
        ...


@contextlib.contextmanager
def map_errors(server: str, phase: Phase) -> Iterator[None]:
    """Translate whatever thriftpy2, the socket or TLS raises into our exception tree."""
    import ssl

    from thriftpy2.protocol.exc import TProtocolException
    from thriftpy2.thrift import TApplicationException
    from thriftpy2.transport import TTransportException

    from logwire.idl import log_thrift

    try:
        yield
    except (ServerUnavailableError, BatchRejectedError):
        raise
    except log_thrift.ServerDraining as exc:
        raise ServerUnavailableError(server, f"draining: {exc.reason}", phase="answer") from exc
    except log_thrift.StorageUnavailable as exc:
        raise ServerUnavailableError(
            server, f"storage unavailable: {exc.reason}", phase="answer"
        ) from exc
    except log_thrift.InvalidCategory as exc:
        raise BatchRejectedError(
            server,
            f"invalid category {exc.category!r}: {exc.reason}",
            kind="invalid_category",
            category=exc.category,
        ) from exc
    except log_thrift.BatchTooLarge as exc:
        raise BatchRejectedError(
            server,
            f"batch too large: {exc.reason} (limit {exc.limit}, actual {exc.actual})",
            kind="too_large",
            limit=exc.limit,
            actual=exc.actual,
        ) from exc
    except log_thrift.InvalidRequest as exc:
        raise BatchRejectedError(
            server, f"invalid request: {exc.reason}", kind="invalid_request"
        ) from exc
    except TimeoutError as exc:
        raise ServerUnavailableError(server, "timed out", phase=phase, timeout=True) from exc
    except TTransportException as exc:
        timed_out = exc.type == TTransportException.TIMED_OUT
        if exc.type == TTransportException.NOT_OPEN:
            phase = "connect"
        reason = exc.message or type(exc).__name__
        raise ServerUnavailableError(server, reason, phase=phase, timeout=timed_out) from exc
    except TApplicationException as exc:
        # An undeclared server error: indistinguishable from a crash mid-call.
        raise ServerUnavailableError(
            server, f"application error: {exc.message or exc.type}", phase=phase
        ) from exc
    except ssl.SSLError as exc:
        from logclient._tls import unavailable

        raise unavailable(server, exc, phase) from exc
    except (OSError, EOFError, TProtocolException) as exc:
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise ServerUnavailableError(server, reason, phase=phase) from exc
    except Exception as exc:
        # Only network and decoding code runs in here: anything else (a reply that
        # thriftpy2 cannot decode, say) means this server is not usable right now.
        raise ServerUnavailableError(
            server, f"unusable reply: {type(exc).__name__}: {exc}", phase=phase
        ) from exc


#: The append calls, newest first: a server that answers one with UNKNOWN_METHOD (it
#: predates it) gets the next one from then on.
AppendMethod = Literal["AppendCompressed", "AppendPacked", "Append"]
APPEND_METHODS: tuple[AppendMethod, ...] = ("AppendCompressed", "AppendPacked", "Append")


class ThriftConnection:
    """``LogService.AppendCompressed`` (or an older append) over one TCP connection: framed,
    strict binary.

    Built by hand for control (see :mod:`logclient._calls`): a whole-call
    deadline of ``rpc_timeout_s`` (a socket timeout alone restarts at every
    byte), a cap on the reply frame, and a reply that must carry the call's
    sequence id.

    ``method`` is the newest append this server is known to take. With it,
    ``AppendCompressed`` carries each batch compressed as ``compression`` says,
    unless compressing does not make that batch smaller (random bytes): that
    batch goes as ``AppendPacked``.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        policy: FailoverPolicy,
        tls: ClientTLS | None = None,
        *,
        method: AppendMethod = "AppendCompressed",
        compression: CompressionPolicy = CompressionPolicy(),  # noqa: B008 - frozen
        on_unknown_method: Callable[[Endpoint, AppendMethod], None] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self._server = str(endpoint)
        self.tls = tls is not None
        if method == "AppendCompressed" and not compression.enabled:
            method = "AppendPacked"
        self.method: AppendMethod = method
        self._compression = compression
        self._on_unknown_method = on_unknown_method
        self._rpc_timeout_s = policy.rpc_timeout_s
        self._seqid = 0
        self.opened_at = time.monotonic()
        self.last_used = self.opened_at
        self.calls = 0
        # (seqid, method) of each call sent and not yet answered, oldest first.
        self._awaiting: deque[tuple[int, AppendMethod]] = deque()
        self._sock: socket.socket | None = None
        with map_errors(self._server, "connect"):
            # The TLS handshake counts against the connect timeout.
            deadline = time.monotonic() + policy.connect_timeout_s
            try:
                sock = socket.create_connection(
                    (endpoint.host, endpoint.port), timeout=policy.connect_timeout_s
                )
            except TimeoutError as exc:
                raise ServerUnavailableError(
                    self._server, "connect timed out", phase="connect", timeout=True
                ) from exc
            except OSError as exc:
                raise ServerUnavailableError(
                    self._server, f"connect failed: {exc.strerror or exc}", phase="connect"
                ) from exc
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if tls is not None:
                sock = tls.handshake(sock, endpoint, deadline)
            self._sock = sock

    def __repr__(self) -> str:
        state = "open" if self._sock is not None else "closed"
        tls = " tls" if self.tls else ""
        return f"<ThriftConnection {self._server}{tls} {state} {self.method} calls={self.calls}>"

    def append(self, batch: Batch) -> Acknowledgement:
        deadline = time.monotonic() + self._rpc_timeout_s
        self.send(batch, deadline)
        return self.receive(deadline)

    def send(self, batch: Batch, deadline: float) -> None:
        """Write ``batch``'s call without waiting for its reply (pipelining).

        Replies come back in call order (a server answers one connection's calls
        one at a time) and :meth:`receive` reads the oldest one.
        """
        sock = self._sock
        if sock is None:
            raise ServerUnavailableError(self._server, "connection closed", phase="call")
        self._seqid = (self._seqid + 1) & 0x7FFFFFFF
        seqid = self._seqid
        method, request = self._encode(seqid, batch)
        self.calls += 1
        self._awaiting.append((seqid, method))
        with map_errors(self._server, "call"):
            try:
                _send_all(sock, request, deadline)
            except OSError as exc:
                if self.tls:
                    from logclient._tls import alert_waiting

                    # TLS 1.3: a server that refuses our certificate says so after
                    # our side of the handshake is done; its alert may sit unread.
                    alert = alert_waiting(sock)
                    if alert is not None:
                        raise alert from exc
                raise

    def _encode(self, seqid: int, batch: Batch) -> tuple[AppendMethod, bytes]:
        """The call that carries ``batch`` to this server, and its framed bytes."""
        args = (seqid, batch.producer, batch.sequence, batch.categories, batch.messages)
        if self.method == "AppendCompressed":
            request = encode_compressed_call(*args, self._compression)
            if request is not None:
                return "AppendCompressed", request
            return "AppendPacked", encode_packed_call(*args)  # compressing did not pay
        if self.method == "AppendPacked":
            return "AppendPacked", encode_packed_call(*args)
        return "Append", encode_append_call(*args)

    def receive(self, deadline: float) -> Acknowledgement:
        """Read the reply to the oldest call sent and not yet answered.

        Its sequence id must be that call's: a reply to any other call is an
        error. After any exception the connection must be thrown away.
        """
        from thriftpy2.thrift import TApplicationException

        from logwire.idl import log_thrift

        sock = self._sock
        if sock is None:
            raise ServerUnavailableError(self._server, "connection closed", phase="call")
        if not self._awaiting:
            raise ServerUnavailableError(self._server, "no call awaits a reply", phase="call")
        seqid, method = self._awaiting.popleft()
        with map_errors(self._server, "call"):
            (length,) = _FRAME.unpack(_recv_exactly(sock, 4, deadline))
            if not 0 < length <= MAX_REPLY_BYTES:
                raise ServerUnavailableError(
                    self._server, f"reply frame of {length} bytes refused", phase="call"
                )
            payload = _recv_exactly(sock, length, deadline)
            try:
                result = decode_append_reply(payload, seqid, method)
            except ValueError as exc:
                raise ServerUnavailableError(self._server, str(exc), phase="call") from exc
            except TApplicationException as exc:
                if method != "Append" and exc.type == TApplicationException.UNKNOWN_METHOD:
                    # A server from before this call: the next older one from now on
                    # (the transport remembers); this call is resent like any failed one.
                    older = APPEND_METHODS[APPEND_METHODS.index(method) + 1]
                    if self._on_unknown_method is not None:
                        self._on_unknown_method(self.endpoint, older)
                    raise ServerUnavailableError(
                        self._server,
                        f"server does not know {method} (an older logserver); "
                        f"using {older} with it from now on",
                        phase="downgrade",
                    ) from exc
                raise
            if result.success is None:
                for name in (
                    "invalid_category",
                    "too_large",
                    "draining",
                    "unavailable",
                    "invalid_request",
                ):
                    declared = getattr(result, name, None)
                    if declared is not None:
                        raise declared
                raise ServerUnavailableError(self._server, "empty reply", phase="call")
        self.last_used = time.monotonic()
        answer = result.success
        if answer.code != log_thrift.ResultCode.OK:
            raise ServerUnavailableError(self._server, "answered TRY_LATER", phase="answer")
        return Acknowledgement(duplicate=bool(answer.duplicate), stored=int(answer.stored or 0))

    def fileno(self) -> int:
        """The socket's descriptor, so the sender can wait on several connections at once
        (``poll``); -1 once closed."""
        sock = self._sock
        return sock.fileno() if sock is not None else -1

    def buffered(self) -> bool:
        """Reply bytes already read off the socket and waiting in TLS's buffer: ``poll``
        on the descriptor would not see them."""
        sock = self._sock
        pending = getattr(sock, "pending", None)
        return bool(pending is not None and pending())

    def abort(self) -> None:
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                # socket.socket's own method: SSLSocket.shutdown would drop the SSL
                # object that the sender thread may be reading with right now.
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()


_FRAME = struct.Struct(">i")


def _remaining(deadline: float) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("no answer within the RPC timeout")
    return remaining


def _send_all(sock: socket.socket, data: bytes, deadline: float) -> None:
    view = memoryview(data)
    while view:
        sock.settimeout(_remaining(deadline))
        sent = sock.send(view)
        view = view[sent:]


def _recv_exactly(sock: socket.socket, size: int, deadline: float) -> bytes:
    chunks = []
    missing = size
    while missing:
        sock.settimeout(_remaining(deadline))
        chunk = sock.recv(min(missing, 1 << 20))
        if not chunk:
            raise EOFError("connection closed by the server")
        chunks.append(chunk)
        missing -= len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class ThriftTransport:
    """The real network: a :class:`ThriftConnection` per server and connection.

    With ``tls`` every connection is TLS; the policy's files are loaded here
    (ValueError if they cannot be used), once for all connections.
    ``compression`` is how batches are compressed for ``AppendCompressed``
    (``CompressionPolicy("none")``: ``AppendPacked``, uncompressed).
    """

    def __init__(
        self,
        tls: TLSPolicy | None = None,
        compression: CompressionPolicy = CompressionPolicy(),  # noqa: B008 - frozen
    ) -> None:
        _load_network_modules(compression)
        self._tls: ClientTLS | None = None
        if tls is not None:
            from logclient._tls import ClientTLS

            self._tls = ClientTLS(tls)
        self.compression = compression
        # The older append each server asked for by answering UNKNOWN_METHOD (older
        # logservers). Only the sender thread connects, so a plain dict is enough.
        self._older: dict[Endpoint, AppendMethod] = {}

    def __repr__(self) -> str:
        tls = f" {self._tls.policy!r}" if self._tls is not None else ""
        return f"<ThriftTransport framed+cybin{tls} {self.compression!r}>"

    def connect(self, endpoint: Endpoint, policy: FailoverPolicy) -> Connection:
        return ThriftConnection(
            endpoint,
            policy,
            self._tls,
            method=self._older.get(endpoint, "AppendCompressed"),
            compression=self.compression,
            on_unknown_method=self._downgrade,
        )

    def _downgrade(self, endpoint: Endpoint, older: AppendMethod) -> None:
        current = self._older.get(endpoint, APPEND_METHODS[0])
        if APPEND_METHODS.index(older) > APPEND_METHODS.index(current):
            self._older[endpoint] = older


def _load_network_modules(compression: CompressionPolicy) -> None:
    """Import what connections need now, on the thread that makes the client.

    Never first on the sender thread: a ``fork()`` while a thread is importing
    a module leaves that module's import lock held in the child for ever, and
    the child's sender, importing it in turn, would hang (a pre-fork server
    forks right after the app, and so its client, started). Importing
    ``logclient`` alone still loads none of these.
    """
    import ssl  # noqa: F401

    import thriftpy2.protocol
    import thriftpy2.protocol.exc
    import thriftpy2.thrift
    import thriftpy2.transport
    import thriftpy2.transport.memory  # noqa: F401

    import logclient._tls  # noqa: F401
    from logwire.idl import log_thrift  # noqa: F401

    if compression.enabled:
        import zstandard  # noqa: F401  (logwire.compression imports it on first use)
