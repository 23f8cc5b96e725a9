"""Producer ids no one can steal, and ids that have one spelling.

``Read`` shows every record's producer and sequence. Before, any client could
then send ``Append`` batches under another application's producer with the
sequences it would use next: the real batches were answered "duplicate" and
never stored. With mutual TLS the server now stores each batch under
``<client certificate identity>/<producer>``, so a producer belongs to the
certificate that sent it. Without TLS any client can still do this; the
security docs say so.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from logclient import (
    BatchPolicy,
    FailoverPolicy,
    LogClient,
    SpoolPolicy,
    StaticServers,
    TLSPolicy,
)
from logserver.reader import connect, merge_unique, read_server
from logserver.tools.launcher import LogServerProcess
from logwire.idl import log_thrift
from logwire.serverset import Endpoint
from tests.delivery import log_all
from tests.helpers import numbered
from tests.thrift_clients import connect as plain_connect
from tests.tls.certs import Certs, KeyPair, make_certs, openssl_available

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A CA with a server and two client certificates (tests/tls/certs.py)."""
    if not openssl_available():
        pytest.skip("the openssl command is needed to make test certificates")
    return make_certs(tmp_path_factory.mktemp("pki"))


def policy(certs: Certs, client: KeyPair) -> TLSPolicy:
    return TLSPolicy(ca_file=certs.ca, cert_file=client.cert, key_file=client.key)


@pytest.fixture
def mutual_tls_server(
    logserver_factory: Callable[..., LogServerProcess], certs: Certs
) -> Iterator[LogServerProcess]:
    yield logserver_factory(
        extra_args=[
            "--tls-cert",
            str(certs.server.cert),
            "--tls-key",
            str(certs.server.key),
            "--tls-client-ca",
            str(certs.ca),
        ]
    )


def test_with_mutual_tls_a_client_cannot_claim_another_clients_producer(
    mutual_tls_server: LogServerProcess,
    certs: Certs,
    clients: list[LogClient],
    tmp_path: Path,
) -> None:
    """Another application, with a valid certificate of its own, reads the victim's producer
    and last sequence, and sends 20 batches under that producer (as read, and without the
    identity prefix) with the victim's next sequences. The victim's next 1,000 records are
    all stored (0 answered duplicate), and a reader shows every one of the victim's records
    once, apart from the forged ones."""
    endpoint = Endpoint.parse(mutual_tls_server.endpoint)
    victim = LogClient(
        servers=StaticServers([mutual_tls_server.endpoint]),
        tls=policy(certs, certs.client),
        batching=BatchPolicy(max_records=50, linger_s=0.01),
        failover=FailoverPolicy(),
        spool=SpoolPolicy(directory=tmp_path / "spool"),
    )
    clients.append(victim)
    before = log_all(victim, numbered("victim", 1000))

    thief = policy(certs, certs.other_client)
    with connect(endpoint, tls=thief) as client:
        stored = client.Read("app", 0, 10_000).records
        claimed = stored[-1].producer
        identity, _, producer = claimed.partition("/")
        assert len(identity) == 16 and producer == victim.producer
        next_sequence = max(r.sequence for r in stored) + 1
        for claim in (claimed, producer):
            for sequence in range(next_sequence, next_sequence + 10):
                batch = log_thrift.AppendBatch(
                    producer=claim,
                    sequence=sequence,
                    entries=[log_thrift.LogEntry(category="app", message=b"forged")],
                )
                assert client.Append(batch).stored == 1

    after = log_all(victim, numbered("victim", 1000, start=1000))
    assert victim.stats().duplicates == 0
    records = list(merge_unique([read_server(endpoint, "app", tls=policy(certs, certs.client))]))
    mine = [r.message.decode() for r in records if r.producer == claimed]
    forged = [r for r in records if r.message == b"forged"]
    print(f"victim records stored {len(mine)} of 2000; forged {len(forged)} kept apart")
    assert mine == before + after
    assert len(forged) == 20 and all(not r.producer.startswith(identity) for r in forged)


def test_producers_that_are_not_one_spelling_are_refused(
    logserver_factory: Callable[..., LogServerProcess],
) -> None:
    """A real server answers InvalidRequest for a producer that is not printable ASCII (bytes
    that would be decoded with replacement, merging distinct ids) or uses the reserved "@"
    outside a split's "<producer>@<sequence>"; a split half's id is accepted."""
    server = logserver_factory()
    with plain_connect(server.endpoint) as client:
        for producer in (b"\xff\xfeid", "caf\u00e9".encode(), b"app@host", b"p@01"):
            with pytest.raises(log_thrift.InvalidRequest):
                client.Append(
                    log_thrift.AppendBatch(
                        producer=producer,
                        sequence=0,
                        entries=[log_thrift.LogEntry(category="ids", message=b"x")],
                    )
                )
        split_half = f"{uuid.uuid4().hex}@7"
        result = client.Append(
            log_thrift.AppendBatch(
                producer=split_half,
                sequence=0,
                entries=[log_thrift.LogEntry(category="ids", message=b"x")],
            )
        )
        assert result.stored == 1
        assert client.Ping() == "pong"
