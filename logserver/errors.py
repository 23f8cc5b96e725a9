"""The logserver exception tree: everything the server raises on purpose.

::

    LogServerError
    ├── ConfigError                  a flag, variable or file value is invalid
    ├── StorageError
    │   ├── InvalidCategoryError     the category is not a safe path component
    │   ├── StorageUnavailableError  cannot store now (disk full, I/O error, closed)
    │   ├── StorageLockedError       another process holds the data directory
    │   └── InvalidRequestError      the request is wrong; retrying it fails the same way
    │       ├── BatchTooLargeError   over a record or byte limit
    │       │   └── MessageTooLargeError
    │       └── InvalidPositionError a read position that is not a record boundary
    ├── FrameRejectedError           a frame is not a well-formed Thrift request
    ├── RegistrationError
    │   └── RegistrationDeniedError  ZooKeeper said NoAuth
    ├── ListenError
    │   └── AddressInUseError
    ├── DiscoveryAgentError          the agent's file is another agent's, or cannot be written
    ├── TLSMismatchError             a reader and a server disagree on TLS (handshake, certificate)
    └── LaunchError                  a launched process did not start (tools only)

The leaves live here, not in the packages that raise them, so that this one
module is the whole tree (and imports nothing: storage raises these without
knowing anything of Thrift or ZooKeeper). :mod:`logserver.service` is the one
place where they become the exceptions declared in ``log.thrift``.

Every exception with an ``__init__`` of its own has a ``__reduce__`` that
gives its arguments back, so it survives ``pickle`` (``multiprocessing``,
``concurrent.futures``) with its attributes.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from logserver.transport._guard import Message

__all__ = [
    "AddressInUseError",
    "BatchTooLargeError",
    "ConfigError",
    "DiscoveryAgentError",
    "FrameRejectedError",
    "InvalidCategoryError",
    "InvalidPositionError",
    "InvalidRequestError",
    "LaunchError",
    "ListenError",
    "LogServerError",
    "MessageTooLargeError",
    "RegistrationDeniedError",
    "RegistrationError",
    "StorageError",
    "StorageLockedError",
    "StorageUnavailableError",
    "TLSMismatchError",
]


class LogServerError(Exception):
    """Base of every error logserver raises on purpose."""


class ConfigError(LogServerError):
    """A flag, environment variable or config file value is invalid."""


# ------------------------------------------------------------------------- storage


class StorageError(LogServerError):
    """Base of the storage errors."""


class InvalidCategoryError(StorageError):
    """A category name is not a safe path component."""

    def __init__(self, category: str | bytes, reason: str) -> None:
        super().__init__(f"invalid category {category!r}: {reason}")
        self.category = category
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.category, self.reason)


class StorageUnavailableError(StorageError):
    """Storage cannot take writes now (disk full, read-only, I/O error); nothing was stored."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.reason,)


class StorageLockedError(StorageError):
    """Another process holds the data directory."""


class InvalidRequestError(StorageError):
    """The caller asked for something that can never be done (bad argument); nothing was written.

    Retrying the same request fails the same way, which is what the Thrift
    layer needs to know to answer ``InvalidRequest`` or ``BatchTooLarge``
    rather than "try later".
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.reason,)


class BatchTooLargeError(InvalidRequestError):
    """A batch is over a limit (``limit`` and ``actual`` in the limit's unit); nothing was stored.

    A client can split such a batch, which it cannot do with any other
    invalid request.
    """

    def __init__(self, reason: str, limit: int, actual: int) -> None:
        super().__init__(reason)
        self.limit = limit
        self.actual = actual

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.reason, self.limit, self.actual)


class MessageTooLargeError(BatchTooLargeError):
    """A message is larger than the policy's ``max_message_bytes``; the whole batch was refused."""

    def __init__(self, limit: int, actual: int) -> None:
        super().__init__(
            f"message of {actual} bytes exceeds the limit of {limit} bytes", limit, actual
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.limit, self.actual)


class InvalidPositionError(InvalidRequestError):
    """A read position is not the start of a record in the category (nor its end)."""

    def __init__(self, category: str, position: int, reason: str = "not a record boundary") -> None:
        super().__init__(f"position {position} in category {category!r}: {reason}")
        self.category = category
        self.position = position
        self.reason = reason  # the cause alone, as InvalidCategoryError's; str() has it all

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.category, self.position, self.reason)


# ----------------------------------------------------------------------- transport


class FrameRejectedError(LogServerError):
    """A frame is not a well-formed, reasonably sized Thrift binary-protocol request.

    ``message`` holds the message header when it was readable, so the server can
    answer with a ``TApplicationException`` the client matches to its call;
    ``None`` means the bytes are not a Thrift message at all.
    """

    def __init__(self, reason: str, message: Message | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.reason, self.message)


# ------------------------------------------------------------------------ registry


class RegistrationError(LogServerError):
    """Registration in ZooKeeper failed in a way retrying will not fix (bad path, no auth)."""


class RegistrationDeniedError(RegistrationError):
    """ZooKeeper refused ``operation`` on ``path`` (NoAuth): missing or wrong credentials."""

    def __init__(self, message: str, *, path: str, operation: str) -> None:
        super().__init__(message)
        self.path = path
        self.operation = operation

    def __reduce__(self) -> tuple[Any, ...]:
        return partial(type(self), path=self.path, operation=self.operation), self.args


# -------------------------------------------------------------------------- server


class ListenError(LogServerError):
    """The server could not bind or listen on its address."""

    def __init__(self, host: str, port: int, reason: str) -> None:
        super().__init__(f"cannot listen on {host}:{port}: {reason}")
        self.host = host
        self.port = port
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.host, self.port, self.reason)


class AddressInUseError(ListenError):
    """Another socket already listens on this address (no port sharing, by design)."""


# -------------------------------------------------------------------------- agent


class DiscoveryAgentError(LogServerError):
    """The discovery agent cannot run: ``file`` is held by another agent or cannot be written."""

    def __init__(self, message: str, *, file: str) -> None:
        super().__init__(message)
        self.file = file

    def __reduce__(self) -> tuple[Any, ...]:
        return partial(type(self), file=self.file), self.args


# --------------------------------------------------------------------------- tools


class LaunchError(LogServerError, RuntimeError):
    """A launched process (ZooKeeper, logserver) did not start or become ready in time.

    Raised by :mod:`logserver.tools.launcher` only; also a ``RuntimeError``, as
    it was before it joined this tree.
    """


class TLSMismatchError(LogServerError):
    """A reader and a server do not agree on TLS: the handshake or the certificate failed.

    Trying again changes nothing: a one-off read gives up on that server at once.
    """
