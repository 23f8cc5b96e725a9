"""The logwire exception tree: data from the wire or from ZooKeeper that cannot be used.

::

    LogWireError
    ├── PackedError          a packed batch's columns disagree with each other
    ├── CompressionError     compressed columns that cannot (or may not) be decoded
    ├── BlockError           a stored block from ReadBlocks that does not hold together
    ├── HoldingsError        spans (Holdings) or ranges (ReadBatches) that do not add up
    ├── MemberFormatError    a znode's data is not a ServerSet member we can use
    ├── InventoryFormatError a data inventory record (ZooKeeper) we cannot use
    ├── EndpointFormatError  a string is not ``host:port``
    ├── ServersFileError     the discovery agent's file cannot be used (torn, garbage, newer)
    └── GrepError            a --grep pattern that cannot be compiled (or needs RE2 that is missing)

Each leaf is also a ``ValueError`` (as it was before this tree existed), so
callers that catch ``ValueError`` keep working. logserver and logclient map
these at their own boundaries: a malformed packed batch becomes the declared
``InvalidRequest``, a malformed member is skipped by discovery.
"""

from __future__ import annotations

__all__ = [
    "BlockError",
    "CompressionError",
    "EndpointFormatError",
    "GrepError",
    "HoldingsError",
    "InventoryFormatError",
    "LogWireError",
    "MemberFormatError",
    "PackedError",
    "ServersFileError",
]


class LogWireError(Exception):
    """Base of every error logwire raises."""


class PackedError(LogWireError, ValueError):
    """The columns of a packed batch disagree with each other; the batch is malformed."""


class CompressionError(LogWireError, ValueError):
    """Compressed columns that cannot (or may not) be decoded: an unknown codec, a corrupt
    frame, a size that disagrees with the declared one, or one over the caller's cap."""


class BlockError(LogWireError, ValueError):
    """A stored block from ``ReadBlocks`` whose small columns (index runs, positions, count)
    do not hold together."""


class HoldingsError(LogWireError, ValueError):
    """Spans (``Holdings``) or sequence ranges (``ReadBatches``) that do not hold together."""


class MemberFormatError(LogWireError, ValueError):
    """A znode's data is not a ServerSet member we can use."""


class InventoryFormatError(LogWireError, ValueError):
    """A data inventory record (``logwire.inventory``) we cannot use; ``node`` names its znode."""

    def __init__(self, message: str, node: str = "") -> None:
        super().__init__(message)
        self.node = node

    def __reduce__(self) -> tuple[type[InventoryFormatError], tuple[str, str]]:
        return type(self), (str(self), self.node)


class EndpointFormatError(LogWireError, ValueError):
    """A string is not ``host:port`` with a port number."""


class ServersFileError(LogWireError, ValueError):
    """The servers file is not one this reader can use: torn, garbage, or a newer version."""


class GrepError(LogWireError, ValueError):
    """A ``--grep`` pattern that cannot be compiled, or a linear-time engine that is missing."""
