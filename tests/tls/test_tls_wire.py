"""The wire server with TLS: handshakes never hold up other clients; wrong peers get a clean close.

Real sockets on 127.0.0.1, certificates made at test time (``certs.py``).
"""

from __future__ import annotations

import socket
import ssl
import threading
import time

import pytest
from structlog.testing import capture_logs

from logserver.errors import ConfigError
from logserver.tools.launcher import wait_for
from logserver.transport import ServerTLS
from tests.tcp_state import accept_queue, read_by_server, still_waiting
from tests.tls.certs import Certs
from tests.tls.conftest import (
    TLSServerFactory,
    client_context,
    half_client_hello,
    tls_connect,
    tls_ping,
)
from tests.transport.helpers import (
    LogService,
    RecordingHandler,
    closed_by_peer,
    connect,
    encode_call,
    framed,
    ping_raw,
)

pytestmark = pytest.mark.timeout(60)


def test_ping_over_tls_and_stats(tls_server_factory: TLSServerFactory, certs: Certs) -> None:
    """A verifying TLS client (CA + host name 127.0.0.1) is answered; the handshake is counted."""
    server = tls_server_factory()
    with tls_connect(server.port, client_context(certs)) as sock:
        assert sock.version() in ("TLSv1.2", "TLSv1.3")
        assert tls_ping(sock) == "Ping"
        assert tls_ping(sock, seqid=8) == "Ping"
    stats = server.stats()
    assert (stats.tls_handshakes, stats.tls_handshake_failures, stats.frames) == (1, 0, 2)


def test_localhost_name_is_in_the_certificate(
    tls_server_factory: TLSServerFactory, certs: Certs
) -> None:
    """The server certificate carries both 127.0.0.1 and localhost (subjectAltName)."""
    server = tls_server_factory()
    with tls_connect(server.port, client_context(certs), hostname="localhost") as sock:
        assert tls_ping(sock) == "Ping"


def test_silent_connection_and_slow_loris_do_not_block_another_client(
    tls_server_factory: TLSServerFactory, certs: Certs
) -> None:
    """One silent TCP connection and one half ClientHello, both accepted and read: a third
    client is served while both still wait in their handshakes.

    thriftpy2's TSSLServerSocket would make it wait for the first handshake to time out
    (30 s here: far beyond the good client's own 5 s).
    """
    server = tls_server_factory(handshake_timeout_s=30.0)
    silent = connect(server.port)
    loris = connect(server.port)
    loris.sendall(half_client_hello())
    try:
        wait_for(
            lambda: (
                server.stats().connections_open == 2
                and accept_queue(server.port) == 0
                and read_by_server(server.port, silent, loris)
            ),
            5.0,
            what="both peers admitted and the half ClientHello read",
        )
        with tls_connect(server.port, client_context(certs), timeout_s=5.0) as sock:
            assert tls_ping(sock) == "Ping"
        assert server.stats().tls_handshake_failures == 0
        assert still_waiting(silent) and still_waiting(loris)
    finally:
        silent.close()
        loris.close()


def test_stalled_handshakes_are_cut_at_the_timeout(
    tls_server_factory: TLSServerFactory, certs: Certs
) -> None:
    """A silent peer and one trickling a byte every 0.2 s are both cut at the handshake timeout.

    The timeout bounds the whole handshake: trickling does not extend it, so the
    trickler is cut while it still has most of its ClientHello to send (it would
    need ``len(hello) * 0.2`` s, over 20 s, to send it all).
    """
    server = tls_server_factory(handshake_timeout_s=1.0)
    silent = connect(server.port)
    trickler = connect(server.port)
    hello = half_client_hello()
    assert len(hello) * 0.2 > 20
    stop = threading.Event()
    trickled: list[int] = []

    def trickle() -> None:
        for i in range(len(hello)):
            if stop.wait(0.2):
                return
            try:
                trickler.send(hello[i : i + 1])
            except OSError:
                return
            trickled.append(i + 1)

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        assert closed_by_peer(silent, timeout_s=5.0)
        wait_for(lambda: server.stats().tls_handshake_failures == 2, 5.0)
        assert closed_by_peer(trickler, timeout_s=5.0)
        assert len(trickled) < len(hello), "the trickler sent its whole ClientHello first"
        assert server.stats().connections_open == 0
    finally:
        stop.set()
        thread.join(2)
        silent.close()
        trickler.close()


