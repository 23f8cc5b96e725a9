"""LogClient with a TLSPolicy against in-process TLS servers: verification, failover, clear errors.

The servers are real ThriftServers on 127.0.0.1 with a recording handler, so a
test can tell exactly what reached a server (nothing, for a server the client
does not trust).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from logclient import (
    BatchPolicy,
    FailoverPolicy,
    LogClient,
    ServerUnavailableError,
    SpoolPolicy,
    StaticServers,
    TLSPolicy,
)
from logclient._connection import ThriftTransport
from logserver.transport import ServerTLS, ThriftServer
from logwire.serverset import Endpoint
from tests.tls.certs import Certs, KeyPair
from tests.tls.conftest import TLSServerFactory
from tests.transport.helpers import RecordingHandler

pytestmark = pytest.mark.timeout(60)

FAILOVER = FailoverPolicy(
    connect_timeout_s=1.0,
    rpc_timeout_s=2.0,
    down_backoff_s=0.3,
    max_down_backoff_s=1.0,
    probe_interval_s=0.2,
)


def make_client(
    server: ThriftServer | list[ThriftServer], tls: TLSPolicy | None, choice: str = "random"
) -> LogClient:
    servers = server if isinstance(server, list) else [server]
    return LogClient(
        servers=StaticServers([f"127.0.0.1:{s.port}" for s in servers]),
        tls=tls,
        choice=choice,
        failover=FAILOVER,
        batching=BatchPolicy(linger_s=0.01),
        spool=SpoolPolicy.disabled(),
    )


def stored(handler: RecordingHandler) -> list[bytes]:
    with handler.lock:
        return [e.message for b in handler.batches for e in b.entries]


def connect_error(server: ThriftServer, tls: TLSPolicy | None) -> ServerUnavailableError:
    """What one connection attempt of the client's transport raises."""
    transport = ThriftTransport(tls=tls)
    with pytest.raises(ServerUnavailableError) as raised:
        transport.connect(Endpoint("127.0.0.1", server.port), FAILOVER).close()
    return raised.value


def test_client_delivers_over_tls(
    tls_server_factory: TLSServerFactory, certs: Certs, handler: RecordingHandler
) -> None:
    """With the CA in its TLSPolicy the client verifies the server and delivers every record."""
    server = tls_server_factory()
    with make_client(server, TLSPolicy(ca_file=certs.ca)) as client:
        for i in range(500):
            client.log("app", f"line {i}")
        assert client.flush(10)
        assert client.stats().acknowledged == 500
    assert stored(handler) == [f"line {i}".encode() for i in range(500)]
    assert server.stats().tls_handshakes >= 1


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("wrong_ca", "unable to get local issuer certificate"),
        ("wrong_host", "address mismatch, certificate is not valid for '127.0.0.1'"),
        ("expired", "certificate has expired"),
    ],
)
def test_untrusted_server_certificate_is_refused_before_any_data(
    tls_server_factory: TLSServerFactory,
    certs: Certs,
    handler: RecordingHandler,
    caplog: pytest.LogCaptureFixture,
    case: str,
    expected: str,
) -> None:
    """Another CA, another host name, an expired certificate: a clear error, nothing sent.

    The server is marked down, the error is logged at ERROR, and the records wait.
    """
    policy = TLSPolicy(ca_file=certs.wrong_ca if case == "wrong_ca" else certs.ca)
    pair: KeyPair = {"wrong_ca": certs.server, "wrong_host": certs.wrong_host}.get(
        case, certs.expired
    )
    server = tls_server_factory(tls=ServerTLS(pair.cert, pair.key))

    error = connect_error(server, policy)
    assert error.phase == "connect"
    assert "the server's certificate failed verification" in error.reason
    assert expected in error.reason

    with caplog.at_level(logging.WARNING, logger="logclient"):
        client = make_client(server, policy)
        try:
            client.log("app", "secret")
            assert not client.flush(1.0)
            stats = client.stats()
            assert stats.down_servers == (f"127.0.0.1:{server.port}",)
            assert (stats.sent, stats.acknowledged) == (0, 0)
        finally:
            client.close(timeout=1.0)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and "TLS" in r.getMessage()]
    assert errors and expected in errors[0].getMessage()
    assert server.stats().frames == 0
    assert stored(handler) == []


def test_hostname_check_can_be_pinned_or_disabled(
    tls_server_factory: TLSServerFactory, certs: Certs
) -> None:
    """server_hostname names the certificate's host; check_hostname=False still checks the CA."""
    server = tls_server_factory(tls=ServerTLS(certs.wrong_host.cert, certs.wrong_host.key))
    endpoint = Endpoint("127.0.0.1", server.port)
    for policy in (
        TLSPolicy(ca_file=certs.ca, server_hostname="elsewhere.example"),
        TLSPolicy(ca_file=certs.ca, check_hostname=False),
    ):
        ThriftTransport(tls=policy).connect(endpoint, FAILOVER).close()
    error = connect_error(server, TLSPolicy(ca_file=certs.wrong_ca, check_hostname=False))
    assert "unable to get local issuer certificate" in error.reason


