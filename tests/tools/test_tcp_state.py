"""tests/tcp_state.py reads what the kernel says: accepted or not, read or not."""

from __future__ import annotations

import socket

from logserver.tools.launcher import wait_for
from tests.tcp_state import accept_queue, read_by_server


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
