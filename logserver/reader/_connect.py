"""A Thrift connection to one server for reading, plain or TLS, with errors that say why."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

from thriftpy2.protocol import TCyBinaryProtocolFactory
from thriftpy2.rpc import make_client
from thriftpy2.thrift import TClient
from thriftpy2.transport import TCyFramedTransportFactory, TSocket

from logserver.errors import LogServerError, TLSMismatchError
from logwire.idl import log_thrift
from logwire.serverset import Endpoint

if TYPE_CHECKING:
    from logclient import TLSPolicy

__all__ = ["connect", "interrupt"]


@contextmanager
def connect(
    endpoint: Endpoint, timeout: float = 10.0, *, tls: TLSPolicy | None = None
) -> Iterator[Any]:
    """A thriftpy2 client (framed, binary) to one server, closed on exit.

    With ``tls`` (logclient's :class:`~logclient.TLSPolicy`) the connection is
    TLS, verified as that policy says; a failed handshake raises LogServerError.
    """
    if tls is None:
        client = make_client(
            log_thrift.LogService,
            endpoint.host,
            endpoint.port,
            trans_factory=TCyFramedTransportFactory(),
            proto_factory=TCyBinaryProtocolFactory(),
            timeout=int(timeout * 1000),
        )
    else:
        # Not make_client's TLS: its socket checks no host name and cannot be
        # told which name to check.
        sock = TSocket(sock=_tls_socket(endpoint, timeout, tls))
        transport = TCyFramedTransportFactory().get_transport(sock)
        client = TClient(log_thrift.LogService, TCyBinaryProtocolFactory().get_protocol(transport))
    try:
        yield client
    except ssl.SSLError as exc:
        raise TLSMismatchError(_connection_failure(endpoint, exc, tls is not None)) from None
    except ConnectionError as exc:
        raise LogServerError(_connection_failure(endpoint, exc, tls is not None)) from None
    finally:
        client.close()


def _connection_failure(endpoint: Endpoint, exc: OSError, tls: bool) -> str:
    """Say why a connection broke, with the likely TLS cause when there is one."""
    reason = getattr(exc, "reason", None)
    if isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError):
        text = "the server closed the connection"
    elif reason:
        text = str(reason).lower().replace("_", " ")
    else:
        text = exc.strerror or type(exc).__name__
    if not tls:
        # A TLS server resets a plain client right after its first bytes.
        return f"{endpoint}: connection failed: {text} (does the server speak TLS? --tls-ca)"
    # With TLS 1.3 a server refuses a client certificate after the client's side of
    # the handshake is done: it shows on the first call, as an alert or a reset.
    return (
        f"{endpoint}: TLS: {text} (does the server want a client certificate? --tls-cert/--tls-key)"
    )


def _tls_socket(endpoint: Endpoint, timeout: float, tls: TLSPolicy) -> ssl.SSLSocket:
    """A connected socket after a verified TLS handshake; LogServerError otherwise."""
    try:
        context = tls.ssl_context()
    except ValueError as exc:
        raise LogServerError(str(exc)) from None
    try:
        raw = socket.create_connection((endpoint.host, endpoint.port), timeout=timeout)
    except OSError as exc:
        raise LogServerError(f"{endpoint}: cannot connect: {exc.strerror or exc}") from exc
    hostname = tls.server_hostname or endpoint.host
    try:
        sock = context.wrap_socket(raw, server_hostname=hostname)
    except ssl.SSLCertVerificationError as exc:
        raw.close()
        raise TLSMismatchError(
            f"{endpoint}: TLS: the server's certificate failed verification for "
            f"{hostname!r}: {exc.verify_message or exc.reason}"
        ) from None
    except (OSError, ValueError) as exc:
        raw.close()
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
        raise TLSMismatchError(
            f"{endpoint}: TLS handshake failed: {reason} "
            "(is the port TLS? does the server want a client certificate, --tls-cert?)"
        ) from None
    sock.settimeout(timeout)
    return sock


def interrupt(client: Any) -> None:
    """Make a call blocked on ``client`` (in another thread) fail now: its socket is shut
    down (closing it would not wake the blocked ``recv``)."""
    trans = getattr(getattr(client, "_iprot", None), "trans", None)
    sock = getattr(trans, "sock", None)
    sock = getattr(sock, "sock", sock)  # a TSocket holds the socket
    if isinstance(sock, socket.socket):
        with suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
