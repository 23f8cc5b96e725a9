"""The read paths of a storage: arguments checked, then the category's log reads.

``read`` (records), ``read_blocks`` (whole stored blocks), ``query_blocks``
(blocks from a time or the last records, through the segments' time indexes)
and the long poll's wait for new records. Each checks its category name and
position here, answers an unknown category as empty (position 0) or an
InvalidPositionError, and leaves the reading itself to
:class:`~logserver.storage._category.CategoryLog`, which works on a snapshot of
the segments: reads run concurrently with appends, take no storage lock, and
never see a record that could still be taken back.
"""

from __future__ import annotations

from collections.abc import Callable

from logserver.errors import InvalidPositionError, InvalidRequestError, StorageUnavailableError
from logserver.storage._batch import BatchChecker
from logserver.storage._changes import Changes
from logserver.storage._reading import TimeRange
from logserver.storage._table import CategoryTable
from logserver.storage._types import BlockBatch, QueryBatch, ReadBatch

__all__ = ["Reads"]


class Reads:
    """Reads of one storage's categories (see the module docstring); thread-safe, stateless."""

    def __init__(self, *, table: CategoryTable, checker: BatchChecker, changes: Changes) -> None:
        self._table = table
        self._checker = checker
        self._changes = changes

    def __repr__(self) -> str:
        return f"<Reads {self._table!r} {self._changes!r}>"

    def _name(self, category: str | bytes) -> str:
        if self._table.is_closed():
            raise StorageUnavailableError("storage is closed")
        return self._checker.category(category)

    def read(self, category: str | bytes, position: int, limit: int, max_bytes: int) -> ReadBatch:
        """``Storage.read``: up to ``limit`` records from ``position``."""
        name = self._name(category)
        if not isinstance(position, int) or position < 0:
            raise InvalidPositionError(name, position, "must be a non-negative integer")
        if limit < 1 or max_bytes < 1:
            raise InvalidRequestError("limit and max_bytes must be positive")
        log_ = self._table.get(name)
        if log_ is None:
            if position == 0:
                return ReadBatch([], 0, True)
            raise InvalidPositionError(name, position, "the category has no records")
        return log_.read(position, limit, max_bytes)

    def read_blocks(self, category: str | bytes, position: int, max_bytes: int) -> BlockBatch:
        """``Storage.read_blocks``: whole stored blocks from the one holding ``position``."""
        name = self._name(category)
        if not isinstance(position, int) or position < 0:
            raise InvalidPositionError(name, position, "must be a non-negative integer")
        if max_bytes < 1:
            raise InvalidRequestError("max_bytes must be positive")
        log_ = self._table.get(name)
        if log_ is None:
            if position == 0:
                return BlockBatch([], 0, True)
            raise InvalidPositionError(name, position, "the category has no records")
        return log_.read_blocks(position, max_bytes)

    def query_blocks(
        self,
        category: str | bytes,
        position: int,
        max_bytes: int,
        *,
        since_ns: int | None,
        until_ns: int | None,
        last: int,
    ) -> QueryBatch:
        """``Storage.query_blocks``: ``read_blocks`` with a time range and a start found by
        the index."""
        name = self._name(category)
        if not isinstance(position, int) or position < -1:
            raise InvalidPositionError(name, position, "must be -1 or a non-negative integer")
        if max_bytes < 1 or last < 0:
            raise InvalidRequestError("max_bytes must be positive and last >= 0")
        log_ = self._table.get(name)
        if log_ is None:
            if position in (-1, 0):
                return QueryBatch([], 0, True, 0)
            raise InvalidPositionError(name, position, "the category has no records")
        if position == -1:
            position = log_.tail_position(last) if last else 0
        start = max(position, log_.oldest_position())
        times = TimeRange(since_ns, until_ns) if since_ns or until_ns else None
        batch = log_.read_blocks(position, max_bytes, times)
        return QueryBatch(batch.blocks, batch.next_position, batch.end_of_log, start)

    def wait_for_records(
        self, category: str, position: int, timeout: float, stop: Callable[[], bool]
    ) -> bool:
        """``Storage.wait_for_records``: whether ``category`` has data past ``position``
        within ``timeout`` seconds (or ``stop()`` said to give up)."""

        def ready() -> bool:
            log_ = self._table.get(category)
            return stop() or (log_ is not None and log_.end_position() > position)

        self._changes.wait(ready, timeout)
        log_ = self._table.get(category)
        return log_ is not None and log_.end_position() > position

    def wake_readers(self) -> None:
        """Wake every :meth:`wait_for_records` to check its ``stop`` (draining)."""
        self._changes.wake_all()
