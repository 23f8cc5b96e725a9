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
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from logclient._batch import Batch
from logclient._policies import FailoverPolicy
from logclient.errors import BatchRejectedError, ServerUnavailableError
from logwire.serverset import Endpoint

__all__ = [
    "AppendOutcome",
    "Connection",
    "ThriftConnection",
    "ThriftTransport",
    "Transport",
    "map_errors",
]


@dataclass(frozen=True)
class AppendOutcome:
    """What a server answered to ``Append``."""

    duplicate: bool
    stored: int


class Connection(Protocol):
    """A connection the sender uses for one server until it fails.

    ``calls`` counts ``append`` calls made on it and ``last_used`` is the
    ``time.monotonic()`` of the last answer (or of the connect).
    """

    endpoint: Endpoint
    calls: int
    last_used: float

    def append(self, batch: Batch) -> AppendOutcome:
        """Send ``batch``; raise ServerUnavailableError or BatchRejectedError."""
        ...

    def abort(self) -> None:
        """From another thread: make a blocked ``append`` fail now (used by ``close()``)."""
        ...

    def close(self) -> None:
        """Release the socket; idempotent."""
        ...


class Transport(Protocol):
    """Makes connections: the network seam (tests may pass their own)."""

    def connect(self, endpoint: Endpoint, policy: FailoverPolicy) -> Connection:
        """Open a connection or raise ServerUnavailableError(phase="connect")."""
        ...


@contextlib.contextmanager
def map_errors(server: str, phase: str) -> Iterator[None]:
    """Translate whatever thriftpy2 or the socket raises into our exception tree."""
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
    except (OSError, EOFError, TProtocolException) as exc:
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise ServerUnavailableError(server, reason, phase=phase) from exc


class ThriftConnection:
    """A thriftpy2 client over framed transport and the Cython binary protocol."""

    def __init__(self, endpoint: Endpoint, policy: FailoverPolicy) -> None:
        from thriftpy2.protocol import TCyBinaryProtocolFactory
        from thriftpy2.thrift import TClient
        from thriftpy2.transport import TCyFramedTransportFactory, TSocket

        from logwire.idl import log_thrift

        self.endpoint = endpoint
        self._server = str(endpoint)
        self._thrift = log_thrift
        self._socket = TSocket(
            endpoint.host,
            endpoint.port,
            socket_timeout=int(policy.rpc_timeout_s * 1000),
            connect_timeout=int(policy.connect_timeout_s * 1000),
        )
        self._transport = TCyFramedTransportFactory().get_transport(self._socket)
        protocol = TCyBinaryProtocolFactory().get_protocol(self._transport)
        self._client: Any = TClient(log_thrift.LogService, protocol)
        self._lock = threading.Lock()
        self.opened_at = time.monotonic()
        self.last_used = self.opened_at
        self.calls = 0
        with map_errors(self._server, "connect"):
            self._transport.open()

    def __repr__(self) -> str:
        return f"<ThriftConnection {self._server} calls={self.calls}>"

    def append(self, batch: Batch) -> AppendOutcome:
        thrift = self._thrift
        entry = thrift.LogEntry
        request = thrift.AppendBatch(
            producer_id=batch.producer_id,
            sequence=batch.sequence,
            entries=[entry(category=c, message=m) for c, m in batch.entries],
        )
        self.calls += 1
        with map_errors(self._server, "call"):
            result = self._client.Append(request)
        self.last_used = time.monotonic()
        if result is None or result.code != thrift.ResultCode.OK:
            raise ServerUnavailableError(self._server, "answered TRY_LATER", phase="answer")
        return AppendOutcome(duplicate=bool(result.duplicate), stored=int(result.stored or 0))

    def abort(self) -> None:
        sock = self._socket.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._transport.close()


class ThriftTransport:
    """The real network: a :class:`ThriftConnection` per server."""

    def __repr__(self) -> str:
        return "<ThriftTransport framed+cybin>"

    def connect(self, endpoint: Endpoint, policy: FailoverPolicy) -> Connection:
        return ThriftConnection(endpoint, policy)
