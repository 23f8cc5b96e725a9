"""The logclient exception tree: no thriftpy2 or kazoo exception escapes the public API."""

from __future__ import annotations

__all__ = [
    "ClientClosedError",
    "DiscoveryError",
    "InvalidCategoryError",
    "LogClientError",
    "MessageTooLargeError",
    "QueueFullError",
    "ServerError",
    "ServerUnavailableError",
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
    """The server is down, hung, draining or cannot store now: try another."""
