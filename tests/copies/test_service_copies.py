"""The Thrift calls of repair on the service: Holdings pages, ReadBatches, Restore's checks.

The handler is called directly (the transport is tested elsewhere); storage is real.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from logserver.metrics import Metrics
from logserver.service import LogServiceHandler, ServiceLimits
from logserver.storage import Storage
from logwire.holdings import pack_ranges, unpack_spans
from logwire.idl import log_thrift


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[LogServiceHandler, LogServiceHandler]]:
    limits = ServiceLimits(max_batch_records=5, max_holdings_producers=2)
    stores = [Storage.open(tmp_path / name) for name in ("source", "target")]
    handlers = [
        LogServiceHandler(s, server_id=s.server_id, version="t", metrics=Metrics(), limits=limits)
        for s in stores
    ]
    yield handlers[0], handlers[1]
    for store in stores:
        store.close()


def _append(handler: LogServiceHandler, producer: str, sequence: int, n: int) -> None:
    entries = [log_thrift.LogEntry(category="c", message=f"{producer}{i}") for i in range(n)]
    handler.Append(log_thrift.AppendBatch(producer=producer, sequence=sequence, entries=entries))


def test_holdings_come_a_page_of_producers_at_a_time(pair) -> None:
    source, _ = pair
    for producer in ("p1", "p2", "p3"):
        _append(source, producer, 0, 1)
    first = source.Holdings("c", "", 10)
    assert [p.producer for p in first.producers] == ["p1", "p2"] and not first.complete
    rest = source.Holdings("c", "p2", 10)
    assert [p.producer for p in rest.producers] == ["p3"] and rest.complete
    assert unpack_spans(rest.producers[0].spans)[0][:3] == (0, 0, 1)
    with pytest.raises(log_thrift.InvalidRequest):
        source.Holdings("c", "", 0)
    with pytest.raises(log_thrift.InvalidCategory):
        source.Holdings("../x", "", 1)


def test_a_restore_call_may_carry_many_batches_each_within_the_batch_limit(pair) -> None:
    """The record limit is per batch, as when each was first sent, not per call."""
    source, target = pair
    for sequence in range(4):
        _append(source, "p", sequence, 5)
    wanted = [log_thrift.WantedBatches(producer="p", ranges=pack_ranges([(0, 3)]))]
    found = source.ReadBatches("c", wanted, 0, 2**62, 2**20)
    assert found.end_of_log and sum(b.count for b in found.blocks) == 20
    result = target.Restore("c", found.blocks)
    assert (result.stored, result.duplicates, result.records) == (4, 0, 20)
    assert target.Restore("c", found.blocks).duplicates == 4


def test_restore_refuses_what_it_must_not_store(pair) -> None:
    source, target = pair
    _append(source, "p", 0, 2)
    wanted = [log_thrift.WantedBatches(producer="p", ranges=pack_ranges([(0, 0)]))]
    (block,) = source.ReadBatches("c", wanted, 0, 2**62, 2**20).blocks
    scribe = log_thrift.StoredBlock(**{**block.__dict__, "producer": ""})
    with pytest.raises(log_thrift.InvalidRequest, match="batch id"):
        target.Restore("c", [scribe])
    broken = log_thrift.StoredBlock(**{**block.__dict__, "index_runs": b"\x00" * 7})
    with pytest.raises(log_thrift.InvalidRequest):
        target.Restore("c", [broken])
    with pytest.raises(log_thrift.InvalidRequest):
        source.ReadBatches("c", [log_thrift.WantedBatches(producer="p", ranges=b"x")], 0, 9, 9)
    target.drain()
    with pytest.raises(log_thrift.ServerDraining):
        target.Restore("c", [block])


def test_with_mutual_tls_only_the_listed_identities_may_restore(pair, tmp_path: Path) -> None:
    """A client certificate's identity (set by the transport for the connection) must be in
    --repair-identity: Restore can write under any producer and receive time."""
    import contextvars

    from logserver.transport._tls import set_client_identity

    source, target = pair
    _append(source, "p", 0, 1)
    wanted = [log_thrift.WantedBatches(producer="p", ranges=pack_ranges([(0, 0)]))]
    blocks = source.ReadBatches("c", wanted, 0, 2**62, 2**20).blocks

    def restore_as(identity: str, handler: LogServiceHandler) -> object:
        def call() -> object:
            set_client_identity(identity)
            return handler.Restore("c", blocks)

        return contextvars.copy_context().run(call)

    with pytest.raises(log_thrift.InvalidRequest, match="may not restore"):
        restore_as("app-identity", target)
    with Storage.open(tmp_path / "allowed") as storage:
        allowed = LogServiceHandler(
            storage,
            server_id=storage.server_id,
            version="t",
            metrics=Metrics(),
            repair_identities=frozenset({"repair-identity"}),
        )
        assert restore_as("repair-identity", allowed).stored == 1  # type: ignore[attr-defined]
        with pytest.raises(log_thrift.InvalidRequest):
            restore_as("someone-else", allowed)
