"""The handler thriftpy2 calls: every method of ``LogService``, each handed to its part.

:class:`LogServiceHandler` owns what the calls share (the storage, the
server's identity, the draining flag, the limits and metrics) and builds the
parts that own the calls: :class:`~logserver.service._writes.WriteCalls`,
:class:`~logserver.service._reads.ReadCalls` and
:class:`~logserver.service._copies.CopyCalls`. Its methods carry the IDL's
names (the transport dispatches by them); the status calls are answered here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from logserver.metrics import Metrics
from logserver.service._context import CallContext
from logserver.service._copies import CopyCalls
from logserver.service._errors import Call, Refusals
from logserver.service._limits import ServiceLimits
from logserver.service._reads import ReadCalls
from logserver.service._writes import WriteCalls
from logserver.storage import Storage
from logwire.idl import log_thrift

__all__ = ["LogServiceHandler"]


class LogServiceHandler:
    """Implements every method of ``LogService``; thread-safe (one thread per connection)."""

    def __init__(
        self,
        storage: Storage,
        *,
        server_id: str,
        version: str,
        metrics: Metrics,
        limits: ServiceLimits | None = None,
        process_id: str = "",
        zone: str = "",
        repair_identities: frozenset[str] = frozenset(),
    ) -> None:
        self._storage = storage
        self._server_id = server_id
        self._process_id = process_id
        self._zone = zone
        self._version = version
        self._started_ns = time.time_ns()
        self._draining = threading.Event()
        context = CallContext(
            storage=storage,
            metrics=metrics,
            limits=limits or ServiceLimits(),
            refusals=Refusals(metrics),
            draining=self.draining_now,
        )
        self._writes = WriteCalls(context)
        self._reads = ReadCalls(context)
        self._copies = CopyCalls(context, repair_identities=repair_identities)

    def __repr__(self) -> str:
        state = "DRAINING" if self._draining.is_set() else "SERVING"
        return f"<LogServiceHandler {self._server_id} {state} {self._storage!r}>"

    def drain(self) -> None:
        """From now on refuse new batches (clients move to another server); readers waiting
        for new records are answered now."""
        self._draining.set()
        self._storage.wake_readers()

    def draining_now(self) -> bool:
        return self._draining.is_set()

    @property
    def draining(self) -> bool:
        return self._draining.is_set()

    # ------------------------------------------------------------------ Scribe

    def Log(self, messages: Sequence[Any]) -> int:
        """Scribe's call: OK when stored durably, TRY_LATER when the server cannot take it now."""
        return self._writes.log(messages)

    def log_records(self, records: list[tuple[Any, Any]]) -> int:
        """``Log`` for a batch already decoded into (category, message) pairs (the wire's fast path)."""
        return self._writes.log_records(records)

    # ---------------------------------------------------------------- our API

    def Append(self, batch: Any) -> Any:
        """Idempotent append: a retried (producer, sequence) is acknowledged, not stored again."""
        return self._writes.append(batch)

    def AppendPacked(self, batch: Any) -> Any:
        """``Append`` with the records in columns (see ``PackedBatch`` and :mod:`logwire.packed`)."""
        return self._writes.append_packed(batch)

    def AppendCompressed(self, batch: Any) -> Any:
        """``AppendPacked`` with the columns compressed (see ``CompressedBatch``)."""
        return self._writes.append_compressed(batch)

    def append_records(
        self,
        producer: str | bytes | None,
        sequence: int | None,
        records: list[tuple[Any, Any]],
        call: Call = "append",
    ) -> Any:
        """``Append`` for a batch already decoded into (category, message) pairs (the wire's fast path)."""
        return self._writes.append_records(producer, sequence, records, call)

    def Read(self, category: str | bytes, position: int, limit: int) -> Any:
        """Up to ``limit`` records of ``category`` from ``position``."""
        return self._reads.read(category, position, limit)

    def ReadBlocks(self, category: str | bytes, position: int, max_bytes: int) -> Any:
        """Whole stored blocks of ``category`` from the one holding ``position`` (see ``log.thrift``)."""
        return self._reads.read_blocks(category, position, max_bytes)

    def QueryBlocks(self, query: Any) -> Any:
        """``ReadBlocks`` with filters, a start from a time or a count, and a long poll
        (see ``BlockQuery`` in ``log.thrift`` and :mod:`logserver.querying`)."""
        return self._reads.query_blocks(query)

    # ---------------------------------------------------- copies (logserver repair)

    def Holdings(self, category: str | bytes, after: str | bytes, limit: int) -> Any:
        """What the server holds of ``category``, per producer, a page at a time."""
        return self._copies.holdings(category, after, limit)

    def ReadBatches(
        self,
        category: str | bytes,
        wanted: Sequence[Any],
        position: int,
        stop_position: int,
        max_bytes: int,
    ) -> Any:
        """The stored blocks of the wanted batches (see ``log.thrift``)."""
        return self._copies.read_batches(category, wanted, position, stop_position, max_bytes)

    def Restore(self, category: str | bytes, blocks: Sequence[Any]) -> Any:
        """Store copies of batch parts with their original identity (see ``log.thrift``)."""
        return self._copies.restore(category, blocks)

    # ------------------------------------------------------------------ status

    def Categories(self) -> list[str]:
        return self._storage.categories()

    def CategoryStats(self) -> list[Any]:
        """Every category with its records, bytes and first and last receive time."""
        return self._reads.category_stats()

    def Status(self) -> Any:
        stats = self._storage.stats()
        return log_thrift.ServerStatus(
            server_id=self._server_id,
            version=self._version,
            state="DRAINING" if self._draining.is_set() else "SERVING",
            started_ns=self._started_ns,
            records_stored=stats.records_stored,
            batches_stored=stats.batches_stored,
            duplicates=stats.duplicates,
            categories=self._storage.categories(),
            process_id=self._process_id,
            zone=self._zone,
        )

    def Ping(self) -> str:
        return "pong"
