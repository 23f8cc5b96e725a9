"""A real logserver under many idle and trickling connections, and bytes that are not UTF-8.

The server must keep serving a well-behaved client at its normal latency
(issue: "within 50 ms of normal") and keep its memory bounded.
"""

from __future__ import annotations

import contextlib
import socket
import statistics
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from logwire.idl import log_thrift
from tests.thrift_clients import append, connect, read_all


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def ping_latencies(endpoint: str, count: int) -> list[float]:
    """Round trips of Ping on one connection, in seconds."""
    out = []
    with connect(endpoint) as client:
        for _ in range(count):
            started = time.perf_counter()
            assert client.Ping() == "pong"
            out.append(time.perf_counter() - started)
    return out


@contextlib.contextmanager
def idle_and_trickling(port: int, idle: int, trickling: int) -> Iterator[list[socket.socket]]:
    """``idle`` connections that send nothing, and ``trickling`` ones that send half a frame."""
    socks = []
    try:
        for _ in range(idle):
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        for _ in range(trickling):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(
                struct.pack(">i", 1000) + b"\x80\x01\x00\x01\x00\x00"
            )  # a frame that never ends
            socks.append(s)
        yield socks
    finally:
        for s in socks:
            s.close()


@pytest.mark.timeout(120)
def test_hundreds_of_idle_and_trickling_connections_do_not_slow_a_good_client(logserver_factory):
    """300 idle + 100 trickling connections: another client's median Ping stays within 50 ms of
    normal, its batches are stored, and the server's RSS stays bounded."""
    server = logserver_factory(extra_args=["--idle-timeout", "60"])
    assert server.pid is not None
    normal = statistics.median(ping_latencies(server.endpoint, 50))
    rss_before = rss_mb(server.pid)
    with idle_and_trickling(server.port, idle=300, trickling=100):
        under_attack = statistics.median(ping_latencies(server.endpoint, 50))
        result = append(server.endpoint, "good", 0, [("busy", f"m{i}") for i in range(100)])
        rss_during = rss_mb(server.pid)
    assert result.code == log_thrift.ResultCode.OK
    assert under_attack <= normal + 0.050, (normal, under_attack)
    assert rss_during < rss_before + 100, (rss_before, rss_during)
    assert len(read_all(server.endpoint, "busy")) == 100


def test_messages_that_are_not_utf8_are_stored_byte_for_byte(logserver_factory):
    """A message's bytes are stored and read back exactly, valid UTF-8 or not."""
    server = logserver_factory()
    payloads = [b"\xff\xfe\x00raw", b"caf\xc3\xa9", b"\xc3\x28 broken", b""]
    with connect(server.endpoint) as client:
        client.Append(
            log_thrift.AppendBatch(
                producer="bin",
                sequence=0,
                entries=[log_thrift.LogEntry(category="bytes", message=p) for p in payloads],
            )
        )
    assert [r.message for r in read_all(server.endpoint, "bytes")] == payloads


def test_a_category_that_is_not_utf8_gets_invalid_category(logserver_factory):
    """A category that is not ASCII is refused with the declared error; the server keeps serving."""
    server = logserver_factory()
    with connect(server.endpoint) as client:
        with pytest.raises(log_thrift.InvalidCategory):
            client.Append(
                log_thrift.AppendBatch(
                    producer="p",
                    sequence=0,
                    entries=[log_thrift.LogEntry(category=b"\xff\xfe", message=b"x")],
                )
            )
        assert client.Ping() == "pong"
