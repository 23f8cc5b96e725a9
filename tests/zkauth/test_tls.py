"""ZooKeeper over TLS: servers register and clients discover through ZooKeeper's secure port.

A real ZooKeeper (Debian's 3.8 jars, Netty, PEM key and trust stores) with a
TLS client port that requires client certificates; certificates are made at
test time with the ``openssl`` command.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from kazoo.client import KazooClient
from kazoo.handlers.threading import KazooTimeoutError

from logclient import LogClient, SpoolPolicy, StaticServers, ZkTLSPolicy
from logclient.discovery import ZooKeeperServers
from logserver.reader import read_server
from logserver.registry import registration_acl
from logserver.tools.launcher import ZooKeeperEnsemble, ZooKeeperTLS, wait_for
from logwire.serverset import Endpoint
from tests.tls.certs import Certs, make_certs, openssl_available

from .conftest import Credentials, KazooFactory, ServerFactory, wait_registered

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(not openssl_available(), reason="needs the openssl command"),
]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("zk-certs"))


@pytest.fixture
def tls_zookeeper(certs: Certs, tmp_path: Path) -> Iterator[ZooKeeperEnsemble]:
    """A ZooKeeper of this test's own whose TLS client port requires a client certificate."""
    tls = ZooKeeperTLS(certs.server.cert, certs.server.key, certs.ca, client_auth="need")
    zk = ZooKeeperEnsemble(size=1, workdir=tmp_path / "zk-tls", tls=tls).start()
    yield zk
    zk.stop()


@pytest.fixture
def zk_tls(certs: Certs) -> ZkTLSPolicy:
    return ZkTLSPolicy(certs.ca, certs.client.cert, certs.client.key)


def tls_args(certs: Certs) -> list[str]:
    return [
        "--zk-tls-ca",
        str(certs.ca),
        "--zk-tls-cert",
        str(certs.client.cert),
        "--zk-tls-key",
        str(certs.client.key),
    ]


def test_a_server_and_a_client_register_and_discover_over_zookeeper_tls(
    certs: Certs,
    tls_zookeeper: ZooKeeperEnsemble,
    zk_tls: ZkTLSPolicy,
    zk_path: str,
    credentials: Credentials,
    kazoo_factory: KazooFactory,
    logserver_factory: ServerFactory,
    tmp_path: Path,
) -> None:
    """A logserver given only the TLS port registers (with its ACL); a LogClient given only the
    TLS port discovers it and delivers; ``logserver list`` reads it over TLS too."""
    secure = tls_zookeeper.secure_hosts
    server = logserver_factory(zk=secure, extra_args=[*tls_args(certs), *credentials.args()])
    observer = kazoo_factory(secure, auth_data=[credentials.auth], **zk_tls.kazoo_kwargs())
    [node] = wait_registered(observer, zk_path)
    acls, _stat = observer.get_acls(node)
    assert acls == registration_acl(credentials.user, credentials.password)
    endpoint = Endpoint.parse(server.endpoint)

    with LogClient(
        secure, zk_path, zk_tls=zk_tls, spool=SpoolPolicy(directory=tmp_path / "spool")
    ) as client:
        client.log("audit", "over tls")
        assert client.flush(20)
        assert client.stats().known_servers == (server.endpoint,)
    assert [r.message for r in read_server(endpoint, "audit")] == [b"over tls"]

    listed = subprocess.run(
        [
            sys.executable,
            "-m",
            "logserver",
            "list",
            "--zk",
            secure,
            "--zk-path",
            zk_path,
            *tls_args(certs),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    assert server.endpoint in listed.stdout


def test_zookeeper_tls_refuses_what_it_cannot_verify(
    certs: Certs,
    tls_zookeeper: ZooKeeperEnsemble,
    zk_path: str,
    logserver_factory: ServerFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Plain TCP to the TLS port, a ZooKeeper certificate from another CA, and no client
    certificate where one is required: none of them ever gets a session. A server whose
    CA is wrong keeps serving, unregistered, and its log says why.

    Checked once each watcher has been refused twice (a first try and a retry) and
    the server once, as kazoo's and the server's logs say: not after a guessed time.
    """
    secure = tls_zookeeper.secure_hosts
    plain = KazooClient(hosts=secure, connection_retry={"max_tries": 1})
    with pytest.raises(KazooTimeoutError):
        plain.start(timeout=3)
    plain.stop()
    plain.close()

    wrong_ca = ZkTLSPolicy(certs.wrong_ca, certs.client.cert, certs.client.key)
    no_client_cert = ZkTLSPolicy(certs.ca)
    watchers = [
        ZooKeeperServers(secure, zk_path, tls=policy) for policy in (wrong_ca, no_client_cert)
    ]
    for watcher in watchers:
        watcher.start()
    server = logserver_factory(
        zk=secure,
        extra_args=[
            "--zk-tls-ca",
            str(certs.wrong_ca),
            "--zk-tls-cert",
            str(certs.client.cert),
            "--zk-tls-key",
            str(certs.client.key),
        ],
    )

    def refused(reason: str) -> int:
        return sum(
            reason in r.getMessage()
            for r in caplog.records
            if r.name == "kazoo.client" and "Connection dropped" in r.getMessage()
        )

    try:
        wait_for(
            lambda: (
                refused("CERTIFICATE_VERIFY_FAILED") >= 2  # the watcher with the wrong CA
                and refused("ALERT_BAD_CERTIFICATE")
                >= 2  # ZooKeeper refusing the one without a cert
                and "CERTIFICATE_VERIFY_FAILED" in server.log_tail(10**6)
            ),
            30.0,
            what="both watchers refused twice and the server once",
        )
        for watcher in watchers:
            assert not watcher.stats().answered
            assert not watcher.stats().connected
    finally:
        for watcher in watchers:
            watcher.close()
    assert server.alive()
    assert "CERTIFICATE_VERIFY_FAILED" in server.log_tail(10**6)
    assert '"registered"' not in server.log_tail(10**6)


# ------------------------------------------------------------------- no ZooKeeper needed


def test_the_policy_maps_onto_kazoo_and_checks_its_files(certs: Certs, tmp_path: Path) -> None:
    """Certificates are always verified, the host name by default; paths are checked when
    the policy is made; a certificate needs its key."""
    policy = ZkTLSPolicy(certs.ca, certs.client.cert, certs.client.key)
    assert policy.kazoo_kwargs() == {
        "use_ssl": True,
        "ca": str(certs.ca),
        "certfile": str(certs.client.cert),
        "keyfile": str(certs.client.key),
        "verify_certs": True,
        "check_hostname": True,
    }
    assert ZkTLSPolicy(str(certs.ca), check_hostname=False).kazoo_kwargs() == {
        "use_ssl": True,
        "ca": str(certs.ca),
        "certfile": None,
        "keyfile": None,
        "verify_certs": True,
        "check_hostname": False,
    }
    with pytest.raises(ValueError, match="no such file"):
        ZkTLSPolicy(tmp_path / "missing.pem")
    with pytest.raises(ValueError, match="go together"):
        ZkTLSPolicy(certs.ca, cert_file=certs.client.cert)
    with pytest.raises(TypeError, match="zk_tls"):
        LogClient(servers=StaticServers([]), zk_tls=policy)
