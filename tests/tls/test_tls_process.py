"""TLS end to end: real ``logserver serve --tls-cert ...`` processes, real ZooKeeper, LogClient.

What must hold: records go over TLS and read back over TLS exactly once; with
mutual TLS a client without a certificate is refused while the server keeps
serving; a stalled handshake never delays another client; nothing of a key
reaches ZooKeeper or the server's log.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Callable

import pytest
from kazoo.client import KazooClient

from logclient import BatchPolicy, FailoverPolicy, LogClient, SpoolPolicy, TLSPolicy
from logserver.reader import connect, list_servers, read_server
from logserver.tools.launcher import LogServerProcess, wait_for
from logwire.serverset import Endpoint
from tests.tcp_state import accept_queue, read_by_server, still_waiting
from tests.tls.certs import Certs
from tests.tls.conftest import half_client_hello

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

ServerFactory = Callable[..., LogServerProcess]

FAILOVER = FailoverPolicy(
    connect_timeout_s=1.0,
    rpc_timeout_s=2.0,
    down_backoff_s=0.3,
    max_down_backoff_s=1.0,
    probe_interval_s=0.2,
)


def tls_args(certs: Certs, *, mutual: bool = False, handshake_timeout: float = 5.0) -> list[str]:
    args = [
        "--tls-cert",
        str(certs.server.cert),
        "--tls-key",
        str(certs.server.key),
        "--tls-handshake-timeout",
        str(handshake_timeout),
    ]
    return [*args, "--tls-client-ca", str(certs.ca)] if mutual else args


def client_policy(certs: Certs, *, with_cert: bool = False) -> TLSPolicy:
    if with_cert:
        return TLSPolicy(ca_file=certs.ca, cert_file=certs.client.cert, key_file=certs.client.key)
    return TLSPolicy(ca_file=certs.ca)


def new_client(zk_hosts: str, zk_path: str, tls: TLSPolicy | None) -> LogClient:
    return LogClient(
        zk_hosts,
        zk_path,
        tls=tls,
        failover=FAILOVER,
        batching=BatchPolicy(max_records=200, linger_s=0.01),
        spool=SpoolPolicy.disabled(),
    )


def logserver_cli(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "logserver", *args], capture_output=True, timeout=60
    )


def ping(endpoint: Endpoint, tls: TLSPolicy, timeout: float = 5.0) -> None:
    """A Ping over a new TLS connection is answered within ``timeout`` (else it raises)."""
    with connect(endpoint, timeout=timeout, tls=tls) as client:
        assert client.Ping() == "pong"


def test_records_go_over_tls_and_read_back_over_tls(
    logserver_factory: ServerFactory, zk_hosts: str, zk_path: str, certs: Certs
) -> None:
    """LogClient(tls=...) finds a TLS server in ZooKeeper and delivers; `logserver cat` reads it."""
    server = logserver_factory(extra_args=tls_args(certs))
    endpoint = Endpoint.parse(server.endpoint)
    messages = [f"tls-{i:05d}" for i in range(2000)]
    with new_client(zk_hosts, zk_path, client_policy(certs)) as client:
        for m in messages:
            client.log("app", m)
        assert client.flush(30), client.stats()
        assert client.stats().failovers == 0

    stored = [r.message.decode() for r in read_server(endpoint, "app", tls=client_policy(certs))]
    assert stored == messages

    (registered,) = list_servers(zk_hosts, zk_path)
    assert registered.member is not None and registered.member.tls is True

    cat = logserver_cli(
        "cat", "app", "--raw", "--zk", zk_hosts, "--zk-path", zk_path, "--tls-ca", str(certs.ca)
    )
    assert cat.returncode == 0, cat.stderr.decode()
    assert cat.stdout.decode().splitlines() == messages

    # Without TLS flags, cat says what is missing instead of failing obscurely.
    plain = logserver_cli("cat", "app", "--zk", zk_hosts, "--zk-path", zk_path)
    assert plain.returncode == 2
    assert b"speak TLS" in plain.stderr and b"Traceback" not in plain.stderr
    listed = logserver_cli("list", "--zk", zk_hosts, "--zk-path", zk_path)
    assert listed.stdout.decode().rstrip("\n").endswith("\ttls")


def test_mutual_tls_refuses_a_client_without_certificate_and_keeps_serving(
    logserver_factory: ServerFactory, zk_hosts: str, zk_path: str, certs: Certs
) -> None:
    """No client certificate: nothing delivered, a clear error. With one: delivered."""
    server = logserver_factory(extra_args=tls_args(certs, mutual=True))
    endpoint = Endpoint.parse(server.endpoint)

    with new_client(zk_hosts, zk_path, client_policy(certs)) as anonymous:
        anonymous.log("app", "anonymous")
        assert not anonymous.flush(3)
        stats = anonymous.stats()
        assert stats.acknowledged == 0 and stats.failovers >= 1
        anonymous.close(timeout=0.5)

    refused = logserver_cli("cat", "app", "--server", server.endpoint, "--tls-ca", str(certs.ca))
    assert refused.returncode == 1
    assert b"Traceback" not in refused.stderr
    assert b"certificate" in refused.stderr

    with new_client(zk_hosts, zk_path, client_policy(certs, with_cert=True)) as client:
        client.log("app", "authenticated")
        assert client.flush(30), client.stats()
    assert server.alive()
    stored = read_server(endpoint, "app", tls=client_policy(certs, with_cert=True))
    assert [r.message for r in stored] == [b"authenticated"]

    cat = logserver_cli(
        "cat", "app", "--raw", "--server", server.endpoint, "--tls-ca", str(certs.ca),
        "--tls-cert", str(certs.client.cert), "--tls-key", str(certs.client.key),
    )  # fmt: skip
    assert (cat.returncode, cat.stdout) == (0, b"authenticated\n")


def test_stalled_handshakes_do_not_delay_other_clients(
    logserver_factory: ServerFactory, certs: Certs
) -> None:
    """A silent TCP connection and a half ClientHello, both accepted and read by the server:
    another client is served while both still wait in their handshakes.

    A server that ran handshakes in its accept loop (thriftpy2's TSSLServerSocket)
    would leave the second peer unaccepted, and could serve the good client only
    after the stalled handshakes timed out (30 s here, far beyond its 5 s).
    """
    server = logserver_factory(extra_args=tls_args(certs, handshake_timeout=30.0))
    endpoint = Endpoint.parse(server.endpoint)
    silent = socket.create_connection((endpoint.host, endpoint.port), timeout=5)
    loris = socket.create_connection((endpoint.host, endpoint.port), timeout=5)
    loris.sendall(half_client_hello())
    try:
        wait_for(
            lambda: accept_queue(endpoint.port) == 0 and read_by_server(endpoint.port, loris),
            10.0,
            what="the server to accept both peers and read the half ClientHello",
        )
        ping(endpoint, client_policy(certs))
        assert still_waiting(silent) and still_waiting(loris)
    finally:
        silent.close()
        loris.close()


def test_wrong_protocol_either_way_fails_cleanly(
    logserver_factory: ServerFactory, certs: Certs
) -> None:
    """Plain reader to a TLS server, TLS reader to a plain one: exit 1, a message, servers serve on."""
    tls_server = logserver_factory("tls", extra_args=tls_args(certs))
    plain_server = logserver_factory("plain")

    plain_to_tls = logserver_cli("cat", "app", "--server", tls_server.endpoint)
    tls_to_plain = logserver_cli(
        "cat", "app", "--server", plain_server.endpoint, "--tls-ca", str(certs.ca)
    )
    for done in (plain_to_tls, tls_to_plain):
        assert done.returncode == 1
        assert b"Traceback" not in done.stderr and done.stderr.strip()
    assert b"TLS handshake failed" in tls_to_plain.stderr

    ping(Endpoint.parse(tls_server.endpoint), client_policy(certs))
    with connect(Endpoint.parse(plain_server.endpoint), timeout=5.0) as client:
        assert client.Ping() == "pong"


def test_no_key_material_in_znode_data_or_server_log(
    logserver_factory: ServerFactory, zk_hosts: str, zk_path: str, certs: Certs
) -> None:
    """The znode says "tls": true and nothing else about TLS; the debug log shows no key."""
    server = logserver_factory(extra_args=[*tls_args(certs, mutual=True), "--log-level", "debug"])
    # Some traffic, good and bad, so that handshake lines are logged.
    with new_client(zk_hosts, zk_path, client_policy(certs, with_cert=True)) as client:
        client.log("app", "hello")
        assert client.flush(30)
    logserver_cli("cat", "app", "--server", server.endpoint, "--tls-ca", str(certs.ca))

    zk = KazooClient(hosts=zk_hosts)
    zk.start(timeout=15)
    try:
        wait_for(lambda: zk.exists(zk_path) and zk.get_children(zk_path), 20, what="registration")
        (child,) = zk.get_children(zk_path)
        data, _ = zk.get(f"{zk_path}/{child}")
    finally:
        zk.stop()
        zk.close()
    doc = json.loads(data)
    assert doc["tls"] is True

    server.terminate()
    log_text = server.log_tail(chars=10_000_000)
    assert "TLS handshake failed" in log_text
    for secret in (certs.server, certs.client):
        body = secret.key_body()
        for haystack, where in ((data.decode(), "znode data"), (log_text, "server log")):
            assert body not in haystack, f"key material in the {where}"
            assert body[:40] not in haystack, f"key material in the {where}"
            assert str(secret.key) not in haystack, f"a key's path in the {where}"
            assert "PRIVATE KEY" not in haystack, f"a PEM key in the {where}"
