"""Hostile and broken peers: each is handled, and everyone else keeps being served."""

from __future__ import annotations

import random
import ssl
import struct
import tracemalloc
from pathlib import Path

import pytest
from structlog.testing import capture_logs
from thriftpy2.thrift import TApplicationException

from logserver.tools.launcher import wait_for
from logserver.transport import ThriftServer
from logwire.idl import log_thrift
from tests.tcp_state import handled_by_server
from tests.transport.conftest import ServerFactory
from tests.transport.helpers import (
    AppendBatch,
    LogEntry,
    LogService,
    PingMonitor,
    client,
    closed_by_peer,
    connect,
    encode_call,
    framed,
    message_header,
    ping_once,
    ping_raw,
    read_exception,
)

pytestmark = pytest.mark.timeout(30)

T_LIST, T_VOID, T_STOP = 15, 1, 0


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def list_void_bomb() -> bytes:
    """The 25-byte request that freezes thriftpy2: Ping with a list<void> of 2^31-1 elements."""
    return (
        message_header(b"Ping")
        + struct.pack(">bhbi", T_LIST, 1, T_VOID, 2**31 - 1)
        + bytes([T_STOP])
    )


@pytest.mark.parametrize("length", [2**31 - 1, 2**30], ids=["0x7fffffff", "1GiB"])
def test_huge_length_prefix_is_refused_without_allocating(
    server: ThriftServer, length: int
) -> None:
    """A huge length prefix closes the connection, allocates nothing, and pings keep working."""
    with PingMonitor(server.port) as pings:
        rss_before = _rss_bytes()
        tracemalloc.start()
        try:
            for _ in range(3):
                sock = connect(server.port)
                sock.sendall(struct.pack(">i", length) + message_header(b"Log") + b"\x00" * 64)
                assert closed_by_peer(sock, 5.0)
                sock.close()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        rss_growth = _rss_bytes() - rss_before
        count_before = pings.count
        wait_for(lambda: pings.count > count_before + 3, 5.0, what="pings after the refusals")
    assert peak < 4 * 2**20, f"{peak} bytes allocated while refusing"
    assert rss_growth < 64 * 2**20, f"RSS grew by {rss_growth} bytes"
    assert pings.errors == []
    assert server.stats().frames_too_large == 3
    ping_once(server.port)


def test_announced_frames_cost_only_what_arrives(make_server: ServerFactory) -> None:
    """Peers announcing max-size frames and sending little pin little memory.

    Measured (the peak, with tracemalloc) once the server has dealt with every
    byte they sent, the first 4 bytes of each frame's body included: read as part
    of an admitted frame, or into nothing for a frame the in-flight budget held
    back (after half the frame timeout: 1 s here), or its connection cut at the
    frame timeout. Every buffer the server made for them has existed by then.
    """
    server = make_server(frame_timeout_s=2.0)
    tracemalloc.start()
    socks = []
    try:
        for _ in range(20):
            sock = connect(server.port)
            sock.sendall(struct.pack(">i", server.limits.max_frame_bytes) + b"\x80\x01\x00\x01")
            socks.append(sock)
        wait_for(
            lambda: handled_by_server(server.port, *socks),
            10.0,
            what="the server to deal with every announced frame's first bytes",
        )
        assert server.stats().connections_total == 20
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        for sock in socks:
            sock.close()
    assert peak < 16 * 2**20, f"{peak} bytes held for 20 announced 16 MiB frames"
    ping_once(server.port)


def test_slightly_too_large_batch_gets_batch_too_large(make_server: ServerFactory) -> None:
    """A real client whose Append frame exceeds the cap reads the declared BatchTooLarge
    naming the limit (so logclient splits the batch), not a reset or a server error."""
    server = make_server(max_frame_bytes=64 * 1024)
    entries = [LogEntry(category="app", message="x" * 100) for _ in range(1000)]
    c = client(server.port)
    try:
        with pytest.raises(log_thrift.BatchTooLarge) as raised:
            c.Append(AppendBatch(producer="p", sequence=0, entries=entries))
    finally:
        c.close()
    assert raised.value.limit == 65536 and raised.value.actual > 65536
    assert "exceeds the server's limit of 65536 bytes" in raised.value.reason
    assert server.stats().frames_too_large == 1
    ping_once(server.port)


def test_slightly_too_large_scribe_log_gets_a_clear_error(make_server: ServerFactory) -> None:
    """Scribe's Log declares no such exception: a too-large frame gets a PROTOCOL_ERROR
    naming the limit, which Scribe clients raise, instead of a reset."""
    server = make_server(max_frame_bytes=64 * 1024)
    entries = [LogEntry(category="app", message="x" * 100) for _ in range(1000)]
    c = client(server.port)
    try:
        with pytest.raises(TApplicationException) as raised:
            c.Log(entries)
    finally:
        c.close()
    assert raised.value.type == TApplicationException.PROTOCOL_ERROR
    assert "exceeds the server's limit of 65536 bytes" in str(raised.value.message)
    ping_once(server.port)


