"""ZooKeeper credentials and ACLs for the registration path.

With ``--zk-auth-file`` the servers authenticate with a digest identity and the
registration path and nodes get an ACL where only that identity writes and
anyone reads (clients need no credentials). The password is read from a file
(never a flag, so never in ``ps``) and kept out of every log line.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat as stat_mode
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import structlog
from kazoo.exceptions import NoAuthError
from kazoo.protocol.serialization import Auth
from kazoo.security import ACL, Permissions, make_acl, make_digest_acl

from logserver.errors import ConfigError

__all__ = [
    "CREDENTIALS_HINT",
    "WRITE_PERMS",
    "Denied",
    "acl_text",
    "denied_as",
    "hide_auth_packets",
    "read_auth_file",
    "registration_acl",
]

log = structlog.get_logger(__name__)

# Where the operator looks when ZooKeeper refuses us.
CREDENTIALS_HINT = "check --zk-auth-file"

WRITE_PERMS = Permissions.CREATE | Permissions.DELETE | Permissions.WRITE | Permissions.ADMIN


def read_auth_file(path: str | os.PathLike[str]) -> tuple[str, str]:
    """Read ``user:password`` from ``path``; return kazoo's ``("digest", "user:password")``.

    A file, not a flag, so that the password is not in ``ps`` output or shell
    history. Surrounding whitespace (a trailing newline) is ignored. Errors
    never quote the file's content. A file others may read is used, with a
    warning.
    """
    try:
        raw = Path(path).read_bytes()
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise ConfigError(f"--zk-auth-file: cannot read {path}: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigError(f"--zk-auth-file {path}: not UTF-8 text") from None
    user, sep, password = text.partition(":")
    if not sep or not user or not password or "\n" in text or "\r" in text:
        raise ConfigError(
            f"--zk-auth-file {path}: expected one line 'user:password' (neither part empty)"
        )
    if mode & (stat_mode.S_IRWXG | stat_mode.S_IRWXO):
        log.warning(
            "zk_auth_file_readable_by_others",
            path=str(path),
            mode=oct(mode & 0o777),
            fix="chmod 600",
        )
    return ("digest", text)


def registration_acl(user: str, password: str) -> list[ACL]:
    """The ACL of the registration path and nodes: ``user`` may do all, anyone may read."""
    return [make_digest_acl(user, password, all=True), make_acl("world", "anyone", read=True)]


def acl_text(acl: ACL) -> str:
    """An ACL entry for a log line; a digest's hash is left out (it can be cracked offline)."""
    perms = "".join(
        letter
        for letter, bit in (
            ("c", Permissions.CREATE),
            ("d", Permissions.DELETE),
            ("r", Permissions.READ),
            ("w", Permissions.WRITE),
            ("a", Permissions.ADMIN),
        )
        if acl.perms & bit
    )
    ident = acl.id.id.split(":", 1)[0] if acl.id.scheme == "digest" else acl.id.id
    return f"{acl.id.scheme}:{ident}:{perms}"


class _HideAuthPackets(logging.Filter):
    """Drop kazoo's debug line "Sending request: Auth(... auth='user:password')"."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        return not any(isinstance(arg, Auth) for arg in args)


def hide_auth_packets() -> None:
    logger = logging.getLogger("kazoo.client")
    if not any(isinstance(f, _HideAuthPackets) for f in logger.filters):
        logger.addFilter(_HideAuthPackets())


class Denied(NoAuthError):
    """Internal: ZooKeeper said NoAuth to ``operation`` on ``path``."""

    def __init__(self, operation: str, path: str) -> None:
        super().__init__(f"{operation} on {path}")
        self.operation = operation
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.operation, self.path)


@contextlib.contextmanager
def denied_as(operation: str, path: str) -> Iterator[None]:
    """Say which operation on which node ZooKeeper refused (NoAuth alone says neither)."""
    try:
        yield
    except Denied:
        raise
    except NoAuthError as exc:
        raise Denied(operation, path) from exc
