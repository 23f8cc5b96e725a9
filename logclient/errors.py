"""The logclient exception tree: no thriftpy2 or kazoo exception escapes the public API."""

from __future__ import annotations

__all__ = [
    "BatchRejectedError",
    "ClientClosedError",
    "DiscoveryError",
    "InvalidCategoryError",
    "LogClientError",
    "MessageTooLargeError",
    "QueueFullError",
    "ServerError",
    "ServerUnavailableError",
    "SpoolError",
    "SpoolLockedError",
]


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


class MessageTooLargeError(LogClientError, ValueError):
    """A message over the batching policy's byte limit; rejected at ``log()`` time."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"message of {size} bytes exceeds the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class QueueFullError(LogClientError):
    """The queue and spool are full and the overflow policy says to raise."""


class DiscoveryError(LogClientError):
    """ZooKeeper could not be used (bad hosts string, bad path)."""


class ServerError(LogClientError):
    """A server answered or failed; carries which server and why."""

    def __init__(self, server: str, reason: str) -> None:
        super().__init__(f"{server}: {reason}")
        self.server = server
        self.reason = reason


class ServerUnavailableError(ServerError):
    """The server is down, hung, draining or cannot store now: try another.

    ``phase`` says how far the call got: ``"connect"`` (nothing was sent, the
    server cannot have stored the batch), ``"call"`` (the batch may or may not
    have been stored: the retry keeps its producer id and sequence) or
    ``"answer"`` (the server answered that it cannot take batches now) or
    ``"downgrade"`` (the server does not know the call: an older logserver; the
    sender retries at once on a fresh connection with the older call, without
    counting the server as down). ``timeout`` is True when the server did not
    answer in time.
    """

    def __init__(
        self, server: str, reason: str, *, phase: str = "call", timeout: bool = False
    ) -> None:
        super().__init__(server, reason)
        self.phase = phase
        self.timeout = timeout


class BatchRejectedError(ServerError):
    """The server refused a batch for good (bad category, too large, bad request).

    Retrying the same batch elsewhere cannot help: the sender splits a batch that
    is too large and drops (counts and logs) what no server will ever take.
    """

    def __init__(
        self,
        server: str,
        reason: str,
        *,
        kind: str,
        category: str | None = None,
        limit: int | None = None,
        actual: int | None = None,
    ) -> None:
        super().__init__(server, reason)
        self.kind = kind
        self.category = category
        self.limit = limit
        self.actual = actual


class SpoolError(LogClientError):
    """The on-disk spool cannot be used (directory not writable, bad file)."""


class SpoolLockedError(SpoolError):
    """Another live client holds this spool directory."""

    def __init__(self, directory: str) -> None:
        super().__init__(f"spool directory {directory} is in use by another live client")
        self.directory = directory
