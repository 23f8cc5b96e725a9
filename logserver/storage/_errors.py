"""The storage leaves of the logserver exception tree.

``logserver/errors.py`` holds the errors every layer shares; these are the ones
only storage raises. They all derive from :class:`InvalidRequestError`: the
request itself is wrong, so retrying it unchanged fails the same way, which is
what the Thrift layer needs to know to answer ``InvalidRequest`` or
``BatchTooLarge`` rather than "try later".
"""

from __future__ import annotations

from logserver.errors import StorageError

__all__ = ["InvalidPositionError", "InvalidRequestError", "MessageTooLargeError"]


class InvalidRequestError(StorageError):
    """The caller asked for something storage can never do (bad argument); nothing was written."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class MessageTooLargeError(InvalidRequestError):
    """A message is larger than the policy's ``max_message_bytes``; the whole batch was refused."""

    def __init__(self, limit: int, actual: int) -> None:
        super().__init__(f"message of {actual} bytes exceeds the limit of {limit} bytes")
        self.limit = limit
        self.actual = actual


class InvalidPositionError(InvalidRequestError):
    """A read position is not the start of a record in the category (nor its end)."""

    def __init__(self, category: str, position: int, reason: str = "not a record boundary") -> None:
        super().__init__(f"position {position} in category {category!r}: {reason}")
        self.category = category
        self.position = position
