"""The in-flight budget: request bytes being read or processed stay within one server-wide limit.

A frame that does not fit waits for room; if none is made in time it is read
into nothing and answered busy, in the form its method's clients understand.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from thriftpy2.thrift import TMessageType

from logserver.tools.launcher import wait_for
from logserver.transport._budget import SMALL_FRAME, InflightBudget
from tests.transport.conftest import ServerFactory
from tests.transport.helpers import (
    AppendBatch,
    LogEntry,
    RecordingHandler,
    client,
    connect,
    encode_call,
    framed,
    log_thrift,
    ping_once,
    read_reply,
)

pytestmark = pytest.mark.timeout(30)

MiB = 2**20
LogService = log_thrift.LogService


def entries(nbytes: int, category: str = "big") -> list[Any]:
    """Records of about ``nbytes`` in all."""
    return [LogEntry(category=category, message="x" * 1000) for _ in range(nbytes // 1000)]


def reply_result(payload: bytes, method: str) -> Any:
    from thriftpy2.protocol.cybin import TCyBinaryProtocol  # type: ignore[attr-defined]
    from thriftpy2.transport.memory import TCyMemoryBuffer

    proto = TCyBinaryProtocol(TCyMemoryBuffer(payload), strict_read=True)
    proto.read_message_begin()
    result = getattr(LogService, f"{method}_result")()
    proto.read_struct(result)
    return result


# ------------------------------------------------------------------ the budget itself


def waiting_acquire(budget: InflightBudget, address: str, nbytes: int) -> threading.Event:
    """Start an acquire on a thread; the event is set once it is granted."""
    granted = threading.Event()

    def run() -> None:
        if budget.acquire(address, nbytes, 10.0):
            granted.set()

    threading.Thread(target=run, daemon=True).start()
    return granted


@pytest.fixture
def budget() -> Iterator[InflightBudget]:
    yield InflightBudget(4 * MiB)


def test_the_address_with_fewest_bytes_in_flight_goes_first(budget: InflightBudget) -> None:
    """A host that already holds room waits behind one that holds none, whoever came first."""
    assert budget.acquire("flood", 2 * MiB, 0)
    assert budget.acquire("flood", 2 * MiB, 0)
    flood_more = waiting_acquire(budget, "flood", 2 * MiB)
    wait_for(lambda: budget.waiting == 1, 5.0)
    quiet = waiting_acquire(budget, "quiet", 2 * MiB)
    wait_for(lambda: budget.waiting == 2, 5.0)
    budget.release("flood", 2 * MiB)
    assert quiet.wait(5.0)
    assert not flood_more.is_set() and budget.waiting == 1
    budget.release("flood", 2 * MiB)
    assert flood_more.wait(5.0)
    assert budget.used == 4 * MiB


def test_on_one_address_the_smaller_frame_goes_first(budget: InflightBudget) -> None:
    """Behind the same host's frames, a 2 MiB frame overtakes a 3 MiB one that came first."""
    assert budget.acquire("host", 4 * MiB, 0)
    large = waiting_acquire(budget, "host", 3 * MiB)
    wait_for(lambda: budget.waiting == 1, 5.0)
    small = waiting_acquire(budget, "host", 2 * MiB)
    wait_for(lambda: budget.waiting == 2, 5.0)
    budget.release("host", 4 * MiB)
    assert small.wait(5.0)
    assert not large.is_set()
    budget.release("host", 2 * MiB)
    assert large.wait(5.0)


def test_small_frames_never_wait_and_a_timed_out_waiter_reserves_nothing(
    budget: InflightBudget,
) -> None:
    """Frames up to SMALL_FRAME pass a full budget; a waiter that gives up takes nothing
    and lets those behind it in."""
    assert budget.acquire("a", 4 * MiB, 0)
    assert budget.acquire("a", SMALL_FRAME, 0)
    assert budget.acquire("b", 3 * MiB, 0.05) is False
    assert budget.used == 4 * MiB + SMALL_FRAME and budget.waiting == 0
    budget.release("a", SMALL_FRAME)
    budget.release("a", 4 * MiB)
    assert budget.used == 0
    assert "used=0" in repr(budget)


# --------------------------------------------------------------------- in a server


