"""What ZooKeeper lets a registration do, and what the operator is told when it does not.

Three jobs of :class:`logserver.registry.Registration` that are about access,
not about keeping a node alive:

- turning ``auth=("digest", "user:password")`` into the ACL our path and node
  get (:func:`digest_identity`);
- warning once when the path, although we use an ACL, lets anyone create or
  delete under it (:func:`check_path_acl`);
- translating the kazoo errors that no retry will fix (:data:`FATAL`) into a
  :class:`~logserver.errors.RegistrationError` an operator can act on
  (:func:`fatal_error`), so that no kazoo exception escapes the public API.

Clients only read, so they need no credentials; a process without them
cannot create, delete or overwrite a registration. A path that already exists
keeps its ACL: it may belong to someone else, and tightening it would lock out
servers of an older deployment still running without credentials. The password
stays in memory: never logged, never in node data or exception messages, and
kazoo's debug line that would print the auth packet is filtered out.

Events are logged under the registry's logger name, which operators filter on.
"""

from __future__ import annotations

import structlog
from kazoo.client import KazooClient
from kazoo.exceptions import (
    AuthFailedError,
    BadArgumentsError,
    InvalidACLError,
    NoAuthError,
    NoChildrenForEphemeralsError,
)
from kazoo.security import ACL

from logserver.errors import RegistrationDeniedError, RegistrationError
from logserver.registry._auth import (
    CREDENTIALS_HINT,
    WRITE_PERMS,
    Denied,
    acl_text,
    hide_auth_packets,
    registration_acl,
)

__all__ = ["FATAL", "check_path_acl", "digest_identity", "fatal_error"]

log = structlog.get_logger("logserver.registry")

# Errors no retry will fix: surfaced as RegistrationError instead of retried.
FATAL = (
    NoAuthError,
    AuthFailedError,
    InvalidACLError,
    BadArgumentsError,
    NoChildrenForEphemeralsError,
)


def digest_identity(auth: tuple[str, str]) -> tuple[list[ACL], str]:
    """The ACL for ``("digest", "user:password")`` and the user name (for log lines).

    Also keeps kazoo's debug line that would print the auth packet out of
    the logs, since from now on this process holds a password.
    """
    scheme, credential = auth
    user, sep, password = credential.partition(":")
    if scheme != "digest" or not sep or not user or not password:
        # Never echo the credential: it holds the password.
        raise RegistrationError("auth must be ('digest', 'user:password')")
    hide_auth_packets()
    return registration_acl(user, password), user


def check_path_acl(client: KazooClient, zk_path: str, user: str) -> None:
    """Warn if, although we use an ACL, anyone may create or delete under ``zk_path``.

    That is a path made without an ACL, e.g. by an older deployment; we do
    not change it ourselves: it may belong to someone else, and tightening it
    would lock out servers still running without credentials. Connection
    errors propagate (the caller retries); NoAuth on reading the ACL is
    logged, as there is nothing more we can learn.
    """
    try:
        acls, _stat = client.get_acls(zk_path)
    except NoAuthError:
        log.warning("registration_path_acl_unreadable", path=zk_path)
        return
    open_to_all = [
        a for a in acls if (a.id.scheme, a.id.id) == ("world", "anyone") and a.perms & WRITE_PERMS
    ]
    if open_to_all:
        log.warning(
            "registration_path_open",
            path=zk_path,
            acl=[acl_text(a) for a in acls],
            problem="anyone may register a server here or delete registrations",
            fix=f"setAcl {zk_path} digest:{user}:<digest>:cdrwa,world:anyone:r",
        )


def fatal_error(exc: Exception, zk_path: str, zk_hosts: str) -> RegistrationError:
    """The error an operator can act on (kazoo's alone says only 'NoAuthError()')."""
    error: RegistrationError
    if isinstance(exc, NoAuthError):
        operation = exc.operation if isinstance(exc, Denied) else "access"
        on = f" on {exc.path}" if isinstance(exc, Denied) else ""
        error = RegistrationDeniedError(
            f"not allowed to register under {zk_path}: ZooKeeper denied "
            f"{operation}{on} (NoAuth); {CREDENTIALS_HINT}",
            path=exc.path if isinstance(exc, Denied) else zk_path,
            operation=operation,
        )
    elif isinstance(exc, AuthFailedError):
        error = RegistrationError(
            f"ZooKeeper at {zk_hosts} rejected our credentials (AUTH_FAILED); {CREDENTIALS_HINT}"
        )
    else:
        error = RegistrationError(f"cannot register under {zk_path} at {zk_hosts}: {exc!r}")
    error.__cause__ = exc
    return error
