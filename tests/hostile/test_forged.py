"""A block forged inside a message, with real ``logserver serve`` processes.

A message is arbitrary bytes: a client can fill one with copies of a real
stored block (everything ``ReadBlocks`` returns) or with blocks it made up,
each with a valid check, under another producer's id and next sequence. Only
the per-category marker, which never leaves the server, tells a real block
from one inside a message. When damage makes a reader (or a restart's
recovery) resynchronise inside such a message, none of these blocks may be
taken for real: not served to readers, and not remembered by the dedup index
(the victim's next batch would be answered "duplicate" and never stored).
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

import pytest

from logserver.storage._blockcodec import BLOCK_HEADER_BYTES, encode_block
from logserver.storage._format import encode_records
from logserver.tools.launcher import LogServerProcess
from logserver.tools.reader import connect, read_server
from logwire.blocks import unpack_runs
from logwire.compression import NONE, join_columns
from logwire.idl import log_thrift
from logwire.packed import pack_lengths
from logwire.serverset import Endpoint
from tests.faults.support import server_events

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

ServerFactory = Callable[..., LogServerProcess]


def _append(endpoint: Endpoint, producer: str, sequence: int, category: str, message: bytes) -> Any:
    batch = log_thrift.AppendBatch(
        producer=producer,
        sequence=sequence,
        entries=[log_thrift.LogEntry(category=category, message=message)],
    )
    with connect(endpoint, timeout=10) as client:
        return client.Append(batch)


def _send_as_is(endpoint: Endpoint, producer: str, category: str, message: bytes) -> Any:
    """One message in an AppendCompressed of codec none: stored byte for byte as sent."""
    columns = join_columns(pack_lengths([message]), [message])
    batch = log_thrift.CompressedBatch(
        producer=producer,
        sequence=0,
        runs=[log_thrift.CategoryRun(category=category, count=1)],
        codec=NONE,
        raw_bytes=len(columns),
        columns=columns,
    )
    with connect(endpoint, timeout=10) as client:
        return client.AppendCompressed(batch)


def _marker(server: LogServerProcess, category: str) -> bytes:
    """The marker in the header of a category's first segment (bytes 12 to 28)."""
    first = sorted((server.data_dir / "categories" / category).glob("*.seg"))[0]
    return first.read_bytes()[12:28]


def test_blocks_forged_inside_a_message_are_never_served_nor_remembered(
    logserver_factory: ServerFactory,
) -> None:
    """The attacker reads the victim's block with ReadBlocks and sends one message (codec
    none: stored byte for byte) holding, for every marker it could know (zeros, its own
    server's, even another category's of the victim's server), a copy of that block and a
    block of its own claiming the victim's next sequence. The server is SIGKILLed, the
    attacker's block damaged on disk so that recovery and readers resynchronise inside the
    message, and the server restarted. The figures: 0 forged blocks served (of 6), 0
    forged sequences remembered: the victim's next batch is stored, not a duplicate."""
    server = logserver_factory("victims")
    own = logserver_factory("attackers-own")
    endpoint = Endpoint.parse(server.endpoint)
    assert _append(endpoint, "victim", 1, "c", b"the victim's record").stored == 1
    assert _append(endpoint, "p", 1, "d", b"another category").stored == 1
    assert _append(Endpoint.parse(own.endpoint), "a", 1, "c", b"x").stored == 1
    with connect(endpoint, timeout=10) as client:
        (real,) = client.ReadBlocks("c", 0, 1 << 20).blocks
    markers = (bytes(16), _marker(own, "c"), _marker(server, "d"))
    forged = b""
    for marker in markers:
        for sequence, payload in ((real.sequence, real.columns), (2, real.columns)):
            forged += encode_block(
                marker,
                producer=real.producer.encode(),
                sequence=sequence,
                batch_count=real.batch_count,
                received_ns=real.received_ns,
                index_runs=unpack_runs(real.index_runs, real.count),
                codec=real.codec,
                raw_bytes=real.raw_bytes,
                payload=payload,
                end=True,
            )
    message = b"copies:" + forged * 3
    assert _send_as_is(endpoint, "attacker", "c", message).stored == 1
    assert _append(endpoint, "p", 2, "c", b"after").stored == 1
    assert [r.message for r in read_server(endpoint, "c")] == [
        b"the victim's record",
        message,
        b"after",
    ]

    server.signal(signal.SIGKILL)
    server.kill()
    (segment,) = (server.data_dir / "categories" / "c").glob("*.seg")
    data = bytearray(segment.read_bytes())
    assert data.count(forged) == 3  # stored as sent: the copies are on disk, byte for byte
    attackers = data.index(b"attacker") - BLOCK_HEADER_BYTES
    data[attackers + 20] ^= 0xFF  # its check: the block is damage, resync starts inside it
    segment.write_bytes(bytes(data))

    server.start()
    recovered = server_events(server, "storage recovered")[-1]
    assert recovered["clean_categories"] == 0  # after a crash: the segment was read whole
    records = list(read_server(endpoint, "c"))
    assert [(r.producer, r.sequence, r.message) for r in records] == [
        ("victim", 1, b"the victim's record"),
        ("p", 2, b"after"),
    ]
    following = _append(endpoint, "victim", 2, "c", b"the victim's next record")
    assert (following.duplicate, following.stored) == (False, 1)
    assert _append(endpoint, "victim", 1, "c", b"the victim's record").duplicate


def test_forged_version_1_records_after_a_lost_first_page_are_never_served_nor_remembered(
    logserver_factory: ServerFactory,
) -> None:
    """Version 1's record format has a public magic and no secret: the attacker's message
    (codec none) is mostly records of the victim's next sequences in that format. The
    server is SIGKILLed and the segment holding the message loses its first page (header
    and first block zeroed, up to the attacker's block), so the restart must find the
    segment's format from what follows: the markers the server wrote (the category's
    other segments'), never the message's bytes. The figures: 0 forged records served
    (of 10), 0 forged sequences remembered; the real blocks after the damage are served."""
    server = logserver_factory(extra_args=["--segment-bytes", "8192"])
    endpoint = Endpoint.parse(server.endpoint)
    assert _append(endpoint, "p", 0, "c", b"the first record").stored == 1
    forged = b"".join(
        encode_records(b"victim", 7 + k, 1, 1, [0], [b"forged " * 40]) for k in range(10)
    )
    message = b"x" * (len(forged) // 2) + forged
    assert _send_as_is(endpoint, "attacker", "c", message).stored == 1
    later = [f"later record {n} ".encode() * 20 for n in range(40)]
    for sequence, record in enumerate(later, start=1):  # later segments: the siblings
        assert _append(endpoint, "p", sequence, "c", record).stored == 1

    server.signal(signal.SIGKILL)
    server.kill()
    segments = sorted((server.data_dir / "categories" / "c").glob("*.seg"))
    assert len(segments) >= 2
    data = bytearray(segments[0].read_bytes())
    assert forged in data  # stored as sent
    lost = data.index(b"attacker") - BLOCK_HEADER_BYTES
    data[:lost] = bytes(lost)
    segments[0].write_bytes(bytes(data))

    server.start()
    records = list(read_server(endpoint, "c"))
    assert "victim" not in {r.producer for r in records}
    assert [r.message for r in records] == [message, *later]
    for sequence in (7, 16):
        following = _append(endpoint, "victim", sequence, "c", b"the victim's own")
        assert (following.duplicate, following.stored) == (False, 1)
