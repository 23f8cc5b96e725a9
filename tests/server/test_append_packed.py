"""AppendPacked against a real logserver process: stored like Append, refused when malformed."""

from __future__ import annotations

import struct

import pytest

from logwire.idl import log_thrift
from logwire.packed import pack_entries
from tests.thrift_clients import append, connect, read_all


def packed(producer: str, sequence: int, entries: list[tuple[str, bytes]]) -> object:
    runs, lengths, messages = pack_entries(entries)
    return log_thrift.PackedBatch(
        producer=producer,
        sequence=sequence,
        runs=[log_thrift.CategoryRun(category=c, count=n) for c, n in runs],
        lengths=lengths,
        messages=messages,
    )


def test_a_packed_batch_is_stored_in_order_and_deduplicated_with_append(logserver_factory):
    """Records of several category runs land in their categories in batch order; the same
    (producer, sequence) is one batch whichever call carries it, also after SIGKILL."""
    server = logserver_factory()
    entries = [("a", b"1"), ("a", b""), ("b", b"2"), ("a", b"3" * 1000)]
    with connect(server.endpoint) as client:
        first = client.AppendPacked(packed("prod", 0, entries))
        assert (first.code, first.duplicate, first.stored) == (log_thrift.ResultCode.OK, False, 4)
        assert client.AppendPacked(packed("prod", 0, entries)).duplicate
    assert append(server.endpoint, "prod", 0, [(c, m.decode()) for c, m in entries]).duplicate
    server.kill()
    server.restart()
    with connect(server.endpoint) as client:
        assert client.AppendPacked(packed("prod", 0, entries)).duplicate
    a = read_all(server.endpoint, "a")
    assert [r.message for r in a] == [b"1", b"", b"3" * 1000]
    assert [r.index for r in a] == [0, 1, 3]
    assert [(r.message, r.index) for r in read_all(server.endpoint, "b")] == [(b"2", 2)]


def test_malformed_packed_batches_get_invalid_request_and_the_connection_serves_on(
    logserver_factory,
):
    """Columns that disagree are refused with InvalidRequest before anything is stored."""
    server = logserver_factory()
    good = packed("p", 0, [("c", b"xy"), ("c", b"z")])
    malformed = {
        "torn lengths": {"lengths": good.lengths[:-1]},
        "lengths past the messages": {"messages": good.messages[:-1]},
        "bytes after the last message": {"messages": good.messages + b"!"},
        "runs short of the records": {"runs": [log_thrift.CategoryRun(category="c", count=1)]},
        "a run of zero": {
            "runs": [
                log_thrift.CategoryRun(category="c", count=2),
                log_thrift.CategoryRun(category="d", count=0),
            ]
        },
        "no columns at all": {"runs": None, "lengths": None, "messages": b"x"},
    }
    with connect(server.endpoint) as client:
        for name, change in malformed.items():
            batch = packed("p", 0, [("c", b"xy"), ("c", b"z")])
            for field, value in change.items():
                setattr(batch, field, value)
            with pytest.raises(log_thrift.InvalidRequest, match="malformed packed batch"):
                client.AppendPacked(batch)
            assert client.Ping() == "pong", name
        assert client.Categories() == []
        assert client.AppendPacked(good).stored == 2


def test_packed_batches_meet_the_same_limits_as_append(logserver_factory):
    """Invalid categories, oversized messages and bad identities get Append's errors."""
    server = logserver_factory(extra_args=["--max-message-bytes", "1000"])
    with connect(server.endpoint) as client:
        with pytest.raises(log_thrift.InvalidCategory):
            client.AppendPacked(packed("p", 0, [("ok", b"x"), ("../etc", b"y")]))
        with pytest.raises(log_thrift.BatchTooLarge):
            client.AppendPacked(packed("p", 0, [("ok", b"x" * 2000)]))
        with pytest.raises(log_thrift.InvalidRequest):
            client.AppendPacked(packed("", 0, [("ok", b"x")]))
        with pytest.raises(log_thrift.InvalidRequest):
            client.AppendPacked(packed("p", -1, [("ok", b"x")]))
        # 200,000 empty messages: refused on the count, before a record list is built.
        lengths = struct.pack(">I", 0) * 200_000
        batch = log_thrift.PackedBatch(
            producer="p",
            sequence=0,
            runs=[log_thrift.CategoryRun(category="ok", count=200_000)],
            lengths=lengths,
            messages=b"",
        )
        with pytest.raises(log_thrift.BatchTooLarge, match="too many records"):
            client.AppendPacked(batch)
        assert client.Categories() == []
