"""What must hold for the hand-encoded Append call and for batch identities."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from thriftpy2.protocol import TCyBinaryProtocol, TCyBinaryProtocolFactory
from thriftpy2.thrift import TClient
from thriftpy2.transport import TCyFramedTransport
from thriftpy2.transport.memory import TCyMemoryBuffer

from logclient._batch import Batch
from logclient._calls import decode_append_reply, encode_append_call, encode_packed_call
from logwire.batchid import canonical_key
from logwire.idl import log_thrift
from logwire.packed import pack_entries


def thriftpy2_bytes(seqid: int, producer: str, sequence: int, entries: list) -> bytes:
    """What thriftpy2's own client writes for the same call."""
    memory = TCyMemoryBuffer()
    client = TClient(log_thrift.LogService, TCyBinaryProtocol(TCyFramedTransport(memory)))
    client._seqid = seqid
    client._send(
        "Append",
        batch=log_thrift.AppendBatch(
            producer=producer,
            sequence=sequence,
            entries=[log_thrift.LogEntry(category=c, message=m) for c, m in entries],
        ),
    )
    return bytes(memory.getvalue())


@pytest.mark.parametrize(
    "entries",
    [
        [],
        [("app", b"hello")],
        [("app", b""), ("d\u00e9j\u00e0", "\u00fc\u00f1\u00ee".encode()), ("x", b"\x00\xff" * 50)],
        [("a", b"m%d" % i) for i in range(1000)],
    ],
)
def test_hand_encoded_append_is_byte_identical_to_thriftpy2(entries: list) -> None:
    """The sender's encoder writes exactly the frame thriftpy2 writes for Append."""
    mine = encode_append_call(123, "producer-\u00e9", 2**40 + 5, *columns(entries))
    assert mine == thriftpy2_bytes(123, "producer-\u00e9", 2**40 + 5, entries)


def columns(entries: list) -> tuple[list[str], list[bytes]]:
    """The (categories, messages) columns the encoders take."""
    return [c for c, _ in entries], [m for _, m in entries]


def reply(seqid: int, name: str = "Append") -> bytes:
    memory = TCyMemoryBuffer()
    protocol = TCyBinaryProtocolFactory().get_protocol(memory)
    protocol.write_message_begin(name, 2, seqid)
    result = log_thrift.LogService.Append_result(
        success=log_thrift.AppendResult(code=0, duplicate=True, stored=0)
    )
    result.write(protocol)
    protocol.write_message_end()
    return bytes(memory.getvalue())


def test_a_reply_must_answer_this_call() -> None:
    """A reply with another sequence id or method (a stale reply) is refused, never used."""
    assert decode_append_reply(reply(5), 5).success.duplicate is True
    with pytest.raises(ValueError, match="#4"):
        decode_append_reply(reply(4), 5)
    with pytest.raises(ValueError):
        decode_append_reply(reply(5, "Log"), 5)


def test_splitting_is_deterministic_and_keeps_every_record_once() -> None:
    """Halves get derived identities that are the same every time the batch is split
    (after a restart too), and together hold the batch's records in order."""
    entries = [("app", b"%d" % i) for i in range(5)]
    parent = Batch.of("p", 9, entries, 100, end_ordinal=42)
    a, b = parent.split()
    again = Batch.of("p", 9, list(entries), 100).split()
    assert [(h.producer, h.sequence) for h in (a, b)] == [("p@9", 0), ("p@9", 2)]
    assert [(h.producer, h.sequence) for h in again] == [("p@9", 0), ("p@9", 2)]
    assert a.entries + b.entries == entries
    assert a.root is parent and b.end_ordinal == 42 and parent.children_left == 2
    with pytest.raises(ValueError):
        Batch.of("p", 1, entries[:1], 10).split()


def test_derived_producers_stay_within_the_servers_limit() -> None:
    """Repeated splits never produce a producer over 128 characters."""
    node = Batch.of("p" * 120, 10**12, [("a", b"1"), ("a", b"2")], 10)
    for _ in range(5):
        node = Batch.of(node.split()[0].producer, 10**12, [("a", b"1"), ("a", b"2")], 10)
        assert 1 <= len(node.producer) <= 128


def _split_leaves(batch: Batch, cuts: list[bool]) -> list[Batch]:
    """Split ``batch`` recursively, ``cuts`` saying (in order) whether to split each node."""
    if batch.count < 2 or not cuts or not cuts.pop(0):
        return [batch]
    first, second = batch.split()
    return _split_leaves(first, cuts) + _split_leaves(second, cuts)


