"""The calls that read: ``Read``, ``ReadBlocks``, ``QueryBlocks`` and ``CategoryStats``.

Each checks its arguments, caps what one answer may carry at the server's
:class:`~logserver.service.ServiceLimits` (a client asking for more gets less
and continues from ``next_position``), and turns storage's answer into
``log.thrift``'s. A refused read is answered with a declared exception but not
counted as a refused batch. ``QueryBlocks`` is :mod:`logserver.querying`'s,
which may long-poll; a draining server answers it at once.
"""

from __future__ import annotations

import time
from typing import Any

from logserver.errors import InvalidPositionError, InvalidRequestError
from logserver.querying import Query, run_query
from logserver.service._context import CallContext
from logserver.service._convert import text, thrift_blocks
from logwire.idl import log_thrift

__all__ = ["ReadCalls"]


class ReadCalls:
    """The reading calls of ``LogService`` (see the module docstring); thread-safe."""

    def __init__(self, context: CallContext) -> None:
        self._storage = context.storage
        self._limits = context.limits
        self._refusals = context.refusals
        self._draining = context.draining

    def __repr__(self) -> str:
        return f"<ReadCalls {self._limits!r}>"

    def read(self, category: str | bytes, position: int, limit: int) -> Any:
        """Up to ``limit`` records of ``category`` from ``position``."""
        name = text(category or "")
        with self._refusals.declared("read"):
            if position is None or position < 0:
                raise InvalidRequestError("position must be >= 0")
            if limit is None or limit < 1:
                raise InvalidRequestError("limit must be >= 1")
            batch = self._storage.read(name, position, min(limit, self._limits.max_read_records))
        records = [
            log_thrift.StoredRecord(
                category=r.category,
                message=r.message,
                producer=r.producer,
                sequence=r.sequence,
                index=r.index,
                received_ns=r.received_ns,
                position=r.position,
            )
            for r in batch.records
        ]
        return log_thrift.ReadResult(
            records=records, next_position=batch.next_position, end_of_log=batch.end_of_log
        )

    def read_blocks(self, category: str | bytes, position: int, max_bytes: int) -> Any:
        """Whole stored blocks of ``category`` from the one holding ``position`` (see ``log.thrift``)."""
        name = text(category or "")
        with self._refusals.declared("read"):
            if position is None or position < 0:
                raise InvalidRequestError("position must be >= 0")
            if max_bytes is None or max_bytes < 1:
                raise InvalidRequestError("max_bytes must be >= 1")
            batch = self._storage.read_blocks(
                name, position, min(max_bytes, self._limits.max_read_bytes)
            )
        return log_thrift.BlockReadResult(
            blocks=thrift_blocks(batch.blocks),
            next_position=batch.next_position,
            end_of_log=batch.end_of_log,
        )

    def query_blocks(self, query: Any) -> Any:
        """``ReadBlocks`` with filters, a start from a time or a count, and a long poll
        (see ``BlockQuery`` in ``log.thrift`` and :mod:`logserver.querying`)."""
        with self._refusals.declared("read"):
            checked = Query.check(query, self._limits.query)
            try:
                batch = run_query(self._storage, checked, self._limits.query, self._draining)
            except InvalidPositionError as exc:
                raise log_thrift.InvalidPosition(reason=str(exc), position=exc.position) from exc
        return log_thrift.BlockQueryResult(
            blocks=thrift_blocks(batch.blocks),
            next_position=batch.next_position,
            end_of_log=batch.end_of_log,
            start_position=batch.start_position,
            server_ns=time.time_ns(),
        )

    def category_stats(self) -> list[Any]:
        """Every category with its records, bytes and first and last receive time."""
        with self._refusals.declared("read"):
            stats = self._storage.category_stats()
        return [
            log_thrift.CategoryInfo(
                category=c.category,
                records=c.records,
                bytes=c.bytes,
                first_ns=c.first_ns,
                last_ns=c.last_ns,
            )
            for c in stats
        ]