def test_client_fails_over_from_a_bad_certificate_to_a_good_one(
    tls_server_factory: TLSServerFactory, certs: Certs
) -> None:
    """One server with a wrong-host certificate, one good: everything lands on the good one."""
    bad_handler, good_handler = RecordingHandler(), RecordingHandler()
    bad = tls_server_factory(
        tls=ServerTLS(certs.wrong_host.cert, certs.wrong_host.key), handler_=bad_handler
    )
    good = tls_server_factory(handler_=good_handler)
    with make_client([bad, good], TLSPolicy(ca_file=certs.ca), choice="round_robin") as client:
        for chunk in range(4):
            for i in range(50):
                client.log("app", f"r{chunk}-{i}")
            assert client.flush(10)
        assert client.stats().failovers >= 1
    assert len(stored(good_handler)) == 200
    assert stored(bad_handler) == []
    assert bad.stats().frames == 0
    assert bad.stats().tls_handshake_failures >= 1


def test_mutual_tls_client_without_certificate_is_refused_with_a_clear_error(
    tls_server_factory: TLSServerFactory, certs: Certs, handler: RecordingHandler
) -> None:
    """A client without a certificate gets a clear error; the server keeps serving good clients."""
    server = tls_server_factory(mutual=True)
    endpoint = Endpoint("127.0.0.1", server.port)
    anonymous = TLSPolicy(ca_file=certs.ca)
    with make_client(server, anonymous) as client:
        client.log("app", "anonymous")
        assert not client.flush(1.0)
        assert client.stats().acknowledged == 0
        client.close(timeout=0.5)
    # Through the transport: the refusal may come at the handshake (TLS 1.2) or on
    # the first read (TLS 1.3); either way it is a connect-phase error that says why.
    from logclient._batch import Batch

    try:
        conn = ThriftTransport(tls=anonymous).connect(endpoint, FAILOVER)
        try:
            conn.append(Batch.of("p" * 32, 0, [("app", b"x")], 4))
        finally:
            conn.close()
    except ServerUnavailableError as exc:
        assert exc.phase == "connect"
        assert "refused this client's certificate" in exc.reason
    else:
        pytest.fail("a client without a certificate was served by a mutual-TLS server")

    good = TLSPolicy(ca_file=certs.ca, cert_file=certs.client.cert, key_file=certs.client.key)
    with make_client(server, good) as client:
        client.log("app", "authenticated")
        assert client.flush(10)
    assert stored(handler) == [b"authenticated"]


def test_tls_client_to_a_plain_port_fails_cleanly(
    tls_server_factory: TLSServerFactory, certs: Certs
) -> None:
    """TLS to a plain server: a connect error that hints at the cause; the server carries on."""
    server = tls_server_factory(tls=None)
    error = connect_error(server, TLSPolicy(ca_file=certs.ca))
    assert error.phase == "connect"
    assert "TLS handshake failed" in error.reason
    with make_client(server, None) as client:
        client.log("app", "plain")
        assert client.flush(10)


def test_plain_client_to_a_tls_port_fails_cleanly(
    tls_server_factory: TLSServerFactory, handler: RecordingHandler, certs: Certs
) -> None:
    """A client without TLS marks a TLS server down; nothing is stored, nothing escapes."""
    server = tls_server_factory()
    with make_client(server, None) as client:
        client.log("app", "plain")
        assert not client.flush(1.0)
        assert client.stats().down_servers == (f"127.0.0.1:{server.port}",)
        client.close(timeout=0.5)
    assert stored(handler) == []
    with make_client(server, TLSPolicy(ca_file=certs.ca)) as client:
        client.log("app", "tls")
        assert client.flush(10)
    assert stored(handler) == [b"tls"]


def test_tls_policy_is_validated_and_hides_the_key_path(certs: Certs, tmp_path: Path) -> None:
    """Missing files and a key without a certificate fail at construction; repr has no key path."""
    with pytest.raises(ValueError, match="no such file"):
        TLSPolicy(ca_file=tmp_path / "missing.pem")
    with pytest.raises(ValueError, match="needs cert_file"):
        TLSPolicy(key_file=certs.client.key)
    policy = TLSPolicy(ca_file=certs.ca, cert_file=certs.client.cert, key_file=certs.client.key)
    assert str(certs.client.key) not in repr(policy)
    assert "key_file=<hidden>" in repr(policy)
    # A key that does not belong to the certificate: a ValueError naming the certificate only.
    mismatched = TLSPolicy(cert_file=certs.client.cert, key_file=certs.server.key)
    with pytest.raises(ValueError) as raised:
        mismatched.ssl_context()
    assert str(certs.server.key) not in str(raised.value)
    with pytest.raises(TypeError):
        LogClient(servers=StaticServers([]), tls=policy, transport=ThriftTransport())


def test_default_policy_verifies_against_system_cas(
    tls_server_factory: TLSServerFactory,
) -> None:
    """TLSPolicy() trusts the system's CAs only: a private CA's server is refused."""
    server = tls_server_factory()
    error = connect_error(server, TLSPolicy())
    assert "the server's certificate failed verification" in error.reason
