"""The wire server with well-behaved clients: calls, errors, limits and lifecycle."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from structlog.testing import capture_logs
from thriftpy2.thrift import TApplicationException

from logserver.errors import LogServerError
from logserver.tools.launcher import wait_for
from logserver.transport import AddressInUseError, ThriftServer, WireLimits, WireStats
from tests.transport.conftest import ServerFactory
from tests.transport.helpers import (
    AppendBatch,
    LogEntry,
    RecordingHandler,
    client,
    closed_by_peer,
    connect,
    encode_call,
    framed,
    log_thrift,
    ping_once,
    ping_raw,
    read_exception,
)

pytestmark = pytest.mark.timeout(30)


def test_thriftpy2_client_calls_log_append_ping(
    server: ThriftServer, handler: RecordingHandler
) -> None:
    """thriftpy2's framed + cybin client gets answers; strings reach the handler as bytes."""
    c = client(server.port)
    try:
        assert c.Ping() == "pong"
        entries = [LogEntry(category="app", message=f"line {i}") for i in range(3)]
        assert c.Log(entries) == log_thrift.ResultCode.OK
        result = c.Append(AppendBatch(producer="p1", sequence=0, entries=entries))
        assert (result.code, result.stored) == (log_thrift.ResultCode.OK, 3)
        assert c.Categories() == ["app"]
    finally:
        c.close()
    assert handler.logged == [(b"app", b"line 0"), (b"app", b"line 1"), (b"app", b"line 2")]
    assert handler.batches[0].producer == b"p1"
    assert server.stats().frames == 4


def test_large_batches_arrive_whole(server: ThriftServer, handler: RecordingHandler) -> None:
    """Batches of 1,000 and 20,000 entries (120 KB, 2.4 MB frames) reach the handler intact."""
    c = client(server.port)
    try:
        for count in (1000, 20_000):
            entries = [LogEntry(category="big", message=f"{i:0100d}") for i in range(count)]
            assert c.Log(entries) == log_thrift.ResultCode.OK
    finally:
        c.close()
    assert len(handler.logged) == 21_000
    assert handler.logged[20_999] == (b"big", f"{19_999:0100d}".encode())


def test_declared_exception_reaches_the_client(server: ThriftServer) -> None:
    """A declared exception is the client's to catch, and the connection goes on."""
    c = client(server.port)
    try:
        with pytest.raises(log_thrift.InvalidRequest) as raised:
            c.Append(AppendBatch(producer="bad", sequence=0, entries=[]))
        assert raised.value.reason == "producer 'bad' is not allowed"
        assert c.Ping() == "pong"
    finally:
        c.close()
    assert server.stats().internal_errors == 0


def test_undeclared_exception_becomes_internal_error_and_connection_stays(
    server: ThriftServer,
) -> None:
    """A handler bug gives INTERNAL_ERROR with its message, logged once; the connection lives."""
    c = client(server.port)
    try:
        with capture_logs() as logs:
            with pytest.raises(TApplicationException) as raised:
                c.Status()
            assert c.Ping() == "pong"
    finally:
        c.close()
    assert raised.value.type == TApplicationException.INTERNAL_ERROR
    assert raised.value.message == "Status: ZeroDivisionError: status is broken"
    errors = [e for e in logs if e["log_level"] == "error"]
    assert len(errors) == 1 and errors[0]["method"] == "Status"
    assert server.stats().internal_errors == 1
    assert server.stats().connections_total == 1


def test_unknown_method_gets_unknown_method_and_connection_stays(server: ThriftServer) -> None:
    """A method the service does not have is answered with UNKNOWN_METHOD, not a hang-up."""
    with connect(server.port) as sock:
        sock.sendall(
            framed(encode_call("Ping", log_thrift.LogService.Ping_args()).replace(b"Ping", b"Pong"))
        )
        exc = read_exception(sock)
        assert exc.type == TApplicationException.UNKNOWN_METHOD
        assert ping_raw(sock) == "pong"


def test_second_server_on_the_same_port_fails(server: ThriftServer, handler: object) -> None:
    """No port sharing: a second server on a taken port raises AddressInUseError."""
    second = ThriftServer(handler, "127.0.0.1", server.port)
    with pytest.raises(AddressInUseError) as raised:
        second.start()
    assert isinstance(raised.value, LogServerError)
    assert raised.value.port == server.port
    ping_once(server.port)


