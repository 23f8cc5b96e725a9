"""TLS (and mutual TLS) for the Thrift port: the server's settings and its handshake.

thriftpy2's ``TSSLServerSocket`` runs the handshake inside ``accept()`` with no
timeout, so one peer that connects and stays silent stops every other client
from getting in. Here the accept thread only wraps the socket
(``do_handshake_on_connect=False``); the handshake runs in the connection's own
thread, bounded by :attr:`ServerTLS.handshake_timeout_s` in total (CPython
keeps one deadline across the whole handshake, so trickling bytes does not
extend it). A peer that fails or stalls costs one connection slot for at most
that long and is closed quietly.

With mutual TLS each connection also has a *client identity*, taken from the
certificate the client proved it holds (:func:`certificate_identity`); the
service binds producers to it (see :func:`client_identity`).
"""

from __future__ import annotations

import errno
import hashlib
import ssl
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from logserver.errors import ConfigError

__all__ = [
    "ServerTLS",
    "certificate_identity",
    "client_identity",
    "handshake_failure_reason",
    "set_client_identity",
]

# What OpenSSL says when the first bytes are not a TLS record: a plain client.
_PLAIN_TEXT = {"WRONG_VERSION_NUMBER", "HTTP_REQUEST", "HTTPS_PROXY_REQUEST", "RECORD_TOO_LARGE"}


def _no_password() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal and a daemon would hang.
    raise ConfigError("the TLS private key is encrypted; give an unencrypted key")


@dataclass(frozen=True)
class ServerTLS:
    """TLS on the Thrift port: the server's certificate and, for mutual TLS, the client CA.

    ``cert_file`` is a PEM certificate chain (leaf first), ``key_file`` its
    unencrypted PEM private key. With ``client_ca_file`` every client must present a
    certificate signed by one of the CAs in that PEM bundle (mutual TLS);
    without it clients are not asked for one. TLS 1.2 is the minimum.
    ``handshake_timeout_s`` bounds the whole handshake of one connection.

    The key's path is left out of ``repr()`` so that it never reaches a log.
    """

    cert_file: Path
    key_file: Path = field(repr=False)
    client_ca_file: Path | None = None
    handshake_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        for name in ("cert_file", "key_file", "client_ca_file"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))
        if (
            not isinstance(self.handshake_timeout_s, int | float)
            or isinstance(self.handshake_timeout_s, bool)
            or not self.handshake_timeout_s > 0
        ):
            raise ConfigError(
                f"TLS handshake timeout must be > 0 seconds, not {self.handshake_timeout_s!r}"
            )

    @property
    def mutual(self) -> bool:
        """True when clients must present a certificate."""
        return self.client_ca_file is not None

    def context(self) -> ssl.SSLContext:
        """A new server-side ``SSLContext``; raises ConfigError if the files cannot be used.

        Error messages name the certificate and CA files, never the key's path
        or contents.
        """
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        # Client-initiated renegotiation (TLS 1.2) costs the server a handshake per
        # request at the client's will; nobody legitimate needs it here.
        ctx.options |= ssl.OP_NO_RENEGOTIATION
        try:
            ctx.load_cert_chain(self.cert_file, self.key_file, password=_no_password)
        except FileNotFoundError:
            raise ConfigError(
                f"TLS certificate {self.cert_file} or its key: no such file"
            ) from None
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                f"cannot use TLS certificate {self.cert_file} with its key: {_ssl_text(exc)}"
            ) from None
        if self.client_ca_file is not None:
            try:
                ctx.load_verify_locations(cafile=self.client_ca_file)
            except (ssl.SSLError, OSError) as exc:
                raise ConfigError(
                    f"cannot use TLS client CA bundle {self.client_ca_file}: {_ssl_text(exc)}"
                ) from None
            ctx.verify_mode = ssl.CERT_REQUIRED
        else:
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def __str__(self) -> str:
        mode = "mutual" if self.mutual else "server-only"
        return f"TLS ({mode}, cert {self.cert_file}, handshake timeout {self.handshake_timeout_s}s)"


# Each connection runs in a thread of its own, whose context starts empty: the
# connection's thread sets this once, after its handshake.
_CLIENT_IDENTITY: ContextVar[str] = ContextVar("client_identity", default="")


def certificate_identity(cert: dict[str, Any]) -> str:
    """A short, stable name for a verified client certificate's holder: 16 hex digits.

    A digest of the certificate's subject and issuer, as ``getpeercert()``
    gives them: the same for a renewed certificate of the same holder from the
    same CA, different for any other holder (the CA vouches for subjects). Empty
    when there is no certificate (TLS without client certificates).
    """
    if not cert:
        return ""

    def name(field_name: str) -> str:
        rdns = cert.get(field_name, ())
        return ",".join(f"{key}={value}" for rdn in rdns for key, value in rdn)

    text = f"subject={name('subject')}\nissuer={name('issuer')}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def set_client_identity(identity: str) -> None:
    """Called by a connection's thread once its handshake is done."""
    _CLIENT_IDENTITY.set(identity)


def client_identity() -> str:
    """The client certificate identity of the connection this thread serves ("" without
    mutual TLS): what the service binds producers to."""
    return _CLIENT_IDENTITY.get()


def handshake_failure_reason(exc: BaseException) -> tuple[str, str | None]:
    """A short reason for a failed server-side handshake, and a hint for the operator."""
    if isinstance(exc, TimeoutError):
        return "timeout", "the client did not finish the TLS handshake in time"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "client certificate rejected", exc.verify_message or None
    if isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError):
        return "eof", None
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or type(exc).__name__
        if reason in _PLAIN_TEXT:
            return reason.lower(), "a plain-text client on the TLS port?"
        if reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE":
            return reason.lower(), "mutual TLS: the client sent no certificate"
        return reason.lower(), None
    if isinstance(exc, OSError):
        if exc.errno is None:
            return type(exc).__name__, None
        return errno.errorcode.get(exc.errno, str(exc.errno)), None
    return type(exc).__name__, None


def _ssl_text(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).lower()
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
