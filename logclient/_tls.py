"""TLS on the client's connections: the handshake within the connect deadline, errors mapped.

Loaded only when a client is given a :class:`~logclient.TLSPolicy`. Every
failure becomes :class:`~logclient.errors.ServerUnavailableError` with
``phase="connect"`` (the server cannot have stored anything), so the sender
marks that server down and moves on: another server may well have a good
certificate. A certificate the client rejects, or a client certificate the
server refuses, is also logged at ERROR, at most once a minute per server and
reason, because it does not heal by itself.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time

from logclient._policies import TLSPolicy
from logclient.errors import Phase, ServerUnavailableError
from logwire.serverset import Endpoint

__all__ = ["ClientTLS", "alert_waiting", "refused_by_server", "unavailable"]

logger = logging.getLogger(__name__)

_LOG_INTERVAL_S = 60.0
# Alerts a server sends when it refuses the client's certificate (or its absence).
# With TLS 1.3 they arrive after the client's side of the handshake has finished,
# i.e. on the first read of the first call.
_CLIENT_CERT_ALERTS = (
    "CERTIFICATE_REQUIRED",
    "BAD_CERTIFICATE",
    "UNKNOWN_CA",
    "CERTIFICATE_UNKNOWN",
    "CERTIFICATE_EXPIRED",
    "CERTIFICATE_REVOKED",
    "UNSUPPORTED_CERTIFICATE",
    "ACCESS_DENIED",
    "HANDSHAKE_FAILURE",
    "DECRYPT_ERROR",
)


class ClientTLS:
    """One policy's ``SSLContext`` (built once: loading CAs costs milliseconds), shared."""

    def __init__(self, policy: TLSPolicy) -> None:
        self.policy = policy
        self.context = policy.ssl_context()

    def __repr__(self) -> str:
        return f"<ClientTLS {self.policy!r}>"

    def handshake(self, sock: socket.socket, endpoint: Endpoint, deadline: float) -> ssl.SSLSocket:
        """Wrap a connected socket and finish the handshake by ``deadline`` (monotonic).

        Raises ServerUnavailableError(phase="connect"); the socket is closed then.
        """
        server = str(endpoint)
        hostname = self.policy.server_hostname or endpoint.host
        tls: ssl.SSLSocket | None = None
        try:
            tls = self.context.wrap_socket(
                sock, server_hostname=hostname, do_handshake_on_connect=False
            )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no time left for the TLS handshake")
            # CPython keeps this as one deadline over the whole handshake.
            tls.settimeout(remaining)
            tls.do_handshake()
        except (OSError, ValueError) as exc:
            (tls or sock).close()
            raise _handshake_failed(server, hostname, exc) from exc
        return tls


def unavailable(server: str, exc: ssl.SSLError, phase: Phase) -> ServerUnavailableError:
    """A TLS error during a call, in our terms (a refusal by the server is a connect failure)."""
    if refused_by_server(exc):
        return _refused(server, exc)
    if isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError):
        return ServerUnavailableError(server, "TLS connection closed by the server", phase=phase)
    return ServerUnavailableError(server, f"TLS error: {_reason(exc)}", phase=phase)


def alert_waiting(sock: socket.socket) -> ssl.SSLError | None:
    """After a failed send on a TLS connection: the server's refusal alert, if one is waiting."""
    if not isinstance(sock, ssl.SSLSocket):
        return None
    try:
        sock.settimeout(0.05)
        sock.recv(1)
    except ssl.SSLError as exc:
        return exc if refused_by_server(exc) else None
    except (OSError, ValueError):
        return None
    return None


def refused_by_server(exc: BaseException) -> bool:
    """True for an alert by which the server refuses our (missing) client certificate."""
    reason = getattr(exc, "reason", None) or ""
    return (
        isinstance(exc, ssl.SSLError)
        and "ALERT" in reason
        and any(reason.endswith(alert) for alert in _CLIENT_CERT_ALERTS)
    )


def _handshake_failed(server: str, hostname: str, exc: BaseException) -> ServerUnavailableError:
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = (
            f"TLS: the server's certificate failed verification for {hostname!r}: "
            f"{(exc.verify_message or _reason(exc)).rstrip('.')}"
        )
        _log_error(server, reason)
        return ServerUnavailableError(server, reason, phase="connect")
    if isinstance(exc, ssl.SSLError) and refused_by_server(exc):
        return _refused(server, exc)
    if isinstance(exc, TimeoutError):
        return ServerUnavailableError(
            server, "TLS handshake timed out", phase="connect", timeout=True
        )
    if isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError | ConnectionError):
        reason = (
            "TLS handshake failed: the server closed the connection "
            "(is its port plain text, or does it refuse this client?)"
        )
    elif isinstance(exc, ssl.SSLError):
        reason = f"TLS handshake failed: {_reason(exc)}"
    elif isinstance(exc, OSError):
        reason = f"TLS handshake failed: {exc.strerror or type(exc).__name__}"
    else:
        reason = f"TLS handshake failed: {exc}"
    return ServerUnavailableError(server, reason, phase="connect")


def _refused(server: str, exc: ssl.SSLError) -> ServerUnavailableError:
    reason = (
        f"TLS: the server refused this client's certificate ({_reason(exc)}); "
        "does it require mutual TLS (TLSPolicy.cert_file) or trust another CA?"
    )
    _log_error(server, reason)
    return ServerUnavailableError(server, reason, phase="connect")


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    if reason:
        return str(reason).lower().replace("_", " ")
    return str(exc) or type(exc).__name__


_logged: dict[tuple[str, str], float] = {}
_logged_lock = threading.Lock()


def _log_error(server: str, reason: str) -> None:
    now = time.monotonic()
    with _logged_lock:
        last = _logged.get((server, reason))
        if last is not None and now - last < _LOG_INTERVAL_S:
            return
        if len(_logged) > 1000:
            _logged.clear()
        _logged[(server, reason)] = now
    logger.error("logclient: %s: %s", server, reason)
