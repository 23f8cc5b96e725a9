"""The calls that store: Scribe's ``Log`` and our idempotent ``Append`` family.

``Log`` (Scribe's, no identity: a retry may store a batch twice) answers
``OK`` or ``TRY_LATER``, since its IDL declares no exception. ``Append``,
``AppendPacked`` and ``AppendCompressed`` carry a (producer, sequence): the
producer is checked (and, with mutual TLS, put in the client's namespace),
the batch's record count is checked before anything is unpacked, and storage
stores it once, answering a retry "duplicate". While the server drains,
every one of them is refused so that clients move to another server. The
transport's fast path calls :meth:`WriteCalls.log_records` and
:meth:`WriteCalls.append_records` with records it decoded itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from thriftpy2.thrift import TApplicationException

from logserver.errors import BatchTooLargeError, InvalidRequestError, LogServerError
from logserver.service._context import CallContext
from logserver.service._errors import Call
from logserver.service._limits import check_count
from logserver.storage import AppendOutcome
from logserver.transport import client_identity
from logwire.batchid import producer_problem
from logwire.errors import LogWireError
from logwire.idl import log_thrift
from logwire.packed import record_count, unpack_messages

__all__ = ["WriteCalls"]

OK = log_thrift.ResultCode.OK
TRY_LATER = log_thrift.ResultCode.TRY_LATER


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


class WriteCalls:
    """The storing calls of ``LogService`` (see the module docstring); thread-safe."""

    def __init__(self, context: CallContext) -> None:
        self._storage = context.storage
        self._metrics = context.metrics
        self._limits = context.limits
        self._refusals = context.refusals
        self._draining = context.draining

    def __repr__(self) -> str:
        return f"<WriteCalls draining={self._draining()}>"

    # ------------------------------------------------------------------ Scribe

    def log(self, messages: Sequence[Any]) -> int:
        """Scribe's call: OK when stored durably, TRY_LATER when the server cannot take it now."""
        return self.log_records([(m.category or b"", m.message or b"") for m in messages])

    def log_records(self, records: list[tuple[Any, Any]]) -> int:
        """``Log`` for a batch already decoded into (category, message) pairs (the wire's fast path)."""
        if self._draining():
            self._refusals.draining()
            return TRY_LATER
        try:
            check_count(self._limits, len(records))
            self._timed(lambda: self._storage.append(records), "log")
        except (LogServerError, LogWireError) as exc:
            rejection, _ = self._refusals.rejected(exc, "log")
            if rejection == "unavailable":
                return TRY_LATER
            # Scribe's IDL declares no exception: name the problem in an application one.
            text = str(exc)
            if isinstance(exc, BatchTooLargeError):
                text += f" (limit {exc.limit}, actual {exc.actual})"
            raise TApplicationException(TApplicationException.UNKNOWN, text) from exc
        return OK

    # ---------------------------------------------------------------- our API

    def append(self, batch: Any) -> Any:
        """Idempotent append: a retried (producer, sequence) is acknowledged, not stored again."""
        records = [(m.category or b"", m.message or b"") for m in batch.entries or ()]
        return self.append_records(batch.producer, batch.sequence, records)

    def append_packed(self, batch: Any) -> Any:
        """``Append`` with the records in columns (see ``PackedBatch`` and :mod:`logwire.packed`)."""
        lengths = batch.lengths or b""
        messages = batch.messages or b""
        with self._refusals.declared("append_packed"):
            count = record_count(lengths)
            # Checked before unpacking: the record list costs memory per record.
            check_count(self._limits, count)
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

    def append_compressed(self, batch: Any) -> Any:
        """``AppendPacked`` with the columns compressed (see ``CompressedBatch``).

        The record count (from the runs) and the declared size are checked before
        anything is decompressed; storage decompresses once, checks the columns
        and stores a one-category batch's payload as it came.
        """
        columns = batch.columns or b""
        with self._refusals.declared("append_compressed"):
            runs = [(run.category or "", run.count) for run in batch.runs or ()]
            count = sum(n for _, n in runs if isinstance(n, int))
            check_count(self._limits, count)
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
        if self._draining():
            self._refusals.draining()
            raise log_thrift.ServerDraining(reason="server is shutting down; use another")
        with self._refusals.declared(call):
            name = _producer(producer)
            if sequence is None or sequence < 0:
                raise InvalidRequestError("sequence must be >= 0")
            check_count(self._limits, count)
            outcome = self._timed(lambda: store(name, sequence), call)
        if outcome.duplicate:
            self._metrics.duplicates.inc()
        return log_thrift.AppendResult(code=OK, duplicate=outcome.duplicate, stored=outcome.stored)

    def _timed(self, store: Callable[[], AppendOutcome], call: Call) -> AppendOutcome:
        started = time.perf_counter()
        outcome = store()
        self._metrics.append_seconds.observe(time.perf_counter() - started)
        self._metrics.batches.labels(call).inc()
        self._metrics.records.labels(call).inc(outcome.stored)
        return outcome
