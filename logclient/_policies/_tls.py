"""TLS to the servers, as a policy: whom the client trusts and, for mutual TLS, who it is.

Only the policy and the ``ssl.SSLContext`` it makes live here (``ssl`` is
imported when a context is made, not with the policy); the handshake and
its errors are :mod:`logclient._tls`'s. Import it from :mod:`logclient`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ssl

__all__ = ["TLSPolicy"]


def _no_password() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal and hang the app.
    raise ValueError("TLSPolicy.key_file is encrypted; give an unencrypted key")


@dataclass(frozen=True, repr=False)
class TLSPolicy:
    """TLS to the servers: whom the client trusts and, for mutual TLS, who it is.

    The server's certificate is always verified: against the CAs in
    ``ca_file`` (a PEM bundle) or, without it, the system's default CAs. Its
    host name is verified too, against the host the client connects to (as
    registered in ZooKeeper or given to ``StaticServers``; an IP address must
    then be in the certificate's subjectAltName), or against
    ``server_hostname`` when given (one name for every server, e.g. servers
    registered by address whose certificates name the service).
    ``check_hostname=False`` still verifies the chain but accepts any name.

    ``cert_file`` is the client's PEM certificate chain for mutual TLS, with
    its key in ``key_file`` (or in ``cert_file`` itself when ``key_file`` is
    None). TLS 1.2 is the minimum. The handshake counts against
    :attr:`FailoverPolicy.connect_timeout_s`. A server whose certificate fails
    verification is logged (at ERROR) and treated as down; nothing is sent to it.
    """

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    check_hostname: bool = True
    server_hostname: str | None = None

    def __post_init__(self) -> None:
        for name in ("ca_file", "cert_file", "key_file"):
            value = getattr(self, name)
            if value is None:
                continue
            path = Path(value)
            if not path.is_file():
                raise ValueError(f"TLSPolicy.{name}: no such file: {path}")
            object.__setattr__(self, name, path)
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("TLSPolicy.key_file needs cert_file (the client certificate)")
        if not isinstance(self.check_hostname, bool):
            raise ValueError(
                f"TLSPolicy.check_hostname must be a bool, not {self.check_hostname!r}"
            )
        if self.server_hostname is not None and (
            not isinstance(self.server_hostname, str) or not self.server_hostname.strip()
        ):
            raise ValueError(
                f"TLSPolicy.server_hostname must be a host name, not {self.server_hostname!r}"
            )

    def __repr__(self) -> str:
        # The key's path stays out: reprs end up in logs.
        key = "<hidden>" if self.key_file is not None else None
        return (
            f"TLSPolicy(ca_file={self.ca_file or 'system default'}, "
            f"cert_file={self.cert_file}, key_file={key}, "
            f"check_hostname={self.check_hostname}, server_hostname={self.server_hostname})"
        )

    def ssl_context(self) -> ssl.SSLContext:
        """A new client-side ``ssl.SSLContext`` for this policy.

        Raises ValueError when a file cannot be used (the message names the CA
        and certificate files, never the key's path or contents).
        """
        import ssl

        try:
            ctx = ssl.create_default_context(
                cafile=str(self.ca_file) if self.ca_file is not None else None
            )
        except (ssl.SSLError, OSError) as exc:
            raise ValueError(f"TLSPolicy.ca_file {self.ca_file}: cannot load: {exc}") from None
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.check_hostname = self.check_hostname
        ctx.verify_mode = ssl.CERT_REQUIRED
        if self.cert_file is not None:
            try:
                ctx.load_cert_chain(self.cert_file, self.key_file, password=_no_password)
            except (ssl.SSLError, OSError) as exc:
                reason = getattr(exc, "reason", None) or type(exc).__name__
                raise ValueError(
                    f"TLSPolicy.cert_file {self.cert_file}: cannot use it with its key: {reason}"
                ) from None
        return ctx
