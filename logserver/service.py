"""The LogService handler: Thrift calls in, storage calls out.

This is the one place where storage errors become the exceptions declared in
``log.thrift``. A client never sees a dropped connection for a bad request:
our own API gets a declared exception, Scribe's ``Log`` (whose IDL declares
none) gets ``TRY_LATER`` for conditions that pass, and an application
exception naming the problem for a batch that can never be stored.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from thriftpy2.thrift import TApplicationException

from logserver.errors import InvalidCategoryError, StorageError, StorageUnavailableError
from logserver.metrics import Metrics
from logserver.storage import AppendOutcome, MessageTooLargeError, Storage
from logwire.batchid import MAX_PRODUCER_ID
from logwire.idl import log_thrift
from logwire.packed import PackedError, record_count, unpack_messages

__all__ = ["LogServiceHandler", "ServiceLimits"]

log = structlog.get_logger(__name__)

OK = log_thrift.ResultCode.OK
TRY_LATER = log_thrift.ResultCode.TRY_LATER


@dataclass(frozen=True)
class ServiceLimits:
    """Per-request limits; the frame cap (wire) bounds the total bytes before these run."""

    max_batch_records: int = 100_000
    max_read_records: int = 10_000

    def __post_init__(self) -> None:
        if self.max_batch_records < 1 or self.max_read_records < 1:
            raise ValueError("limits must be positive")


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


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
    ) -> None:
        self._storage = storage
        self._server_id = server_id
        self._version = version
        self._metrics = metrics
        self._limits = limits or ServiceLimits()
        self._started_ns = time.time_ns()
        self._draining = threading.Event()

    def __repr__(self) -> str:
        state = "DRAINING" if self._draining.is_set() else "SERVING"
        return f"<LogServiceHandler {self._server_id} {state} {self._storage!r}>"

    def drain(self) -> None:
        """From now on refuse new batches (clients move to another server)."""
        self._draining.set()

    @property
    def draining(self) -> bool:
        return self._draining.is_set()

    # ------------------------------------------------------------------ Scribe

    def Log(self, messages: Sequence[Any]) -> int:
        """Scribe's call: OK when stored durably, TRY_LATER when the server cannot take it now."""
        return self.log_records([(m.category or b"", m.message or b"") for m in messages])

    def log_records(self, records: list[tuple[Any, Any]]) -> int:
        """``Log`` for a batch already decoded into (category, message) pairs (the wire's fast path)."""
        if self._draining.is_set():
            self._metrics.rejected.labels("draining").inc()
            return TRY_LATER
        if len(records) > self._limits.max_batch_records:
            self._metrics.rejected.labels("too_large").inc()
            raise TApplicationException(
                TApplicationException.UNKNOWN,
                f"batch of {len(records)} records exceeds {self._limits.max_batch_records}",
            )
        try:
            self._timed(lambda: self._storage.append(records), "log")
        except StorageUnavailableError as exc:
            log.warning("storage unavailable", call="Log", reason=exc.reason)
            self._metrics.rejected.labels("unavailable").inc()
            return TRY_LATER
        except (InvalidCategoryError, MessageTooLargeError) as exc:
            self._metrics.rejected.labels(_reason(exc)).inc()
            raise TApplicationException(TApplicationException.UNKNOWN, str(exc)) from exc
        return OK

    # ---------------------------------------------------------------- our API

    def Append(self, batch: Any) -> Any:
        """Idempotent append: a retried (producer_id, sequence) is acknowledged, not stored again."""
        records = [(m.category or b"", m.message or b"") for m in batch.entries or ()]
        return self.append_records(batch.producer_id, batch.sequence, records)

    def AppendPacked(self, batch: Any) -> Any:
        """``Append`` with the records in columns (see ``PackedBatch`` and :mod:`logwire.packed`)."""
        lengths = batch.lengths or b""
        messages = batch.messages or b""
        try:
            count = record_count(lengths)
            if count > self._limits.max_batch_records:
                # Checked before unpacking: the record list costs memory per record.
                self._metrics.rejected.labels("too_large").inc()
                raise log_thrift.BatchTooLarge(
                    reason="too many records in one batch",
                    limit=self._limits.max_batch_records,
                    actual=count,
                )
            runs = [(run.category or "", run.count) for run in batch.runs or ()]
            unpacked = unpack_messages(runs, lengths, messages)
        except PackedError as exc:
            self._metrics.rejected.labels("invalid_request").inc()
            raise log_thrift.InvalidRequest(reason=f"malformed packed batch: {exc}") from exc
        # The columns go to storage as they are: no (category, message) pair per record.
        return self._append(
            batch.producer_id,
            batch.sequence,
            count,
            "append_packed",
            lambda producer, sequence: self._storage.append_columns(
                runs, unpacked, producer_id=producer, sequence=sequence
            ),
        )

    def append_records(
        self,
        producer_id: str | bytes | None,
        sequence: int | None,
        records: list[tuple[Any, Any]],
        call: str = "append",
    ) -> Any:
        """``Append`` for a batch already decoded into (category, message) pairs (the wire's fast path)."""
        return self._append(
            producer_id,
            sequence,
            len(records),
            call,
            lambda producer, sequence: self._storage.append(
                records, producer_id=producer, sequence=sequence
            ),
        )

    def _append(
        self,
        producer_id: str | bytes | None,
        sequence: int | None,
        count: int,
        call: str,
        store: Callable[[str, int], AppendOutcome],
    ) -> Any:
        """The checks and answers every idempotent append shares.

        ``store(producer_id, sequence)`` stores, called with both checked.
        """
        if self._draining.is_set():
            self._metrics.rejected.labels("draining").inc()
            raise log_thrift.ServerDraining(reason="server is shutting down; use another")
        producer = _text(producer_id or "")
        if not producer or len(producer) > MAX_PRODUCER_ID or not producer.isprintable():
            raise log_thrift.InvalidRequest(
                reason=f"producer_id must be 1..{MAX_PRODUCER_ID} printable characters"
            )
        if sequence is None or sequence < 0:
            raise log_thrift.InvalidRequest(reason="sequence must be >= 0")
        if count > self._limits.max_batch_records:
            self._metrics.rejected.labels("too_large").inc()
            raise log_thrift.BatchTooLarge(
                reason="too many records in one batch",
                limit=self._limits.max_batch_records,
                actual=count,
            )
        try:
            outcome = self._timed(lambda: store(producer, sequence), call)
        except InvalidCategoryError as exc:
            self._metrics.rejected.labels("invalid_category").inc()
            raise log_thrift.InvalidCategory(
                category=_text(exc.category), reason=exc.reason
            ) from exc
        except MessageTooLargeError as exc:
            self._metrics.rejected.labels("too_large").inc()
            raise log_thrift.BatchTooLarge(
                reason=str(exc), limit=exc.limit, actual=exc.actual
            ) from exc
        except StorageUnavailableError as exc:
            self._metrics.rejected.labels("unavailable").inc()
            log.warning("storage unavailable", call="Append", reason=exc.reason)
            raise log_thrift.StorageUnavailable(reason=exc.reason) from exc
        if outcome.duplicate:
            self._metrics.duplicates.inc()
        return log_thrift.AppendResult(code=OK, duplicate=outcome.duplicate, stored=outcome.stored)

    def Read(self, category: str | bytes, position: int, limit: int) -> Any:
        """Up to ``limit`` records of ``category`` from ``position``."""
        name = _text(category or "")
        if position is None or position < 0:
            raise log_thrift.InvalidRequest(reason="position must be >= 0")
        if limit is None or limit < 1:
            raise log_thrift.InvalidRequest(reason="limit must be >= 1")
        limit = min(limit, self._limits.max_read_records)
        try:
            batch = self._storage.read(name, position, limit)
        except InvalidCategoryError as exc:
            raise log_thrift.InvalidCategory(category=name, reason=exc.reason) from exc
        except StorageUnavailableError as exc:
            raise log_thrift.StorageUnavailable(reason=exc.reason) from exc
        except StorageError as exc:
            raise log_thrift.InvalidRequest(reason=str(exc)) from exc
        records = [
            log_thrift.StoredRecord(
                category=r.category,
                message=r.message,
                producer_id=r.producer_id,
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

    def Categories(self) -> list[str]:
        return self._storage.categories()

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
        )

    def Ping(self) -> str:
        return "pong"

    # ----------------------------------------------------------------- helpers

    def _timed(self, store: Callable[[], AppendOutcome], call: str) -> AppendOutcome:
        started = time.perf_counter()
        outcome = store()
        self._metrics.append_seconds.observe(time.perf_counter() - started)
        self._metrics.batches.labels(call).inc()
        self._metrics.records.labels(call).inc(outcome.stored)
        return outcome


def _reason(exc: Exception) -> str:
    return "invalid_category" if isinstance(exc, InvalidCategoryError) else "too_large"