def test_failed_handshakes_log_one_warning_and_no_traceback(
    tls_server_factory: TLSServerFactory, certs: Certs
) -> None:
    """Ten plain-text peers on the TLS port: one warning line (rate-limited), counted, no error."""
    server = tls_server_factory()
    with capture_logs() as logs:
        for _ in range(10):
            with connect(server.port) as sock:
                sock.sendall(framed(encode_call("Ping", LogService.Ping_args())))
                assert closed_by_peer(sock)
        wait_for(
            lambda: server.stats().tls_handshake_failures == 10, 5.0, what="10 failures counted"
        )
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert [e["event"] for e in warnings] == ["TLS handshake failed"]
    assert warnings[0]["hint"] == "a plain-text client on the TLS port?"
    assert not [e for e in logs if e["log_level"] in ("error", "critical")]
    assert not [e for e in logs if "exc_info" in e]


def test_plain_client_on_tls_port_is_closed_and_server_keeps_serving(
    tls_server_factory: TLSServerFactory, certs: Certs
) -> None:
    """A plain Thrift call and an HTTP request on the TLS port are closed; TLS clients carry on."""
    server = tls_server_factory()
    with connect(server.port) as sock:
        sock.sendall(framed(encode_call("Ping", LogService.Ping_args())))
        assert closed_by_peer(sock)
    with connect(server.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert closed_by_peer(sock)
    with tls_connect(server.port, client_context(certs)) as sock:
        assert tls_ping(sock) == "Ping"
    stats = server.stats()
    assert (stats.tls_handshake_failures, stats.tls_handshakes, stats.frames) == (2, 1, 1)


def test_tls_client_on_plain_port_fails_cleanly_and_server_keeps_serving(
    tls_server_factory: TLSServerFactory, certs: Certs
) -> None:
    """A TLS ClientHello on the plain port is refused (the TLS sniff), plain clients carry on."""
    server = tls_server_factory(tls=None)
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        client_context(certs).wrap_socket(raw, server_hostname="127.0.0.1")
    raw.close()
    with connect(server.port) as sock:
        assert ping_raw(sock) == "pong"
    assert server.stats().frames_too_large == 1


def test_mutual_tls_refuses_a_client_without_certificate(
    tls_server_factory: TLSServerFactory, certs: Certs, handler: RecordingHandler
) -> None:
    """With a client CA, no certificate (or one from another CA) means no service; a good one works."""
    server = tls_server_factory(mutual=True)
    for ctx in (
        client_context(certs),
        _with_client_cert(client_context(certs), certs.rogue_client.cert, certs.rogue_client.key),
    ):
        # With TLS 1.3 the refusal arrives after the client's side is done: on the ping.
        with pytest.raises((ssl.SSLError, ConnectionError)), tls_connect(server.port, ctx) as sock:
            tls_ping(sock)
    with tls_connect(server.port, client_context(certs, client_cert=True)) as sock:
        assert tls_ping(sock) == "Ping"
    stats = server.stats()
    assert (stats.tls_handshake_failures, stats.tls_handshakes, stats.frames) == (2, 1, 1)


class IdentityHandler(RecordingHandler):
    """Answers Ping with the client identity the server gave the request's thread."""

    def Ping(self) -> str:
        from logserver.transport import client_identity

        return client_identity() or "(none)"


def _ping_answer(sock: ssl.SSLSocket) -> str:
    from thriftpy2.protocol.cybin import TCyBinaryProtocol  # type: ignore[attr-defined]
    from thriftpy2.transport.memory import TCyMemoryBuffer

    from tests.transport.helpers import read_reply

    sock.sendall(framed(encode_call("Ping", LogService.Ping_args())))
    _, _, _, payload = read_reply(sock)
    proto = TCyBinaryProtocol(TCyMemoryBuffer(payload), strict_read=True)
    proto.read_message_begin()
    result = LogService.Ping_result()
    proto.read_struct(result)
    return str(result.success)


def test_mutual_tls_gives_each_client_certificate_its_own_identity(
    tls_server_factory: TLSServerFactory, certs: Certs
) -> None:
    """The handler sees a stable identity per client certificate (the same on every
    connection, another for another certificate); without client certificates, none."""
    from logserver.transport._tls import certificate_identity

    mutual = tls_server_factory(mutual=True, handler_=IdentityHandler())
    seen = []
    for cert in (certs.client, certs.client, certs.other_client):
        ctx = _with_client_cert(client_context(certs), cert.cert, cert.key)
        with tls_connect(mutual.port, ctx) as sock:
            seen.append(_ping_answer(sock))
    assert seen[0] == seen[1] != seen[2]
    assert all(len(identity) == 16 for identity in seen)
    assert certificate_identity({}) == ""
    server_only = tls_server_factory(handler_=IdentityHandler())
    with tls_connect(server_only.port, client_context(certs)) as sock:
        assert _ping_answer(sock) == "(none)"


def test_frame_cap_and_idle_timeout_hold_over_tls(
    tls_server_factory: TLSServerFactory, certs: Certs
) -> None:
    """The wire limits are the same over TLS: a frame over the cap is refused, idle peers cut."""
    server = tls_server_factory(max_frame_bytes=1024, idle_timeout_s=0.5)
    with tls_connect(server.port, client_context(certs)) as sock:
        sock.sendall((10_000_000).to_bytes(4, "big") + b"\x00" * 16)
        assert closed_by_peer(sock)
    with tls_connect(server.port, client_context(certs)) as sock:
        assert tls_ping(sock) == "Ping"
        assert closed_by_peer(sock, timeout_s=5.0)
    stats = server.stats()
    assert (stats.frames_too_large, stats.idle_closed) == (1, 1)


def test_close_ends_connections_in_handshake_and_idle(
    tls_server_factory: TLSServerFactory, certs: Certs
) -> None:
    """close() returns promptly with one peer mid-handshake and one idle TLS connection."""
    server = tls_server_factory(handshake_timeout_s=30.0)
    loris = connect(server.port)
    loris.sendall(half_client_hello())
    idle = tls_connect(server.port, client_context(certs))
    assert tls_ping(idle) == "Ping"
    wait_for(lambda: server.stats().connections_open == 2, 5.0)
    started = time.monotonic()
    server.close(timeout=2.0)
    assert time.monotonic() - started < 2.0
    assert server.stats().connections_open == 0
    loris.close()
    idle.close()


def test_server_tls_refuses_bad_files_without_naming_the_key(certs: Certs) -> None:
    """A key that does not match the certificate is a ConfigError; the key's path stays out."""
    bad = ServerTLS(certs.server.cert, certs.client.key)
    with pytest.raises(ConfigError) as raised:
        bad.context()
    assert str(certs.client.key) not in str(raised.value)
    assert str(certs.server.cert) in str(raised.value)
    assert str(certs.server.key) not in repr(ServerTLS(certs.server.cert, certs.server.key))
    with pytest.raises(ConfigError):
        ServerTLS(certs.server.cert, certs.server.key, handshake_timeout_s=0)


def _with_client_cert(ctx: ssl.SSLContext, cert: object, key: object) -> ssl.SSLContext:
    ctx.load_cert_chain(str(cert), str(key))
    return ctx
