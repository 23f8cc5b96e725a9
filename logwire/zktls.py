"""How a process talks TLS to ZooKeeper: one frozen policy for the server, the client and the CLI.

ZooKeeper offers TLS on its ``secureClientPort`` (Netty connection factory).
This module knows nothing about kazoo beyond the names of its keyword
arguments: :meth:`ZkTLSPolicy.kazoo_kwargs` maps the policy onto them, so
``logclient`` can take a policy without importing kazoo.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ZkTLSPolicy"]


@dataclass(frozen=True)
class ZkTLSPolicy:
    """Connect to ZooKeeper over TLS, verifying its certificate.

    ``ca_file``: PEM bundle of the CA(s) that signed the ZooKeeper servers'
    certificates. ``cert_file``/``key_file`` (together or not at all): our
    client certificate, for an ensemble with ``ssl.clientAuth=need``.
    ``check_hostname`` (default True, as ZooKeeper's own Java client does):
    the certificate must name the host as written in the connection string,
    so a certificate of another machine signed by the same CA is refused.

    The certificate is always verified: a TLS connection to an unauthenticated
    ZooKeeper would protect nothing. (kazoo also trusts the system's default
    CAs besides ``ca_file``.) Paths are checked when the policy is made,
    so a typo fails at configuration time rather than as a connect loop.
    """

    ca_file: str | os.PathLike[str]
    cert_file: str | os.PathLike[str] | None = None
    key_file: str | os.PathLike[str] | None = None
    check_hostname: bool = True

    def __post_init__(self) -> None:
        for name in ("ca_file", "cert_file", "key_file"):
            value = getattr(self, name)
            if value is None:
                if name == "ca_file":
                    raise ValueError("ZkTLSPolicy.ca_file is required")
                continue
            if not isinstance(value, str | os.PathLike) or not str(value):
                raise ValueError(f"ZkTLSPolicy.{name} must be a path, not {value!r}")
            path = os.fspath(value)
            if not Path(path).is_file():
                raise ValueError(f"ZkTLSPolicy.{name}: no such file: {path}")
            object.__setattr__(self, name, path)
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("ZkTLSPolicy.cert_file and key_file go together")
        if not isinstance(self.check_hostname, bool):
            raise ValueError(
                f"ZkTLSPolicy.check_hostname must be a bool, not {self.check_hostname!r}"
            )

    def kazoo_kwargs(self) -> dict[str, Any]:
        """The keyword arguments that make a ``KazooClient`` use this policy."""
        return {
            "use_ssl": True,
            "ca": self.ca_file,
            "certfile": self.cert_file,
            "keyfile": self.key_file,
            "verify_certs": True,
            "check_hostname": self.check_hostname,
        }
