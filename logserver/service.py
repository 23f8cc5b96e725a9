"""The LogService handler: Thrift calls in, storage calls out.

:func:`declared` is the one place where logserver's errors become the
exceptions declared in ``log.thrift`` (as httpcore's ``map_exceptions`` does
for sockets): storage's, the service's own argument checks (which raise the
same :class:`~logserver.errors.InvalidRequestError` leaves), and a malformed
packed batch. A client never sees a dropped connection for a bad request:
our own API gets a declared exception, Scribe's ``Log`` (whose IDL declares
none) gets ``TRY_LATER`` for conditions that pass, and an application
exception naming the problem for a batch that can never be stored.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog
from thriftpy2.thrift import TApplicationException

from logserver.errors import (
    BatchTooLargeError,
    InvalidCategoryError,
    InvalidPositionError,
    InvalidRequestError,
    LogServerError,
    StorageUnavailableError,
)
from logserver.metrics import Metrics
from logserver.querying import Query, QueryLimits, run_query
from logserver.storage import AppendOutcome, CopiedBlock, Storage, StoredBlock
from logserver.transport import client_identity
from logwire.batchid import producer_problem
from logwire.blocks import pack_positions, pack_runs, unpack_runs
from logwire.errors import BlockError, HoldingsError, LogWireError, PackedError
from logwire.holdings import pack_spans, unpack_ranges
from logwire.idl import log_thrift
from logwire.packed import record_count, unpack_messages

__all__ = ["LogServiceHandler", "ServiceLimits", "declared"]

log = structlog.get_logger(__name__)

OK = log_thrift.ResultCode.OK
TRY_LATER = log_thrift.ResultCode.TRY_LATER

#: Why a batch was refused: the ``reason`` label of ``logserver_rejected_batches``.
Rejection = Literal["draining", "unavailable", "invalid_category", "too_large", "invalid_request"]
#: A call of ``log.thrift`` that stores (the ``call`` label of the batch counters).
Call = Literal["log", "append", "append_packed", "append_compressed", "restore"]


def declared(exc: LogServerError | LogWireError) -> tuple[Rejection, Exception] | None:
    """The exception ``log.thrift`` declares for one of ours, and why it counts as a rejection.

    None for an error no declared exception fits (a locked data directory...):
    the caller lets it through, and the transport answers ``INTERNAL_ERROR``.
    """
    if isinstance(exc, InvalidCategoryError):
        category = _text(exc.category)
        return "invalid_category", log_thrift.InvalidCategory(category=category, reason=exc.reason)
    if isinstance(exc, BatchTooLargeError):
        return "too_large", log_thrift.BatchTooLarge(
            reason=exc.reason, limit=exc.limit, actual=exc.actual
        )
    if isinstance(exc, StorageUnavailableError):
        return "unavailable", log_thrift.StorageUnavailable(reason=exc.reason)
    if isinstance(exc, InvalidRequestError):
        return "invalid_request", log_thrift.InvalidRequest(reason=str(exc))
    if isinstance(exc, PackedError):
        return "invalid_request", log_thrift.InvalidRequest(reason=f"malformed packed batch: {exc}")
    if isinstance(exc, BlockError | HoldingsError):
        return "invalid_request", log_thrift.InvalidRequest(reason=str(exc))
    return None


@dataclass(frozen=True)
class ServiceLimits:
    """Per-request limits; the frame cap (wire) bounds the total bytes before these run."""

    max_batch_records: int = 100_000
    max_read_records: int = 10_000
    #: What one ``ReadBlocks`` answer carries at most (stored bytes; one block always).
    max_read_bytes: int = 8 * 2**20
    #: What one ``QueryBlocks`` may cost (its bytes, work and long poll).
    query: QueryLimits = field(default_factory=QueryLimits)
    #: Producers in one ``Holdings`` answer at most, and about how many bytes of spans.
    max_holdings_producers: int = 10_000
    max_holdings_bytes: int = 4 * 2**20

    def __post_init__(self) -> None:
        if (
            min(
                self.max_batch_records,
                self.max_read_records,
                self.max_read_bytes,
                self.max_holdings_producers,
                self.max_holdings_bytes,
            )
            < 1
        ):
            raise ValueError("limits must be positive")


def _producer(producer: str | bytes | None) -> str:
    """The producer a batch is stored and deduplicated under; InvalidRequestError if invalid.

    With mutual TLS it is ``<client identity>/<producer>``: the client's
    certificate names its own namespace, so no client can send batches under
    another's producer (whose next sequences it could read from ``Read``) and
    have the real ones answered "duplicate" and never stored; and readers,
    which key records by producer, keep the two apart too.
    """
    if isinstance(producer, bytes):
        try:
            text = producer.decode("ascii")
        except UnicodeDecodeError:
            raise InvalidRequestError("producer must be printable ASCII") from None
    else:
        text = producer or ""
    problem = producer_problem(text)
    if problem is not None:
        raise InvalidRequestError(problem)
    identity = client_identity()
    return f"{identity}/{text}" if identity else text


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _thrift_blocks(blocks: Sequence[StoredBlock]) -> list[Any]:
    """Storage's blocks as ``log.thrift``'s ``StoredBlock``."""
    return [
        log_thrift.StoredBlock(
            position=b.position,
            producer=b.producer,
            sequence=b.sequence,
            received_ns=b.received_ns,
            count=b.records,
            batch_count=b.batch_count,
            index_runs=pack_runs(b.index_runs),
            codec=b.codec,
            raw_bytes=b.raw_bytes,
            columns=b.payload,
            positions=pack_positions(b.positions) if b.positions is not None else b"",
        )
        for b in blocks
    ]


def _copied_block(block: Any) -> CopiedBlock:
    """A ``StoredBlock`` to restore, its small columns checked (its payload is storage's to check)."""
    count = block.count if isinstance(block.count, int) else 0
    if count < 1:
        raise InvalidRequestError(f"a block of {count} records")
    for name in ("sequence", "received_ns", "batch_count", "codec", "raw_bytes"):
        if not isinstance(getattr(block, name), int):
            raise InvalidRequestError(f"a copied block needs its {name}")
    producer = block.producer or ""
    if isinstance(producer, bytes):
        try:
            producer = producer.decode("ascii")
        except UnicodeDecodeError:
            raise InvalidRequestError("producer must be printable ASCII") from None
    return CopiedBlock(
        producer=producer,
        sequence=block.sequence,
        received_ns=block.received_ns,
        batch_count=block.batch_count,
        index_runs=unpack_runs(block.index_runs or b"", count),
        codec=block.codec,
        raw_bytes=block.raw_bytes,
        payload=block.columns or b"",
    )


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
        self._repair_identities = repair_identities
        self._server_id = server_id
        self._process_id = process_id
        self._zone = zone
        self._version = version
        self._metrics = metrics
        self._limits = limits or ServiceLimits()
        self._started_ns = time.time_ns()
        self._draining = threading.Event()

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
        return self.log_records([(m.category or b"", m.message or b"") for m in messages])

    def log_records(self, records: list[tuple[Any, Any]]) -> int:
        """``Log`` for a batch already decoded into (category, message) pairs (the wire's fast path)."""
        if self._draining.is_set():
            self._metrics.rejected.labels("draining").inc()
            return TRY_LATER
        try:
            self._check_count(len(records))
            self._timed(lambda: self._storage.append(records), "log")
        except (LogServerError, LogWireError) as exc:
            rejection, _ = self._rejected(exc, "log")
            if rejection == "unavailable":
                return TRY_LATER
            # Scribe's IDL declares no exception: name the problem in an application one.
            text = str(exc)
            if isinstance(exc, BatchTooLargeError):
                text += f" (limit {exc.limit}, actual {exc.actual})"
            raise TApplicationException(TApplicationException.UNKNOWN, text) from exc
        return OK

    # ---------------------------------------------------------------- our API

    def Append(self, batch: Any) -> Any:
        """Idempotent append: a retried (producer, sequence) is acknowledged, not stored again."""
        records = [(m.category or b"", m.message or b"") for m in batch.entries or ()]
        return self.append_records(batch.producer, batch.sequence, records)

    def AppendPacked(self, batch: Any) -> Any:
        """``Append`` with the records in columns (see ``PackedBatch`` and :mod:`logwire.packed`)."""
        lengths = batch.lengths or b""
        messages = batch.messages or b""
        with self._declared("append_packed"):
            count = record_count(lengths)
            # Checked before unpacking: the record list costs memory per record.
            self._check_count(count)
            runs = [(run.category or "", run.count) for run in batch.runs or ()]
            unpacked = unpack_messages(runs, lengths, messages)
        # The columns go to storage as they are: no (category, message) pair per record.
        return self._append(
            batch.producer,
            batch.sequence,
            count,
            "append_packed",
            lambda producer, sequence: self._storage.append_columns(
                runs, unpacked, producer=producer, sequence=sequence
            ),
        )

    def AppendCompressed(self, batch: Any) -> Any:
        """``AppendPacked`` with the columns compressed (see ``CompressedBatch``).

        The record count (from the runs) and the declared size are checked before
        anything is decompressed; storage decompresses once, checks the columns
        and stores a one-category batch's payload as it came.
        """
        columns = batch.columns or b""
        with self._declared("append_compressed"):
            runs = [(run.category or "", run.count) for run in batch.runs or ()]
            count = sum(n for _, n in runs if isinstance(n, int))
            self._check_count(count)
            codec = batch.codec if isinstance(batch.codec, int) else -1
            raw_bytes = batch.raw_bytes if isinstance(batch.raw_bytes, int) else -1
            if raw_bytes < 0:
                raise InvalidRequestError("raw_bytes must be >= 0")
        return self._append(
            batch.producer,
            batch.sequence,
            count,
            "append_compressed",
            lambda producer, sequence: self._storage.append_compressed(
                runs, codec, raw_bytes, columns, producer=producer, sequence=sequence
            ),
        )

    def append_records(
        self,
        producer: str | bytes | None,
        sequence: int | None,
        records: list[tuple[Any, Any]],
        call: Call = "append",
    ) -> Any:
        """``Append`` for a batch already decoded into (category, message) pairs (the wire's fast path)."""
        return self._append(
            producer,
            sequence,
            len(records),
            call,
            lambda producer, sequence: self._storage.append(
                records, producer=producer, sequence=sequence
            ),
        )

    def _append(
        self,
        producer: str | bytes | None,
        sequence: int | None,
        count: int,
        call: Call,
        store: Callable[[str, int], AppendOutcome],
    ) -> Any:
        """The checks and answers every idempotent append shares.

        ``store(producer, sequence)`` stores, called with both checked.
        """
        if self._draining.is_set():
            self._metrics.rejected.labels("draining").inc()
            raise log_thrift.ServerDraining(reason="server is shutting down; use another")
        with self._declared(call):
            name = _producer(producer)
            if sequence is None or sequence < 0:
                raise InvalidRequestError("sequence must be >= 0")
            self._check_count(count)
            outcome = self._timed(lambda: store(name, sequence), call)
        if outcome.duplicate:
            self._metrics.duplicates.inc()
        return log_thrift.AppendResult(code=OK, duplicate=outcome.duplicate, stored=outcome.stored)

    def Read(self, category: str | bytes, position: int, limit: int) -> Any:
        """Up to ``limit`` records of ``category`` from ``position``."""
        name = _text(category or "")
        with self._declared("read"):
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

    def ReadBlocks(self, category: str | bytes, position: int, max_bytes: int) -> Any:
        """Whole stored blocks of ``category`` from the one holding ``position`` (see ``log.thrift``)."""
        name = _text(category or "")
        with self._declared("read"):
            if position is None or position < 0:
                raise InvalidRequestError("position must be >= 0")
            if max_bytes is None or max_bytes < 1:
                raise InvalidRequestError("max_bytes must be >= 1")
            batch = self._storage.read_blocks(
                name, position, min(max_bytes, self._limits.max_read_bytes)
            )
        return log_thrift.BlockReadResult(
            blocks=_thrift_blocks(batch.blocks),
            next_position=batch.next_position,
            end_of_log=batch.end_of_log,
        )

    def QueryBlocks(self, query: Any) -> Any:
        """``ReadBlocks`` with filters, a start from a time or a count, and a long poll
        (see ``BlockQuery`` in ``log.thrift`` and :mod:`logserver.querying`)."""
        with self._declared("read"):
            checked = Query.check(query, self._limits.query)
            try:
                batch = run_query(self._storage, checked, self._limits.query, self.draining_now)
            except InvalidPositionError as exc:
                raise log_thrift.InvalidPosition(reason=str(exc), position=exc.position) from exc
        return log_thrift.BlockQueryResult(
            blocks=_thrift_blocks(batch.blocks),
            next_position=batch.next_position,
            end_of_log=batch.end_of_log,
            start_position=batch.start_position,
            server_ns=time.time_ns(),
        )

    # ---------------------------------------------------- copies (logserver repair)

    def Holdings(self, category: str | bytes, after: str | bytes, limit: int) -> Any:
        """What the server holds of ``category``, per producer, a page at a time."""
        name = _text(category or "")
        with self._declared("read"):
            if limit is None or limit < 1:
                raise InvalidRequestError("limit must be >= 1")
            view = self._storage.copies.holdings(name)
        start = _text(after or "")
        limit = min(limit, self._limits.max_holdings_producers)
        names = sorted(p for p in view.producers if p > start)
        page: list[Any] = []
        size = 0
        for producer in names:
            if len(page) >= limit or (page and size >= self._limits.max_holdings_bytes):
                break
            spans = pack_spans(view.producers[producer].spans())
            page.append(log_thrift.ProducerHoldings(producer=producer, spans=spans))
            size += len(spans) + len(producer)
        return log_thrift.HoldingsPage(
            producers=page,
            complete=len(page) == len(names),
            unidentified_records=view.unidentified,
        )

    def ReadBatches(
        self,
        category: str | bytes,
        wanted: Sequence[Any],
        position: int,
        stop_position: int,
        max_bytes: int,
    ) -> Any:
        """The stored blocks of the wanted batches (see ``log.thrift``)."""
        name = _text(category or "")
        with self._declared("read"):
            if position is None or stop_position is None or not 0 <= position <= stop_position:
                raise InvalidRequestError("need 0 <= position <= stop_position")
            if max_bytes is None or max_bytes < 1:
                raise InvalidRequestError("max_bytes must be >= 1")
            ranges: dict[str, list[tuple[int, int]]] = {}
            for item in wanted or ():
                ranges.setdefault(_text(item.producer or ""), []).extend(
                    unpack_ranges(item.ranges or b"")
                )
            found = self._storage.copies.read_batches(
                name,
                ranges,
                position,
                stop_position,
                min(max_bytes, self._limits.max_read_bytes),
            )
        return log_thrift.BlockReadResult(
            blocks=_thrift_blocks(found.blocks),
            next_position=found.next_position,
            end_of_log=found.done,
        )

    def Restore(self, category: str | bytes, blocks: Sequence[Any]) -> Any:
        """Store copies of batch parts with their original identity (see ``log.thrift``)."""
        if self._draining.is_set():
            self._metrics.rejected.labels("draining").inc()
            raise log_thrift.ServerDraining(reason="server is shutting down; use another")
        name = _text(category or "")
        with self._declared("restore"):
            identity = client_identity()
            if identity and identity not in self._repair_identities:
                raise InvalidRequestError(
                    f"client identity {identity} may not restore copies (the server's "
                    "--repair-identity lists who may)"
                )
            copied = [_copied_block(b) for b in blocks or ()]
            parts: dict[tuple[str, int], int] = {}
            for block in copied:  # each batch within the limit, as when it was first sent
                key = (block.producer, block.sequence)
                parts[key] = parts.get(key, 0) + block.records
            self._check_count(max(parts.values(), default=0))
            outcome = self._storage.copies.restore(name, copied)
        self._metrics.batches.labels("restore").inc(outcome.stored)
        self._metrics.records.labels("restore").inc(outcome.records)
        return log_thrift.RestoreResult(
            stored=outcome.stored, duplicates=outcome.duplicates, records=outcome.records
        )

    def Categories(self) -> list[str]:
        return self._storage.categories()

    def CategoryStats(self) -> list[Any]:
        """Every category with its records, bytes and first and last receive time."""
        with self._declared("read"):
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

    # ----------------------------------------------------------------- helpers

    @contextlib.contextmanager
    def _declared(self, call: Call | Literal["read"]) -> Iterator[None]:
        """Raise what ``log.thrift`` declares for any of our errors raised inside (see :func:`declared`)."""
        try:
            yield
        except (LogServerError, LogWireError) as exc:
            _, exception = self._rejected(exc, call)
            raise exception from exc

    def _rejected(
        self, exc: LogServerError | LogWireError, call: Call | Literal["read"]
    ) -> tuple[Rejection, Exception]:
        """Count (a batch, not a read) and log a refusal; re-raise ``exc`` if the IDL has no word for it."""
        mapped = declared(exc)
        if mapped is None:
            raise exc
        rejection, exception = mapped
        if call != "read":
            self._metrics.rejected.labels(rejection).inc()
            if rejection == "unavailable":
                log.warning("storage unavailable", call=call, reason=str(exc))
        return rejection, exception

    def _check_count(self, count: int) -> None:
        if count > self._limits.max_batch_records:
            raise BatchTooLargeError(
                "too many records in one batch", self._limits.max_batch_records, count
            )

    def _timed(self, store: Callable[[], AppendOutcome], call: Call) -> AppendOutcome:
        started = time.perf_counter()
        outcome = store()
        self._metrics.append_seconds.observe(time.perf_counter() - started)
        self._metrics.batches.labels(call).inc()
        self._metrics.records.labels(call).inc(outcome.stored)
        return outcome
