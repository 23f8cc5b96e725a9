"""The one mapping from logserver's errors to the exceptions ``log.thrift`` declares.

The handler runs in this process over a real storage in ``tmp_path``: every
refusal is answered with the declared exception of our API, or for Scribe's
``Log`` with TRY_LATER (it may pass) or an application exception (it never will),
and counted under the reason an operator alerts on.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from thriftpy2.thrift import TApplicationException

from logserver.errors import (
    BatchTooLargeError,
    InvalidCategoryError,
    InvalidPositionError,
    InvalidRequestError,
    LogServerError,
    MessageTooLargeError,
    StorageLockedError,
    StorageUnavailableError,
)
from logserver.metrics import Metrics
from logserver.service import LogServiceHandler, ServiceLimits, declared
from logserver.storage import Storage, StoragePolicy
from logwire.errors import PackedError
from logwire.idl import log_thrift


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[Storage]:
    storage = Storage.open(tmp_path / "data", StoragePolicy(max_message_bytes=100))
    yield storage
    storage.close()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def handler(storage: Storage, metrics: Metrics) -> LogServiceHandler:
    limits = ServiceLimits(max_batch_records=5)
    return LogServiceHandler(
        storage, server_id="s1", version="test", metrics=metrics, limits=limits
    )


def _rejected(metrics: Metrics, reason: str) -> float:
    value = metrics.registry.get_sample_value(
        "logserver_rejected_batches_total", {"reason": reason}
    )
    return value or 0.0


@pytest.mark.parametrize(
    ("error", "expected", "label"),
    [
        (
            InvalidCategoryError(b"../x", "category contains '..'"),
            log_thrift.InvalidCategory(category="../x", reason="category contains '..'"),
            "invalid_category",
        ),
        (
            MessageTooLargeError(100, 101),
            log_thrift.BatchTooLarge(
                reason="message of 101 bytes exceeds the limit of 100 bytes", limit=100, actual=101
            ),
            "too_large",
        ),
        (
            BatchTooLargeError("too many records in one batch", 5, 6),
            log_thrift.BatchTooLarge(reason="too many records in one batch", limit=5, actual=6),
            "too_large",
        ),
        (
            StorageUnavailableError("disk full"),
            log_thrift.StorageUnavailable(reason="disk full"),
            "unavailable",
        ),
        (
            InvalidPositionError("c", 3),
            log_thrift.InvalidRequest(reason="position 3 in category 'c': not a record boundary"),
            "invalid_request",
        ),
        (
            InvalidRequestError("sequence must be >= 0"),
            log_thrift.InvalidRequest(reason="sequence must be >= 0"),
            "invalid_request",
        ),
        (
            PackedError("lengths has 3 bytes, not a multiple of 4"),
            log_thrift.InvalidRequest(
                reason="malformed packed batch: lengths has 3 bytes, not a multiple of 4"
            ),
            "invalid_request",
        ),
    ],
)
def test_each_error_maps_to_one_declared_exception(
    error: Exception, expected: Exception, label: str
) -> None:
    """The table: our leaf -> the IDL's exception (with its context) and the rejection reason."""
    mapped = declared(error)  # type: ignore[arg-type]
    assert mapped is not None
    assert (mapped[0], type(mapped[1]), vars(mapped[1])) == (label, type(expected), vars(expected))


def test_an_error_the_idl_has_no_word_for_is_not_mapped() -> None:
    """A locked data directory is no answer to a request: it stays ours (INTERNAL_ERROR on the wire)."""
    assert declared(StorageLockedError("locked")) is None
    assert declared(LogServerError("other")) is None


