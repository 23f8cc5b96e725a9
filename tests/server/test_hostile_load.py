"""A real logserver under many idle and trickling connections, and bytes that are not UTF-8.

The server must keep serving a well-behaved client at its normal latency
(issue: "within 50 ms of normal") and keep its memory bounded.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from logserver.tools.launcher import wait_for
from logwire.idl import log_thrift
from tests.tcp_state import accept_queue, connections_to, read_by_server
from tests.thrift_clients import append, connect, read_all


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def pings(endpoint: str, count: int) -> int:
    """How many of ``count`` Pings on one connection were answered ``pong``."""
    with connect(endpoint) as client:
        return sum(client.Ping() == "pong" for _ in range(count))


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
def test_hundreds_of_idle_and_trickling_connections_do_not_stop_a_good_client(logserver_factory):
    """300 idle + 100 trickling connections, all accepted and read by the server: another
    client's Pings are answered and its batch stored while the server still holds all 400,
    and the server's RSS stays bounded. (How fast that Ping stays is bench's hostile_load.)
    All come from 127.0.0.1, so the per-address limit is raised above 400: with the default
    (256) the server would make room by closing the longest idle, tests/hostile's subject."""
    server = logserver_factory(
        extra_args=["--idle-timeout", "60", "--max-connections-per-peer", "1000"]
    )
    assert server.pid is not None
    assert pings(server.endpoint, 50) == 50
    rss_before = rss_mb(server.pid)
    with idle_and_trickling(server.port, idle=300, trickling=100) as socks:
        wait_for(
            lambda: accept_queue(server.port) == 0 and read_by_server(server.port, *socks),
            30,
            what="the server to accept all 400 and read the half frames",
        )
        answered = pings(server.endpoint, 50)
        result = append(server.endpoint, "good", 0, [("busy", f"m{i}") for i in range(100)])
        rss_during = rss_mb(server.pid)
        assert connections_to(server.port) >= 400  # none was dropped to make room
    assert answered == 50
    assert result.code == log_thrift.ResultCode.OK
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