def test_a_second_start_raises_and_the_server_keeps_serving(server: ThriftServer) -> None:
    """start() on a started server raises RuntimeError naming the server (it used to hang:
    the message's repr took the lock start() held), and the server goes on serving."""
    with pytest.raises(RuntimeError, match="was already started"):
        server.start()
    ping_once(server.port)


def test_port_zero_picks_a_free_port(server: ThriftServer) -> None:
    """port=0 binds a free port, and .port tells which."""
    assert server.port > 0
    with socket.create_connection(("127.0.0.1", server.port), timeout=2):
        pass


def test_stop_accepting_is_prompt_and_keeps_existing_connections(
    make_server: ServerFactory, handler: RecordingHandler
) -> None:
    """stop_accepting() returns at once, frees the port and still serves open connections."""
    server = make_server()
    c = client(server.port)
    try:
        assert c.Ping() == "pong"
        started = time.monotonic()
        server.stop_accepting()
        assert time.monotonic() - started < 1.0
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", server.port), timeout=2)
        assert c.Ping() == "pong"
        # The port is free again: a new server can take it.
        replacement = ThriftServer(handler, "127.0.0.1", server.port)
        replacement.start()
        replacement.close()
    finally:
        c.close()


def test_close_lets_a_request_in_flight_finish(
    make_server: ServerFactory, handler: RecordingHandler
) -> None:
    """close() while a slow request runs waits for its reply, then returns."""
    server = make_server()
    handler.slow_s = 0.5
    outcome: list[object] = []

    def call() -> None:
        c = client(server.port)
        try:
            outcome.append(c.Append(AppendBatch(producer="slow", sequence=0, entries=[])))
        except BaseException as e:
            outcome.append(e)
        finally:
            c.close()

    caller = threading.Thread(target=call)
    caller.start()
    assert handler.entered.wait(5.0)
    assert server.wait_idle(0.05) is False
    started = time.monotonic()
    server.close(timeout=5.0)
    elapsed = time.monotonic() - started
    caller.join(5.0)
    assert len(outcome) == 1 and outcome[0].code == log_thrift.ResultCode.OK  # type: ignore[attr-defined]
    assert elapsed < 3.0
    assert server.stats().connections_open == 0


def test_close_cuts_idle_connections_at_once(make_server: ServerFactory) -> None:
    """close() does not wait for idle clients: their connections are closed immediately."""
    server = make_server()
    socks = [connect(server.port) for _ in range(3)]
    wait_for(lambda: server.stats().connections_open == 3, 5.0)
    started = time.monotonic()
    server.close(timeout=5.0)
    assert time.monotonic() - started < 1.0
    assert all(closed_by_peer(s, 2.0) for s in socks)
    for s in socks:
        s.close()


def test_wait_idle_reports_requests_in_flight(
    make_server: ServerFactory, handler: RecordingHandler
) -> None:
    """wait_idle() is False while a request runs and True once it is answered."""
    server = make_server()
    handler.slow_s = 5.0
    c = client(server.port)
    caller = threading.Thread(
        target=lambda: c.Append(AppendBatch(producer="slow", sequence=0, entries=[]))
    )
    caller.start()
    try:
        assert handler.entered.wait(5.0)
        assert server.wait_idle(0.1) is False
        handler.release.set()
        assert server.wait_idle(5.0) is True
    finally:
        handler.release.set()
        caller.join(5.0)
        c.close()


def test_max_connections_closes_the_longest_idle_to_make_room(make_server: ServerFactory) -> None:
    """Connection N+1 is served: the connection idle longest is closed (and counted) for it;
    the others keep working."""
    server = make_server(max_connections=3)
    clients = [client(server.port) for _ in range(3)]
    for c in clients:
        assert c.Ping() == "pong"
        # Its thread marks it idle just after the reply: wait, so that the order is known.
        assert server.wait_idle(5.0)
    newcomer = client(server.port)
    assert newcomer.Ping() == "pong"
    assert server.stats().connections_evicted == 1
    assert server.stats().connections_refused == 0
    with pytest.raises(Exception):  # noqa: B017 - thriftpy2 raises whatever the socket says
        clients[0].Ping()
    for c in clients[1:]:
        assert c.Ping() == "pong"
    for c in [*clients, newcomer]:
        c.close()