def test_append_answers_every_refusal_with_a_declared_exception(
    handler: LogServiceHandler, storage: Storage, metrics: Metrics
) -> None:
    """Bad category, oversized message, too many records, bad producer and sequence, storage
    closed: each a declared exception, counted by reason; nothing is stored."""

    def append(producer: str, sequence: int, records: list[tuple[bytes, bytes]]) -> object:
        return handler.append_records(producer, sequence, records)

    with pytest.raises(log_thrift.InvalidCategory) as category:
        append("p", 0, [(b"../etc", b"x")])
    assert category.value.category == "../etc"
    with pytest.raises(log_thrift.BatchTooLarge) as message:
        append("p", 0, [(b"c", b"x" * 101)])
    assert (message.value.limit, message.value.actual) == (100, 101)
    with pytest.raises(log_thrift.BatchTooLarge, match="too many records") as count:
        append("p", 0, [(b"c", b"x")] * 6)
    assert (count.value.limit, count.value.actual) == (5, 6)
    with pytest.raises(log_thrift.InvalidRequest, match="producer"):
        append("", 0, [(b"c", b"x")])
    with pytest.raises(log_thrift.InvalidRequest, match="sequence"):
        append("p", -1, [(b"c", b"x")])
    assert _rejected(metrics, "invalid_category") == 1
    assert _rejected(metrics, "too_large") == 2
    assert _rejected(metrics, "invalid_request") == 2
    assert handler.Categories() == []
    storage.close()
    with pytest.raises(log_thrift.StorageUnavailable, match="closed"):
        append("p", 0, [(b"c", b"x")])
    assert _rejected(metrics, "unavailable") == 1


def test_producers_are_checked_byte_for_byte_and_at_is_reserved(
    handler: LogServiceHandler, metrics: Metrics
) -> None:
    """Bytes that are not printable ASCII are refused (never decoded with replacement, which
    would merge distinct ids); "@" only before a parent's sequence; a split half's id passes."""
    for producer in (b"\xff\xfe", "caf\u00e9".encode(), b"app@host", b"@1", b"x" * 129):
        with pytest.raises(log_thrift.InvalidRequest, match=r"producer|reserved"):
            handler.append_records(producer, 0, [(b"c", b"x")])  # type: ignore[arg-type]
    assert _rejected(metrics, "invalid_request") == 5
    result = handler.append_records(b"p@12", 0, [(b"c", b"x")])  # type: ignore[arg-type]
    assert (result.stored, result.duplicate) == (1, False)
    assert [r.producer for r in handler.Read("c", 0, 10).records] == ["p@12"]


def test_a_malformed_packed_batch_is_an_invalid_request(
    handler: LogServiceHandler, metrics: Metrics
) -> None:
    """Columns that disagree: InvalidRequest naming the problem, counted as invalid_request."""
    batch = log_thrift.PackedBatch(
        producer="p",
        sequence=0,
        runs=[log_thrift.CategoryRun(category="c", count=2)],
        lengths=b"\x00\x00\x00\x01",
        messages=b"x",
    )
    with pytest.raises(log_thrift.InvalidRequest, match="malformed packed batch: runs add up"):
        handler.AppendPacked(batch)
    assert _rejected(metrics, "invalid_request") == 1


def test_scribe_log_gets_try_later_or_an_application_exception(
    handler: LogServiceHandler, storage: Storage, metrics: Metrics
) -> None:
    """Log declares no exception: a batch that can never be stored gets an application
    exception naming why; one the server cannot take now gets TRY_LATER."""
    with pytest.raises(TApplicationException, match="invalid category"):
        handler.log_records([(b"../etc", b"x")])
    with pytest.raises(
        TApplicationException, match=r"too many records in one batch \(limit 5, actual 6\)"
    ):
        handler.log_records([(b"c", b"x")] * 6)
    assert handler.log_records([(b"c", b"x")]) == log_thrift.ResultCode.OK
    storage.close()
    assert handler.log_records([(b"c", b"x")]) == log_thrift.ResultCode.TRY_LATER
    assert _rejected(metrics, "unavailable") == 1


def test_read_refusals_are_declared_but_not_counted_as_rejected_batches(
    handler: LogServiceHandler, metrics: Metrics
) -> None:
    """Read's bad category, position and limit are declared exceptions; no batch was refused."""
    handler.append_records("p", 0, [(b"c", b"one"), (b"c", b"two")])
    with pytest.raises(log_thrift.InvalidCategory):
        handler.Read("../etc", 0, 10)
    with pytest.raises(log_thrift.InvalidRequest, match="position 1 in category 'c'"):
        handler.Read("c", 1, 10)
    with pytest.raises(log_thrift.InvalidRequest, match="position must be >= 0"):
        handler.Read("c", -1, 10)
    with pytest.raises(log_thrift.InvalidRequest, match="limit must be >= 1"):
        handler.Read("c", 0, 0)
    for reason in ("invalid_category", "invalid_request"):
        assert _rejected(metrics, reason) == 0
    assert [r.message for r in handler.Read("c", 0, 10).records] == [b"one", b"two"]