def test_list_void_bomb_does_not_stall_the_server(server: ThriftServer) -> None:
    """The 25-byte list<void> bomb is refused by the guard (its "element type 1" error: thriftpy2,
    which would spin for seconds skipping 2^31-1 voids, never sees it); another client's pings
    go on being answered. (How fast they stay is bench's hostile_load.)"""
    bomb = list_void_bomb()
    assert len(bomb) == 25
    with PingMonitor(server.port) as pings:
        sock = connect(server.port)
        for _ in range(5):
            sock.sendall(framed(bomb))
            exc = read_exception(sock)
            assert exc.type == TApplicationException.PROTOCOL_ERROR
            assert "element type 1" in str(exc.message)
        count_before = pings.count
        wait_for(lambda: pings.count > count_before + 3, 5.0, what="pings after the bomb")
        sock.close()
    assert pings.errors == []
    assert server.stats().protocol_errors == 5


def test_deep_nesting_is_refused(server: ThriftServer) -> None:
    """40 nested lists are refused with PROTOCOL_ERROR; the same connection keeps working."""
    depth = 40
    nested = b"".join(struct.pack(">bi", T_LIST, 1) for _ in range(depth - 1))
    nested += struct.pack(">bi", 8, 0)  # innermost: an empty list<i32>
    payload = message_header(b"Ping") + struct.pack(">bh", T_LIST, 1) + nested + b"\x00"
    with connect(server.port) as sock:
        sock.sendall(framed(payload))
        exc = read_exception(sock)
        assert exc.type == TApplicationException.PROTOCOL_ERROR
        assert "too deep" in str(exc.message)
        assert ping_raw(sock) == "pong"


def test_truncated_frame_is_refused(server: ThriftServer) -> None:
    """A frame whose args struct is cut short gets PROTOCOL_ERROR; the connection keeps working."""
    whole = encode_call(
        "Log", LogService.Log_args(messages=[LogEntry(category="a", message="b" * 50)])
    )
    with connect(server.port) as sock:
        for cut in (len(whole) - 1, len(whole) - 30, 20):
            sock.sendall(framed(whole[:cut]))
            assert read_exception(sock).type == TApplicationException.PROTOCOL_ERROR
        assert ping_raw(sock) == "pong"
    assert server.stats().protocol_errors == 3


def test_connection_dropped_mid_frame(server: ThriftServer) -> None:
    """A peer that vanishes half-way through a frame is counted; nothing else notices."""
    for _ in range(3):
        sock = connect(server.port)
        sock.sendall(struct.pack(">i", 1000) + b"\x80\x01\x00\x01" + b"\x00" * 10)
        sock.close()
    wait_for(lambda: server.stats().connection_errors == 3, 5.0)
    assert server.stats().connections_open == 0
    assert server.wait_idle(1.0)
    ping_once(server.port)


def test_zero_and_negative_lengths_close_the_connection(server: ThriftServer) -> None:
    """Lengths 0 and -1 are not frames: the connection is closed and counted."""
    for length in (0, -1):
        sock = connect(server.port)
        sock.sendall(struct.pack(">i", length))
        assert closed_by_peer(sock, 5.0)
        sock.close()
    assert server.stats().protocol_errors == 2
    ping_once(server.port)


def test_random_bytes(make_server: ServerFactory) -> None:
    """Random bytes never hurt the server: each connection is answered or closed in time."""
    server = make_server(frame_timeout_s=0.5)
    rng = random.Random(1234)
    for i in range(30):
        junk = rng.randbytes(rng.randint(1, 200))
        if i % 3 == 0:
            # A plausible small length, so the junk reaches the guard.
            junk = struct.pack(">i", len(junk)) + junk
        sock = connect(server.port)
        sock.sendall(junk)
        sock.settimeout(3.0)
        try:
            while sock.recv(65536):
                sock.sendall(b"")
        except TimeoutError:
            pytest.fail(f"connection {i} neither answered nor closed")
        except OSError:
            pass
        sock.close()
    ping_once(server.port)
    stats = server.stats()
    assert stats.connections_open <= 1
    assert stats.frames_too_large + stats.protocol_errors + stats.frame_timeouts > 0


def test_http_request_is_refused_with_rate_limited_warnings(server: ThriftServer) -> None:
    """'GET ' reads as a ~1.2 GB length: closed, counted, and a flood logs one warning."""
    with capture_logs() as logs:
        for _ in range(5):
            sock = connect(server.port)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            assert closed_by_peer(sock, 5.0)
            sock.close()
    assert server.stats().frames_too_large == 5
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert len(warnings) == 1
    assert warnings[0]["length"] == int.from_bytes(b"GET ", "big")
    ping_once(server.port)


def test_tls_client_hello_is_refused(server: ThriftServer) -> None:
    """A TLS client on the plain port is closed at once, counted, with one warning."""
    context = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    hello = outgoing.read()
    assert hello[:2] == b"\x16\x03"
    with capture_logs() as logs:
        sock = connect(server.port)
        sock.sendall(hello)
        assert closed_by_peer(sock, 5.0)
        sock.close()
    assert server.stats().frames_too_large == 1
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == [
        "TLS handshake on the plain Thrift port"
    ]
    ping_once(server.port)


def test_oneway_message_is_not_answered(server: ThriftServer) -> None:
    """A message sent as ONEWAY gets no reply (it would be read as the next call's answer)."""
    with connect(server.port) as sock:
        sock.sendall(framed(message_header(b"Ping", mtype=4) + b"\x00"))
        assert ping_raw(sock, seqid=99) == "pong"
