"""Logserver's errors as the exceptions ``log.thrift`` declares: the one place they are mapped.

:func:`declared` is the one place where logserver's errors become the
exceptions declared in ``log.thrift`` (as httpcore's ``map_exceptions`` does
for sockets): storage's, the service's own argument checks (which raise the
same :class:`~logserver.errors.InvalidRequestError` leaves), and a malformed
packed batch. A client never sees a dropped connection for a bad request:
our own API gets a declared exception, Scribe's ``Log`` (whose IDL declares
none) gets ``TRY_LATER`` for conditions that pass, and an application
exception naming the problem for a batch that can never be stored.

:class:`Refusals` applies that mapping inside a call and counts each refused
batch by reason (``logserver_rejected_batches``; a refused read is not a
batch and is not counted).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal

import structlog

from logserver.errors import (
    BatchTooLargeError,
    InvalidCategoryError,
    InvalidRequestError,
    LogServerError,
    StorageUnavailableError,
)
from logserver.metrics import Metrics
from logserver.service._convert import text
from logwire.errors import BlockError, HoldingsError, LogWireError, PackedError
from logwire.idl import log_thrift

__all__ = ["Call", "Refusals", "Rejection", "declared"]

log = structlog.get_logger(__name__)

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
        category = text(exc.category)
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


class Refusals:
    """Maps errors raised inside a call to declared exceptions, counting refused batches."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def __repr__(self) -> str:
        return "<Refusals>"

    @contextlib.contextmanager
    def declared(self, call: Call | Literal["read"]) -> Iterator[None]:
        """Raise what ``log.thrift`` declares for any of our errors raised inside (see :func:`declared`)."""
        try:
            yield
        except (LogServerError, LogWireError) as exc:
            _, exception = self.rejected(exc, call)
            raise exception from exc

    def rejected(
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

    def draining(self) -> None:
        """Count a batch refused because the server is draining."""
        self._metrics.rejected.labels("draining").inc()
