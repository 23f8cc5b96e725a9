"""What the kernel knows about a server's TCP sockets: the events tests wait for instead of sleeping.

A test that must know "the server has accepted this connection" or "the server
has read what this peer sent" asks Linux (``/proc/net/tcp``, ``/proc/net/tcp6``),
whatever process the server runs in:

- a listening socket's receive queue is its accept queue: connections the
  kernel completed and the server has not ``accept()``-ed yet;
- an established socket's receive queue is the bytes that arrived and the
  server has not read yet; its send queue, the bytes the other side has not
  acknowledged yet (not arrived, as far as the sender knows).

So "accepted, and everything the peer sent is read" is an event, not a guess
at how long that takes.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "TcpSocket",
    "accept_queue",
    "connections_to",
    "handled_by_server",
    "read_by_server",
    "still_waiting",
    "tcp_sockets",
]

_LISTEN, _ESTABLISHED = 0x0A, 0x01


@dataclass(frozen=True)
class TcpSocket:
    """One line of /proc/net/tcp: ports, state, bytes not acknowledged, bytes not read."""

    local_port: int
    remote_port: int
    state: int
    unacknowledged: int
    unread: int


def tcp_sockets() -> list[TcpSocket]:
    """Every TCP socket of this network namespace (IPv4 and IPv6)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        path = Path(table)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, state, queues = fields[1], fields[2], fields[3], fields[4]
            found.append(
                TcpSocket(
                    local_port=int(local.rsplit(":", 1)[1], 16),
                    remote_port=int(remote.rsplit(":", 1)[1], 16),
                    state=int(state, 16),
                    unacknowledged=int(queues.split(":")[0], 16),
                    unread=int(queues.split(":")[1], 16),
                )
            )
    return found


def accept_queue(port: int) -> int:
    """Connections to ``port`` that the kernel holds for the server's next ``accept()``."""
    listening = [s for s in tcp_sockets() if s.local_port == port and s.state == _LISTEN]
    if not listening:
        raise AssertionError(f"nothing listens on port {port}")
    return sum(s.unread for s in listening)


def connections_to(port: int) -> int:
    """The established connections the server on ``port`` holds (its side of each)."""
    return sum(1 for s in tcp_sockets() if s.local_port == port and s.state == _ESTABLISHED)


def read_by_server(port: int, *peers: socket.socket) -> bool:
    """True once the server on ``port`` has read all that each of ``peers`` sent.

    (An accepted connection and one still in the accept queue look alike here,
    so callers that need "accepted" also check :func:`accept_queue`.)
    """
    by_ports = {(s.local_port, s.remote_port): s for s in tcp_sockets() if s.state == _ESTABLISHED}
    for peer in peers:
        peer_port = peer.getsockname()[1]
        server_side = by_ports.get((port, peer_port))
        peer_side = by_ports.get((peer_port, port))
        # Acknowledged by the server's kernel (so arrived there), and read from there.
        if server_side is None or server_side.unread or (peer_side and peer_side.unacknowledged):
            return False
    return True


def handled_by_server(port: int, *peers: socket.socket) -> bool:
    """True once the server on ``port`` has, for each of ``peers``, read all it sent or closed it.

    For a test that must not look before the server has dealt with every peer,
    whichever way: a connection the server cut after reading is done with too.
    """
    established = {
        (s.local_port, s.remote_port): s for s in tcp_sockets() if s.state == _ESTABLISHED
    }
    for peer in peers:
        peer_port = peer.getsockname()[1]
        server_side = established.get((port, peer_port))
        peer_side = established.get((peer_port, port))
        if server_side is None:
            if peer_side is not None:
                return False  # not yet seen on the server's side
            continue  # the server closed it
        if server_side.unread or (peer_side is not None and peer_side.unacknowledged):
            return False
    return True


def still_waiting(sock: socket.socket) -> bool:
    """True while the server has neither answered nor closed ``sock`` (seen from the peer)."""
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""  # data: an answer, not a wait
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)
