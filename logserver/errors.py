"""The logserver exception tree.

Everything the server raises on purpose derives from :class:`LogServerError`;
the Thrift layer maps each leaf to an exception declared in ``log.thrift``.
"""

from __future__ import annotations

__all__ = [
    "AddressInUseError",
    "ConfigError",
    "InvalidCategoryError",
    "ListenError",
    "LogServerError",
    "RegistrationDeniedError",
    "RegistrationError",
    "StorageError",
    "StorageLockedError",
    "StorageUnavailableError",
]


class LogServerError(Exception):
    """Base of every error logserver raises on purpose."""


class ConfigError(LogServerError):
    """A flag, environment variable or config file value is invalid."""


class StorageError(LogServerError):
    """Base of the storage errors."""


class InvalidCategoryError(StorageError):
    """A category name is not a safe path component."""

    def __init__(self, category: str | bytes, reason: str) -> None:
        super().__init__(f"invalid category {category!r}: {reason}")
        self.category = category
        self.reason = reason


class StorageUnavailableError(StorageError):
    """Storage cannot take writes now (disk full, read-only, I/O error); nothing was stored."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StorageLockedError(StorageError):
    """Another process holds the data directory."""


class RegistrationError(LogServerError):
    """Registration in ZooKeeper failed in a way retrying will not fix (bad path, no auth)."""


class RegistrationDeniedError(RegistrationError):
    """ZooKeeper refused ``operation`` on ``path`` (NoAuth): missing or wrong credentials."""

    def __init__(self, message: str, *, path: str, operation: str) -> None:
        super().__init__(message)
        self.path = path
        self.operation = operation


class ListenError(LogServerError):
    """The server could not bind or listen on its address."""

    def __init__(self, host: str, port: int, reason: str) -> None:
        super().__init__(f"cannot listen on {host}:{port}: {reason}")
        self.host = host
        self.port = port
        self.reason = reason


class AddressInUseError(ListenError):
    """Another socket already listens on this address (no port sharing, by design)."""
