"""Fixtures for the TLS tests: certificates made once per session, TLS wire servers on 127.0.0.1."""

from __future__ import annotations

import socket
import ssl
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from logserver.transport import ServerTLS, ThriftServer, WireLimits
from tests.tls.certs import Certs, make_certs, openssl_available
from tests.transport.helpers import LogService, RecordingHandler, encode_call, framed, read_reply

TLSServerFactory = Callable[..., ThriftServer]


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A CA, server and client certificates, and the bad ones, made with ``openssl``."""
    if not openssl_available():
        pytest.skip("the openssl command is needed to make test certificates")
    return make_certs(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def handler() -> RecordingHandler:
    return RecordingHandler()


@pytest.fixture
def tls_server_factory(handler: RecordingHandler, certs: Certs) -> Iterator[TLSServerFactory]:
    """Start ThriftServers with TLS (real sockets, real threads); every one closed after."""
    started: list[ThriftServer] = []

    def start(
        *,
        tls: ServerTLS | bool | None = True,
        handler_: object | None = None,
        mutual: bool = False,
        handshake_timeout_s: float = 5.0,
        **limits: float,
    ) -> ThriftServer:
        if tls is True:
            tls = ServerTLS(
                certs.server.cert,
                certs.server.key,
                client_ca_file=certs.ca if mutual else None,
                handshake_timeout_s=handshake_timeout_s,
            )
        server = ThriftServer(
            handler_ if handler_ is not None else handler,
            "127.0.0.1",
            0,
            WireLimits(**limits),  # type: ignore[arg-type]
            tls=tls or None,
        )
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.close(timeout=2.0)


def client_context(
    certs: Certs, *, client_cert: bool = False, ca: Path | None = None
) -> ssl.SSLContext:
    """A strict client context (what TLSPolicy builds), for raw-socket tests."""
    ctx = ssl.create_default_context(cafile=str(ca or certs.ca))
    if client_cert:
        ctx.load_cert_chain(certs.client.cert, certs.client.key)
    return ctx


def tls_connect(
    port: int, ctx: ssl.SSLContext, timeout_s: float = 5.0, hostname: str = "127.0.0.1"
) -> ssl.SSLSocket:
    """A TLS connection to 127.0.0.1:port, handshake done."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
    return ctx.wrap_socket(raw, server_hostname=hostname)


def tls_ping(sock: socket.socket, seqid: int = 7) -> str:
    """One Ping over an open connection (TLS or not); returns the method name of the reply."""
    sock.sendall(framed(encode_call("Ping", LogService.Ping_args(), seqid=seqid)))
    name, _mtype, got_seqid, _payload = read_reply(sock)
    assert got_seqid == seqid
    return str(name)


def half_client_hello() -> bytes:
    """The first half of a real TLS ClientHello: a slow-loris handshake."""
    ctx = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    hello = outgoing.read()
    assert hello[0] == 0x16 and struct.unpack(">H", hello[3:5])[0] > 100
    return hello[: len(hello) // 2]
