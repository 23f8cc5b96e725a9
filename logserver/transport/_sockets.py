"""Frame-level socket I/O for :mod:`logserver.transport`: reading, refusing, replying.

Kept apart from the server's threads and bookkeeping so that each part reads
on its own. Every function works within one deadline (a socket timeout alone
restarts at every byte, so a trickling peer could hold a thread forever) and
ends the connection by raising :class:`Cut`, naming the counter to bump.
"""

from __future__ import annotations

import contextlib
import errno
import select
import socket
import struct
import time
from typing import Any, Literal

from logserver.transport._limits import WireCounter

__all__ = [
    "SCRATCH",
    "Cut",
    "Oversized",
    "discard",
    "oserror",
    "oversized_kind",
    "peer_address",
    "peer_name",
    "readable",
    "recv_exact",
    "recv_frame",
    "send_reply",
    "shutdown",
    "sniff_header",
]

SCRATCH = 64 * 1024
# recv() asks for at most this much at once: it allocates what it asks for first.
_CHUNK = 1 << 20
_LENGTH = struct.Struct(">i")
_HTTP_METHODS = (b"GET ", b"POST", b"PUT ", b"HEAD", b"DELE", b"OPTI", b"PATC", b"CONN", b"PRI ")
_VERSION_1 = 0x80010000


#: What a frame over the cap most likely is (see :func:`oversized_kind`).
Oversized = Literal["http", "tls", "too_large"]


class Cut(Exception):
    """Internal: end this connection; ``counter`` names the stat to bump (None: none).

    A ``"connection_errors"`` cut while the server is closing is not counted:
    the server itself shut the socket down (see ``ThriftServer._serve``).
    """

    def __init__(self, counter: WireCounter | None, why: str) -> None:
        super().__init__(why)
        self.counter: WireCounter | None = counter
        self.why = why

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.counter, self.why)


def recv_exact(sock: socket.socket, view: memoryview, deadline: float) -> None:
    """Fill ``view`` from ``sock`` before ``deadline``, or Cut."""
    got = 0
    total = len(view)
    while got < total:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise Cut("frame_timeouts", "frame timeout")
        sock.settimeout(remaining)
        try:
            n = sock.recv_into(view[got:])
        except TimeoutError:
            raise Cut("frame_timeouts", "frame timeout") from None
        except OSError as e:
            raise Cut("connection_errors", oserror(e)) from None
        if n == 0:
            raise Cut("connection_errors", "eof mid-frame")
        got += n


def recv_frame(sock: socket.socket, length: int, deadline: float) -> bytes:
    """Receive a frame body as ``bytes``: memory grows with the bytes that arrive.

    A peer that announces a large frame and trickles it costs what it sent, not
    what it claimed. The chunks are joined once at the end (the decoders want
    one ``bytes``: records are slices of it), so a frame costs at most twice
    its size for that moment, and never a growing buffer's copies.
    """
    chunks: list[bytes] = []
    missing = length
    while missing:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise Cut("frame_timeouts", "frame timeout")
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(min(missing, _CHUNK))
        except TimeoutError:
            raise Cut("frame_timeouts", "frame timeout") from None
        except OSError as e:
            raise Cut("connection_errors", oserror(e)) from None
        if not chunk:
            raise Cut("connection_errors", "eof mid-frame")
        chunks.append(chunk)
        missing -= len(chunk)
    # A single chunk is returned as it is (join of one bytes object copies nothing).
    return b"".join(chunks)


def send_reply(sock: socket.socket, data: bytes, deadline: float) -> None:
    """Send ``data``; a peer that does not read its replies gets the rest of the frame timeout."""
    sock.settimeout(max(0.001, deadline - time.monotonic()))
    try:
        sock.sendall(data)
    except TimeoutError:
        raise Cut("frame_timeouts", "reply not taken in time") from None
    except OSError as e:
        raise Cut("connection_errors", oserror(e)) from None


def oversized_kind(prefix: bytes) -> tuple[Oversized, str]:
    """What a frame over the cap most likely is: ``(kind, description)``.

    Its four length bytes are then really the start of an HTTP request or a TLS
    ClientHello, from a peer that has the wrong port.
    """
    if prefix.startswith(_HTTP_METHODS):
        return "http", "HTTP request on the Thrift port"
    if prefix[0] == 0x16 and prefix[1] == 0x03:
        return "tls", "TLS handshake on the plain Thrift port"
    return "too_large", "frame too large"


def sniff_header(sock: socket.socket, deadline: float) -> tuple[bytes, int, int] | None:
    """Read a call's message header: ``(name, seqid, bytes read)``, or None if it is none."""
    word = bytearray(4)
    recv_exact(sock, memoryview(word), deadline)
    first = _LENGTH.unpack(word)[0]
    if first & 0xFFFFFFFF == _VERSION_1 | 1:  # strict CALL
        recv_exact(sock, memoryview(word), deadline)
        size = _LENGTH.unpack(word)[0]
        if not 0 < size <= 256:
            return None
        rest = bytearray(size + 4)
        recv_exact(sock, memoryview(rest), deadline)
        name, mtype, seqid = bytes(rest[:size]), 1, _LENGTH.unpack_from(rest, size)[0]
        consumed = 8 + len(rest)
    elif 0 < first <= 256:  # non-strict: name, type, seqid
        rest = bytearray(first + 5)
        recv_exact(sock, memoryview(rest), deadline)
        name, mtype = bytes(rest[:first]), rest[first]
        seqid = _LENGTH.unpack_from(rest, first + 1)[0]
        consumed = 4 + len(rest)
    else:
        return None
    if mtype != 1 or not name.isascii():
        return None
    return name, seqid, consumed


def discard(sock: socket.socket, count: int, deadline: float) -> None:
    """Read ``count`` bytes into a small scratch buffer: nothing is kept or allocated."""
    scratch = memoryview(bytearray(min(SCRATCH, max(count, 1))))
    while count > 0:
        n = min(count, len(scratch))
        recv_exact(sock, scratch[:n], deadline)
        count -= n


def shutdown(sock: socket.socket) -> None:
    """Wake a thread blocked in recv() on this socket; the thread closes it."""
    with contextlib.suppress(OSError):
        # The plain socket's method also for an SSLSocket: SSLSocket.shutdown drops
        # its SSL object, which the connection's thread may be using right now.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def readable(sock: socket.socket) -> bool:
    """Whether bytes (or an EOF) wait on ``sock`` right now; reads nothing.

    ``poll``, not ``select``: descriptors above 1023 are common on a busy server.
    """
    fd = sock.fileno()
    if fd < 0:
        return False
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


def peer_address(addr: object) -> str:
    """The host part of an accepted socket's address: what per-peer limits count."""
    if isinstance(addr, tuple) and addr:
        return str(addr[0])
    return str(addr)


def peer_name(addr: object) -> str:
    """``host:port`` (``[host]:port`` for IPv6) of an accepted socket's address."""
    if isinstance(addr, tuple) and len(addr) >= 2:
        host, port = addr[0], addr[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(addr)


def oserror(e: OSError) -> str:
    """A short name for a socket error (its errno name), for logs and reasons."""
    return type(e).__name__ if e.errno is None else errno.errorcode.get(e.errno, str(e.errno))
