"""tests/tcp_state.py reads what the kernel says: accepted or not, read or not."""

from __future__ import annotations

import socket

from logserver.tools.launcher import wait_for
from tests.tcp_state import accept_queue, handled_by_server, read_by_server


def test_accept_queue_and_unread_bytes_follow_the_server() -> None:
    """A connection waits in the accept queue until accept(); its bytes count until recv()."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        assert accept_queue(port) == 0
        with socket.create_connection(("127.0.0.1", port), timeout=5) as peer:
            peer.sendall(b"12345678")
            wait_for(lambda: accept_queue(port) == 1, 5.0, what="the connection to be queued")
            assert not read_by_server(port, peer)
            conn, _ = listener.accept()
            with conn:
                assert accept_queue(port) == 0
                assert conn.recv(4) == b"1234"
                assert not read_by_server(port, peer)  # 4 bytes still unread
                assert conn.recv(4) == b"5678"
                assert read_by_server(port, peer)


def test_a_connection_the_server_closed_counts_as_handled() -> None:
    """handled_by_server: every peer read to the end, or closed by the server; not before."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as read_peer,
            socket.create_connection(("127.0.0.1", port), timeout=5) as closed_peer,
        ):
            read_peer.sendall(b"1234")
            closed_peer.sendall(b"5678")
            wait_for(lambda: accept_queue(port) == 2, 5.0, what="both connections queued")
            assert not handled_by_server(port, read_peer, closed_peer)
            reader, _ = listener.accept()  # the kernel hands them out in order
            closing, _ = listener.accept()
            with reader:
                assert reader.recv(4) == b"1234"
                assert not handled_by_server(port, read_peer, closed_peer)
                closing.close()
                wait_for(
                    lambda: handled_by_server(port, read_peer, closed_peer),
                    5.0,
                    what="the closed connection to leave the server's side",
                )