@settings(max_examples=300, deadline=None)
@given(
    n=st.integers(1, 300),
    sequence=st.integers(0, 2**63 - 1),
    cuts=st.lists(st.booleans(), max_size=40),
)
def test_a_split_halfs_records_map_back_to_the_batch_they_came_from(
    n: int, sequence: int, cuts: list[bool]
) -> None:
    """However often a batch is split, record i of every piece has the key of the
    record it was in the original batch: a reader that finds the batch whole on one
    server and in pieces on another shows each record once."""
    producer = uuid.uuid4().hex  # logclient's own producers
    entries = [("app", b"%d" % i) for i in range(n)]
    leaves = _split_leaves(Batch.of(producer, sequence, list(entries), 10 * n), list(cuts))
    keys = [
        canonical_key(leaf.producer, leaf.sequence, i) for leaf in leaves for i in range(leaf.count)
    ]
    assert keys == [(producer, sequence, i) for i in range(n)]
    assert [e for leaf in leaves for e in leaf.entries] == entries
    assert all(len(leaf.producer) <= 128 for leaf in leaves)


def test_canonical_key_leaves_other_producers_alone() -> None:
    """Only a trailing ``@<digits>`` marks a split half; anything else is an id as it is."""
    assert canonical_key("p", 3, 1) == ("p", 3, 1)
    assert canonical_key("p@7", 4, 1) == ("p", 7, 5)
    assert canonical_key("p@7@4", 2, 0) == ("p", 7, 6)
    assert canonical_key("user@host", 3, 1) == ("user@host", 3, 1)
    assert canonical_key("@5", 3, 1) == ("@5", 3, 1)
    assert canonical_key("p@-1", 3, 1) == ("p@-1", 3, 1)
    assert canonical_key("p@\u0663", 3, 1) == ("p@\u0663", 3, 1)  # a non-ASCII digit
    assert canonical_key("p~x9", 0, 2) == ("p~x9", 0, 2)  # minus a category: not mapped


_categories = st.sampled_from(["app", "d\u00e9j\u00e0", "x", "a.b-c_d"])
_entries = st.lists(st.tuples(_categories, st.binary(max_size=40)), max_size=60)


@settings(max_examples=200, deadline=None)
@given(entries=_entries, seqid=st.integers(0, 2**31 - 1), sequence=st.integers(-(2**63), 2**63 - 1))
def test_any_batch_encodes_exactly_as_thriftpy2_does(
    entries: list, seqid: int, sequence: int
) -> None:
    """Property: one category or many, empty messages or not, the frame is thriftpy2's."""
    assert encode_append_call(seqid, "p", sequence, *columns(entries)) == thriftpy2_bytes(
        seqid, "p", sequence, entries
    )


def thriftpy2_packed_bytes(seqid: int, producer: str, sequence: int, entries: list) -> bytes:
    """What thriftpy2's own client writes for AppendPacked with the same columns."""
    memory = TCyMemoryBuffer()
    client = TClient(log_thrift.LogService, TCyBinaryProtocol(TCyFramedTransport(memory)))
    client._seqid = seqid
    runs, lengths, messages = pack_entries(entries)
    client._send(
        "AppendPacked",
        batch=log_thrift.PackedBatch(
            producer=producer,
            sequence=sequence,
            runs=[log_thrift.CategoryRun(category=c, count=n) for c, n in runs],
            lengths=lengths,
            messages=messages,
        ),
    )
    return bytes(memory.getvalue())


@settings(max_examples=200, deadline=None)
@given(entries=_entries, seqid=st.integers(0, 2**31 - 1), sequence=st.integers(-(2**63), 2**63 - 1))
def test_any_batch_encodes_as_append_packed_exactly_as_thriftpy2_does(
    entries: list, seqid: int, sequence: int
) -> None:
    """Property: the hand-encoded AppendPacked frame is thriftpy2's, byte for byte."""
    mine = encode_packed_call(seqid, "producer-\u00e9", sequence, *columns(entries))
    assert mine == thriftpy2_packed_bytes(seqid, "producer-\u00e9", sequence, entries)


def test_a_reply_to_append_packed_is_read_as_one() -> None:
    assert decode_append_reply(reply(9, "AppendPacked"), 9, "AppendPacked").success.duplicate
    with pytest.raises(ValueError, match="waiting for 'AppendPacked'"):
        decode_append_reply(reply(9), 9, "AppendPacked")
