"""Connections are shared fairly: idle ones make room, and one address cannot take them all.

Every peer here is on loopback; other loopback source addresses (127.0.0.2, ...)
stand for other hosts.
"""

from __future__ import annotations

import socket

import pytest

from logserver.tools.launcher import wait_for
from logserver.transport._connections import Connection, ConnectionTable
from tests.transport.conftest import ServerFactory
from tests.transport.helpers import closed_by_peer, ping_raw

pytestmark = pytest.mark.timeout(30)


def connect_from(address: str, port: int) -> socket.socket:
    """A connection to the server from loopback source ``address``."""
    return socket.create_connection(("127.0.0.1", port), timeout=5.0, source_address=(address, 0))


def test_an_address_at_its_cap_makes_room_from_its_own_idle_connections(
    make_server: ServerFactory,
) -> None:
    """With a cap of 3 per address, a fourth connection from 127.0.0.2 closes that address's
    connection idle longest, never one of 127.0.0.1's, even when 127.0.0.1's is idle longer."""
    server = make_server(max_connections=100, max_connections_per_peer=3)
    local = connect_from("127.0.0.1", server.port)
    assert ping_raw(local) == "pong"
    others = [connect_from("127.0.0.2", server.port) for _ in range(3)]
    for sock in others:
        assert ping_raw(sock) == "pong"
        assert server.wait_idle(5.0)  # marked idle in this order
    fourth = connect_from("127.0.0.2", server.port)
    assert ping_raw(fourth) == "pong"
    assert closed_by_peer(others[0], 2.0)
    assert server.stats().connections_evicted == 1
    assert ping_raw(local) == "pong"
    for sock in others[1:]:
        assert ping_raw(sock) == "pong"
    for sock in [local, *others, fourth]:
        sock.close()


def test_a_connection_whose_request_has_arrived_is_not_taken_for_idle(
    make_server: ServerFactory,
) -> None:
    """The longest-idle connection whose next frame is already in the socket keeps its place
    (its thread just has not noticed yet): the next idle one makes room instead."""
    server = make_server(max_connections=2)
    first = connect_from("127.0.0.1", server.port)
    second = connect_from("127.0.0.1", server.port)
    assert ping_raw(first) == "pong"
    assert ping_raw(second) == "pong"
    # A table whose first idle connection looks readable: the accept loop's view of
    # "the frame is there, its thread is about to read it".
    table = ConnectionTable(2, 2, pending=lambda sock: sock is a.sock)
    a = Connection(first, "a", "127.0.0.1")
    b = Connection(second, "b", "127.0.0.1")
    assert table.admit(a) == []
    assert table.admit(b) == []
    victims = table.admit(Connection(socket.socket(), "c", "127.0.0.1"))
    assert victims == [(b, "server_full")]
    assert not a.evicted and b.evicted
    for sock in (first, second):
        sock.close()


def test_connections_in_a_call_are_never_closed_to_make_room() -> None:
    """Busy connections are not candidates; with none idle the newcomer is refused."""
    table = ConnectionTable(2, 2, pending=lambda sock: False)
    conns = [Connection(socket.socket(), f"p{i}", "127.0.0.1") for i in range(3)]
    assert table.admit(conns[0]) == []
    assert table.admit(conns[1]) == []
    table.set_busy(conns[0])
    table.set_busy(conns[1])
    assert table.admit(conns[2]) is None
    table.set_idle(conns[1])
    assert table.admit(conns[2]) == [(conns[1], "server_full")]
    assert len(table) == 3  # the evicted one stays until its thread is done
    table.remove(conns[1])
    assert len(table) == 2
    for c in conns:
        c.sock.close()


def test_an_idle_flood_from_one_address_does_not_lock_out_another(
    make_server: ServerFactory,
) -> None:
    """200 idle connections from 127.0.0.2 against a server of 50 connections, 10 per
    address: 127.0.0.1 connects and is answered throughout, and the flood holds at most
    its cap."""
    server = make_server(max_connections=50, max_connections_per_peer=10)
    flood = [connect_from("127.0.0.2", server.port) for _ in range(200)]
    try:
        wait_for(lambda: server.stats().connections_total == 200, 10.0, what="the flood accepted")
        wait_for(lambda: server.stats().connections_open <= 10, 10.0, what="the flood capped")
        for _ in range(5):
            sock = connect_from("127.0.0.1", server.port)
            assert ping_raw(sock) == "pong"
            sock.close()
        assert server.stats().connections_evicted == 190
    finally:
        for sock in flood:
            sock.close()


def test_an_idle_flood_from_the_same_address_still_lets_a_client_in(
    make_server: ServerFactory,
) -> None:
    """Attacker and client on one address, so only the eviction rule can tell them apart:
    every new connection gets in (the flood's oldest make room), and a client that uses its
    connection more often than a server's worth of newcomers arrive keeps it."""
    server = make_server(max_connections=20, max_connections_per_peer=20)
    good = connect_from("127.0.0.1", server.port)
    flood: list[socket.socket] = []
    try:
        for round_ in range(10):
            flood += [connect_from("127.0.0.1", server.port) for _ in range(10)]
            accepted = 1 + len(flood)
            wait_for(lambda n=accepted: server.stats().connections_total == n, 10.0)
            assert ping_raw(good, seqid=round_) == "pong"
            newcomer = connect_from("127.0.0.1", server.port)
            assert ping_raw(newcomer) == "pong"
            flood.append(newcomer)
        assert server.stats().connections_refused == 0
        assert server.stats().connections_evicted == 1 + len(flood) - 20
    finally:
        for sock in flood:
            sock.close()
        good.close()


def test_a_connection_that_never_sends_is_the_first_to_make_room(
    make_server: ServerFactory,
) -> None:
    """A connection that never sends a byte is idle from the start: at the cap, it goes first."""
    server = make_server(max_connections=1)
    silent = connect_from("127.0.0.1", server.port)
    wait_for(lambda: server.stats().connections_open == 1, 5.0)
    talker = connect_from("127.0.0.1", server.port)
    assert ping_raw(talker) == "pong"
    assert closed_by_peer(silent, 2.0)
    silent.close()
    talker.close()