def test_max_connections_refuses_the_next_when_every_connection_is_busy(
    make_server: ServerFactory, handler: RecordingHandler
) -> None:
    """With every connection in the middle of a call, connection N+1 is closed at once (and
    counted); once a call ends, new connections are served again."""
    server = make_server(max_connections=2)
    busy = [client(server.port), client(server.port)]
    callers = [
        threading.Thread(
            target=c.Append, args=(AppendBatch(producer="slow", sequence=i, entries=[]),)
        )
        for i, c in enumerate(busy)
    ]
    handler.slow_s = 10.0
    for t in callers:
        t.start()
    try:
        wait_for(lambda: server.wait_idle(0) is False and len(handler.batches) == 0, 5.0)
        wait_for(lambda: _in_flight(server) == 2, 5.0, what="both calls in flight")
        extra = connect(server.port)
        assert closed_by_peer(extra, 2.0)
        extra.close()
        assert server.stats().connections_refused == 1
    finally:
        handler.release.set()
        for t in callers:
            t.join(5.0)
    ping_once(server.port)
    for c in busy:
        c.close()


def _in_flight(server: ThriftServer) -> int:
    return int(repr(server).split("in_flight=")[1].split()[0])


def test_idle_connection_closed_quietly(
    make_server: ServerFactory, capfd: pytest.CaptureFixture[str]
) -> None:
    """An idle client is closed after idle_timeout_s: counted, debug only, no traceback."""
    server = make_server(idle_timeout_s=0.3)
    with capture_logs() as logs:
        sock = connect(server.port)
        started = time.monotonic()
        assert closed_by_peer(sock, 5.0)
        elapsed = time.monotonic() - started
        sock.close()
        wait_for(lambda: server.stats().idle_closed == 1, 5.0)
    assert 0.2 < elapsed < 3.0
    assert server.stats().connection_errors == 0
    assert [e for e in logs if e["log_level"] not in ("debug", "info")] == []
    assert any(e["event"] == "idle connection closed" for e in logs)
    assert not any("exc_info" in e or "exception" in e for e in logs)
    assert "Traceback" not in capfd.readouterr().err


def test_trickling_client_is_cut_after_frame_timeout(make_server: ServerFactory) -> None:
    """A frame sent one byte per second is cut when frame_timeout_s runs out; others are served."""
    server = make_server(frame_timeout_s=1.5, idle_timeout_s=10.0)
    frame = framed(encode_call("Ping", log_thrift.LogService.Ping_args()))
    sock = connect(server.port)
    started = time.monotonic()
    cut_after: float | None = None
    try:
        for byte in frame:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            sock.settimeout(1.0)
            try:
                if sock.recv(1) == b"":
                    break
            except TimeoutError:
                continue
            except OSError:
                break
        cut_after = time.monotonic() - started
    finally:
        sock.close()
    assert cut_after is not None and 1.0 < cut_after < 4.0
    wait_for(lambda: server.stats().frame_timeouts == 1, 5.0)
    ping_once(server.port)


def test_limits_are_validated() -> None:
    """Nonsensical limits are refused when the policy is made, not when a client arrives."""
    with pytest.raises(LogServerError):
        WireLimits(max_frame_bytes=0)
    with pytest.raises(LogServerError):
        WireLimits(max_connections=0)
    with pytest.raises(LogServerError):
        WireLimits(idle_timeout_s=0)


def test_repr_and_stats_show_state(server: ThriftServer) -> None:
    """repr names address, state and counters; stats() is a frozen snapshot."""
    ping_once(server.port)
    text = repr(server)
    assert f"127.0.0.1:{server.port}" in text and "serving" in text
    stats = server.stats()
    assert isinstance(stats, WireStats)
    assert (stats.connections_total, stats.frames) == (1, 1)
    with pytest.raises(AttributeError):
        stats.frames = 2  # type: ignore[misc]


def test_the_counters_the_server_bumps_are_the_stats_it_reports() -> None:
    """``WireCounter`` (the closed set of names ``Bookkeeping.count`` takes) is every WireStats field but
    the current number of connections, so a new counter cannot be bumped without being reported."""
    import dataclasses
    import typing

    from logserver.transport._limits import WireCounter

    fields = {f.name for f in dataclasses.fields(WireStats)} - {"connections_open"}
    assert set(typing.get_args(WireCounter)) == fields