@pytest.fixture
def tight(make_server: ServerFactory, handler: RecordingHandler) -> Iterator[Any]:
    """A server with room for one 600 KB frame at a time (2 s frame timeout), and a first
    such frame held in its handler until the test releases it."""
    server = make_server(max_frame_bytes=MiB, max_inflight_bytes=MiB, frame_timeout_s=2.0)
    handler.slow_s = 20.0
    holder = client(server.port, timeout_s=20)
    call = threading.Thread(
        target=holder.Append,
        args=(AppendBatch(producer="slow", sequence=0, entries=entries(600_000)),),
        daemon=True,
    )
    call.start()
    assert handler.entered.wait(5.0)
    yield server
    handler.release.set()
    call.join(10.0)
    holder.close()


def test_a_frame_that_finds_no_room_in_time_is_answered_busy(
    tight: Any, handler: RecordingHandler
) -> None:
    """Log gets TRY_LATER and Append gets StorageUnavailable, each after waiting half the
    frame timeout; the frame is read into nothing, the connection stays usable, and small
    calls are answered meanwhile."""
    server = tight
    sock = connect(server.port, timeout_s=10.0)
    try:
        log_call = encode_call("Log", LogService.Log_args(messages=entries(600_000)), seqid=3)
        sock.sendall(framed(log_call))
        ping_once(server.port, timeout_s=1.0)  # answered while the Log frame waits
        name, mtype, seqid, payload = read_reply(sock)
        assert (name, mtype, seqid) == ("Log", TMessageType.REPLY, 3)
        assert reply_result(payload, "Log").success == log_thrift.ResultCode.TRY_LATER

        batch = AppendBatch(producer="p", sequence=1, entries=entries(600_000))
        sock.sendall(framed(encode_call("Append", LogService.Append_args(batch=batch), seqid=4)))
        name, mtype, seqid, payload = read_reply(sock)
        assert (name, mtype, seqid) == ("Append", TMessageType.REPLY, 4)
        unavailable = reply_result(payload, "Append").unavailable
        assert unavailable is not None and "busy" in unavailable.reason
    finally:
        sock.close()
    stats = server.stats()
    assert (stats.frames_busy, stats.frames_waited) == (2, 2)
    assert len(handler.batches) == 0 and handler.logged == []


def test_a_waiting_frame_is_read_once_room_is_made(tight: Any, handler: RecordingHandler) -> None:
    """When the frame ahead finishes within the wait, the waiting one is served normally."""
    server = tight
    c = client(server.port, timeout_s=10)
    try:
        answer: list[Any] = []
        waiter = threading.Thread(
            target=lambda: answer.append(c.Log(entries(600_000, "second"))), daemon=True
        )
        waiter.start()
        wait_for(lambda: server.stats().frames_waited == 1, 5.0, what="the frame to wait")
        handler.release.set()
        waiter.join(10.0)
        assert answer == [log_thrift.ResultCode.OK]
    finally:
        c.close()
    assert server.stats().frames_busy == 0
    assert len(handler.logged) == 600


def test_the_budget_must_hold_the_largest_frame(make_server: ServerFactory) -> None:
    """A budget smaller than the frame cap is refused when the limits are made."""
    from logserver.errors import ConfigError
    from logserver.transport import WireLimits

    with pytest.raises(ConfigError, match="max_inflight_bytes"):
        WireLimits(max_frame_bytes=2 * MiB, max_inflight_bytes=MiB)
    assert WireLimits(max_frame_bytes=2 * MiB).inflight_bytes == 8 * MiB


def test_a_client_that_leaves_while_waiting_holds_no_room_afterwards(
    tight: Any, handler: RecordingHandler
) -> None:
    """A peer that announces a frame, waits, and goes away costs nothing once it is gone:
    when the frame ahead is done, the whole budget is free again."""
    server = tight
    sock = connect(server.port)
    sock.sendall(framed(b"\x80\x01\x00\x01" + b"\x00" * 700_000)[:100_000])
    wait_for(lambda: server.stats().frames_waited == 1, 5.0)
    sock.close()
    handler.release.set()
    wait_for(lambda: "used=0 " in repr(server), 10.0, what="the budget to be free")
    ping_once(server.port)
