"""The logclient exception tree: no thriftpy2 or kazoo exception escapes the public API.

::

    LogClientError
    ├── ClientClosedError          log() after close()
    ├── InvalidCategoryError       (also ValueError) rejected at log() time
    ├── MessageTooLargeError       (also ValueError) rejected at log() time
    ├── QueueFullError             overflow="raise" and no room
    ├── DiscoveryError             ZooKeeper or the servers file cannot be used
    ├── ServerError                a server failed or answered: ``server``, ``reason``
    │   ├── ServerUnavailableError try another server (``phase``, ``timeout``)
    │   └── BatchRejectedError     no server will take this batch (``kind``)
    └── SpoolError                 the on-disk spool cannot be used
        ├── SpoolLockedError       another live client holds the directory
        └── SpoolFullError         internal: a batch does not fit the spool

thriftpy2's, the socket's and TLS's exceptions become these in one place,
``logclient._connection.map_errors``. Every exception with an ``__init__`` of
its own has a ``__reduce__`` that gives its arguments back, so it survives
``pickle`` (``multiprocessing``, ``concurrent.futures``) with its attributes.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Literal, get_args

__all__ = [
    "BatchRejectedError",
    "ClientClosedError",
    "DiscoveryError",
    "InvalidCategoryError",
    "LogClientError",
    "MessageTooLargeError",
    "Phase",
    "QueueFullError",
    "RejectionKind",
    "ServerError",
    "ServerUnavailableError",
    "SpoolError",
    "SpoolFullError",
    "SpoolLockedError",
]

#: How far a failed call got (see :class:`ServerUnavailableError`).
Phase = Literal["connect", "call", "answer", "downgrade"]
#: Why a server refused a batch for good (see :class:`BatchRejectedError`).
RejectionKind = Literal["invalid_category", "too_large", "invalid_request"]


class LogClientError(Exception):
    """Base of every error logclient raises."""


class ClientClosedError(LogClientError):
    """``log()`` after ``close()``."""


class InvalidCategoryError(LogClientError, ValueError):
    """The category can never be stored; rejected at ``log()`` time."""

    def __init__(self, category: str, reason: str) -> None:
        super().__init__(f"invalid category {category!r}: {reason}")
        self.category = category
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.category, self.reason)


class MessageTooLargeError(LogClientError, ValueError):
    """A message over the batching policy's byte limit; rejected at ``log()`` time."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"message of {size} bytes exceeds the limit of {limit} bytes")
        self.size = size
        self.limit = limit

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.size, self.limit)


class QueueFullError(LogClientError):
    """The queue and spool are full and the overflow policy says to raise."""


class DiscoveryError(LogClientError):
    """ZooKeeper or the servers file could not be used (bad hosts string, bad path)."""


class ServerError(LogClientError):
    """A server answered or failed; carries which server and why."""

    def __init__(self, server: str, reason: str) -> None:
        super().__init__(f"{server}: {reason}")
        self.server = server
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.server, self.reason)


class ServerUnavailableError(ServerError):
    """The server is down, hung, draining or cannot store now: try another.

    ``phase`` (a :data:`Phase`) says how far the call got: ``"connect"`` (nothing was sent, the
    server cannot have stored the batch), ``"call"`` (the batch may or may not
    have been stored: the retry keeps its producer and sequence) or
    ``"answer"`` (the server answered that it cannot take batches now) or
    ``"downgrade"`` (the server does not know the call: an older logserver; the
    sender retries at once on a fresh connection with the older call, without
    counting the server as down). ``timeout`` is True when the server did not
    answer in time.
    """

    def __init__(
        self, server: str, reason: str, *, phase: Phase = "call", timeout: bool = False
    ) -> None:
        # A Transport of the application's own may raise this: check what it says.
        if phase not in _PHASES:
            raise ValueError(f"phase must be one of {', '.join(_PHASES)}, not {phase!r}")
        super().__init__(server, reason)
        self.phase: Phase = phase
        self.timeout = timeout

    def __reduce__(self) -> tuple[Any, ...]:
        return partial(type(self), phase=self.phase, timeout=self.timeout), (
            self.server,
            self.reason,
        )


class BatchRejectedError(ServerError):
    """The server refused a batch for good: ``kind`` (a :data:`RejectionKind`) says why.

    Retrying the same batch elsewhere cannot help: the sender splits a batch that
    is too large and drops (counts and logs) what no server will ever take.
    """

    def __init__(
        self,
        server: str,
        reason: str,
        *,
        kind: RejectionKind,
        category: str | None = None,
        limit: int | None = None,
        actual: int | None = None,
    ) -> None:
        if kind not in _KINDS:
            raise ValueError(f"kind must be one of {', '.join(_KINDS)}, not {kind!r}")
        super().__init__(server, reason)
        self.kind: RejectionKind = kind
        self.category = category
        self.limit = limit
        self.actual = actual

    def __reduce__(self) -> tuple[Any, ...]:
        rebuild = partial(
            type(self),
            kind=self.kind,
            category=self.category,
            limit=self.limit,
            actual=self.actual,
        )
        return rebuild, (self.server, self.reason)


class SpoolError(LogClientError):
    """The on-disk spool cannot be used (directory not writable, bad file)."""


class SpoolLockedError(SpoolError):
    """Another live client holds this spool directory."""

    def __init__(self, directory: str) -> None:
        super().__init__(f"spool directory {directory} is in use by another live client")
        self.directory = directory

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.directory,)


class SpoolFullError(SpoolError):
    """Internal: a batch does not fit under ``SpoolPolicy.max_bytes`` (it waits in memory)."""


_PHASES: tuple[Phase, ...] = get_args(Phase)
_KINDS: tuple[RejectionKind, ...] = get_args(RejectionKind)
