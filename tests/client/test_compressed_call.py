"""The hand-encoded AppendCompressed call: thriftpy2's bytes exactly, columns that decode to the
batch, and no compressed call when compression would not make it smaller."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st
from thriftpy2.protocol import TCyBinaryProtocol
from thriftpy2.thrift import TClient
from thriftpy2.transport import TCyFramedTransport
from thriftpy2.transport.memory import TCyMemoryBuffer

from logclient._calls import decode_append_reply, encode_compressed_call
from logwire.compression import ZSTD, CompressionPolicy, column_messages, decompress
from logwire.idl import log_thrift
from logwire.packed import category_runs
from tests.client.test_wire_and_batch import reply

_POLICY = CompressionPolicy(min_bytes=0)


def _thriftpy2_bytes(
    seqid: int, producer: str, sequence: int, categories: list[str], raw: int, columns: bytes
) -> bytes:
    memory = TCyMemoryBuffer()
    client = TClient(log_thrift.LogService, TCyBinaryProtocol(TCyFramedTransport(memory)))
    client._seqid = seqid
    client._send(
        "AppendCompressed",
        batch=log_thrift.CompressedBatch(
            producer=producer,
            sequence=sequence,
            runs=[
                log_thrift.CategoryRun(category=c, count=n) for c, n in category_runs(categories)
            ],
            codec=log_thrift.Codec.ZSTD,
            raw_bytes=raw,
            columns=columns,
        ),
    )
    return bytes(memory.getvalue())


def _decode(frame: bytes) -> object:
    """The CompressedBatch thriftpy2 reads from our frame."""
    protocol = TCyBinaryProtocol(TCyMemoryBuffer(frame[4:]), decode_response=False)
    name, _type, _seqid = protocol.read_message_begin()
    assert name == "AppendCompressed"
    args = log_thrift.LogService.AppendCompressed_args()
    args.read(protocol)
    return args.batch


_categories = st.sampled_from(["app", "d\u00e9j\u00e0", "x"])


@settings(max_examples=150, deadline=None)
@given(
    entries=st.lists(
        st.tuples(_categories, st.sampled_from([b"", b"order 42 shipped", b"\xff\x00" * 30])),
        min_size=1,
        max_size=60,
    ),
    seqid=st.integers(0, 2**31 - 1),
    sequence=st.integers(-(2**63), 2**63 - 1),
)
def test_compressed_call_is_thriftpy2s_frame_and_decodes_to_the_batch(
    entries: list[tuple[str, bytes]], seqid: int, sequence: int
) -> None:
    """Byte for byte what thriftpy2 writes for the same CompressedBatch, and its columns
    decompress to exactly the messages (non-UTF-8 included)."""
    categories = [c for c, _ in entries]
    messages = [m for _, m in entries]
    frame = encode_compressed_call(
        seqid, "producer-\u00e9", sequence, categories, messages, _POLICY
    )
    if frame is None:  # compression did not pay for such a batch: sent as AppendPacked
        return
    batch = _decode(frame)
    assert batch.codec == ZSTD  # type: ignore[attr-defined]
    columns = decompress(ZSTD, batch.columns, batch.raw_bytes, cap=1 << 20)  # type: ignore[attr-defined]
    assert column_messages(columns, len(messages)) == messages
    assert frame == _thriftpy2_bytes(
        seqid,
        "producer-\u00e9",
        sequence,
        categories,
        batch.raw_bytes,
        batch.columns,  # type: ignore[attr-defined]
    )


def test_incompressible_batches_are_not_sent_compressed() -> None:
    """Random bytes cannot be compressed: the frame would only grow."""
    assert encode_compressed_call(1, "p", 0, ["c"], [os.urandom(10_000)], _POLICY) is None
    assert encode_compressed_call(1, "p", 0, ["c"] * 50, [b"x" * 200] * 50, _POLICY) is not None


def test_a_reply_to_append_compressed_is_read_as_one() -> None:
    result = decode_append_reply(reply(3, "AppendCompressed"), 3, "AppendCompressed")
    assert result.success.duplicate
