"""Several batches in flight on one connection (``BatchPolicy.max_in_flight``).

What must hold with pipelining as without it: the server stores a client's
batches in logging order; on any error every unanswered batch is resent, in
order, with its identity, so that after dedup nothing is lost or duplicated.
The transport below wraps the real one (the client's network seam) only to
count how many calls were unanswered at a time.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from logclient import BatchPolicy, LogClient, StaticServers
from logclient._batch import Batch
from logclient._connection import Acknowledgement, Connection, ThriftTransport
from logclient._policies import FailoverPolicy
from logserver.tools.launcher import LogServerProcess, wait_for
from logwire.serverset import Endpoint
from tests.delivery import FAILOVER, Producer, log_all, messages, progress, wait_known, zk_client
from tests.helpers import numbered
from tests.readback import read_server

from .conftest import ClientFactory, InProcFactory


class _CountingConnection:
    def __init__(self, inner: Any, owner: CountingTransport) -> None:
        self._inner = inner
        self._owner = owner
        self.endpoint = inner.endpoint
        self.outstanding = 0

    @property
    def calls(self) -> int:
        return int(self._inner.calls)

    @property
    def last_used(self) -> float:
        return float(self._inner.last_used)

    def append(self, batch: Batch) -> Acknowledgement:
        return self._inner.append(batch)  # type: ignore[no-any-return]

    def send(self, batch: Batch, deadline: float) -> None:
        self.outstanding += 1
        self._owner.note(self.outstanding)
        try:
            self._inner.send(batch, deadline)
        except Exception:
            self._owner.note_failure(self.outstanding)
            raise

    def receive(self, deadline: float) -> Acknowledgement:
        try:
            outcome: Acknowledgement = self._inner.receive(deadline)
        except Exception:
            self._owner.note_failure(self.outstanding)
            raise
        self.outstanding -= 1
        return outcome

    def abort(self) -> None:
        self._inner.abort()

    def close(self) -> None:
        self._inner.close()


class CountingTransport:
    """The real transport; notes the most calls unanswered at once, and at each failure."""

    def __init__(self) -> None:
        self._inner = ThriftTransport()
        self._lock = threading.Lock()
        self.max_outstanding = 0
        self.outstanding_at_failure: list[int] = []

    def connect(self, endpoint: Endpoint, policy: FailoverPolicy) -> Connection:
        return _CountingConnection(self._inner.connect(endpoint, policy), self)

    def note(self, outstanding: int) -> None:
        with self._lock:
            self.max_outstanding = max(self.max_outstanding, outstanding)

    def note_failure(self, outstanding: int) -> None:
        with self._lock:
            self.outstanding_at_failure.append(outstanding)


class _AppendOnly:
    """A connection without send/receive: the sender must fall back to one call at a time."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.endpoint = inner.endpoint
        self.calls = 0
        self.last_used = inner.last_used

    def append(self, batch: Batch) -> Acknowledgement:
        self.calls += 1
        outcome: Acknowledgement = self._inner.append(batch)
        self.last_used = self._inner.last_used
        return outcome

    def abort(self) -> None:
        self._inner.abort()

    def close(self) -> None:
        self._inner.close()


class AppendOnlyTransport:
    def __init__(self) -> None:
        self._inner = ThriftTransport()

    def connect(self, endpoint: Endpoint, policy: FailoverPolicy) -> Connection:
        return _AppendOnly(self._inner.connect(endpoint, policy))


# ------------------------------------------------------------------ policy


@pytest.mark.parametrize("bad", [0, -1, 65, 1.5, True, "4"])
def test_max_in_flight_must_be_a_small_positive_int(bad: object) -> None:
    """max_in_flight is validated at construction."""
    with pytest.raises(ValueError, match="max_in_flight"):
        BatchPolicy(max_in_flight=bad)  # type: ignore[arg-type]


def test_max_in_flight_defaults_to_four() -> None:
    """The default pipelines a few batches; 1 means one call at a time."""
    assert BatchPolicy().max_in_flight == 4
    assert BatchPolicy(max_in_flight=1).max_in_flight == 1


# ----------------------------------------------------- in-process server


def test_a_connection_dropped_mid_window_resends_the_window_in_order(
    inproc: InProcFactory, make_client: ClientFactory
) -> None:
    """The server stores a batch and drops the connection while later batches are in flight:
    every unanswered batch is resent, in order, with its identity; the server keeps one copy."""
    server = inproc()
    server.behaviour.fail_next = ["ok"] * 5 + ["drop_after_store"] + ["ok"] * 5 + ["drop"]
    client = make_client(
        server, batching=BatchPolicy(max_records=10, linger_s=0.0, max_in_flight=8)
    )
    expected = log_all(client, numbered("w", 3000), flush=20)
    assert server.messages() == [m.encode() for m in expected]
    stored = server.batches()
    assert [b.sequence for b in stored] == sorted(b.sequence for b in stored)
    stats = client.stats()
    assert stats.batches_retried >= 1 and stats.dropped == 0


def test_a_transport_without_pipelining_gets_one_call_at_a_time(
    inproc: InProcFactory, make_client: ClientFactory
) -> None:
    """A custom connection with only ``append`` still delivers everything, in order."""
    server = inproc()
    client = make_client(
        server,
        transport=AppendOnlyTransport(),
        batching=BatchPolicy(max_records=10, linger_s=0.0, max_in_flight=8),
    )
    expected = log_all(client, numbered("a", 500), flush=20)
    assert server.messages() == [m.encode() for m in expected]


# ------------------------------------------------------- real logservers


@pytest.mark.slow
def test_pipelined_batches_are_stored_in_logging_order_by_a_real_server(
    logserver_factory: Any, clients: list[LogClient], tmp_path: Path
) -> None:
    """With up to 8 batches in flight, a real logserver stores them in logging order,
    each once, and the client really had several calls unanswered at a time."""
    server: LogServerProcess = logserver_factory()
    transport = CountingTransport()
    client = LogClient(
        servers=StaticServers([server.endpoint]),
        transport=transport,
        batching=BatchPolicy(max_records=50, linger_s=0.0, max_in_flight=8),
        failover=FAILOVER,
    )
    clients.append(client)
    expected = log_all(client, numbered("order", 20_000), flush=60)
    stored = read_server(server.endpoint, "app")
    assert [r.message.decode() for r in stored] == expected
    sequences = [r.sequence for r in stored]
    assert sequences == sorted(sequences)
    stats = client.stats()
    assert stats.duplicates == 0 and stats.dropped == 0 and stats.failovers == 0
    assert transport.max_outstanding > 1


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sigkill_with_several_batches_in_flight_loses_and_duplicates_nothing(
    logserver_factory: Any,
    zk_hosts: str,
    zk_path: str,
    tmp_path: Path,
    clients: list[LogClient],
) -> None:
    """The client logs faster than the server fsyncs (up to 2,000 records ahead of it), so its
    window stays full; the server it sends to is SIGKILLed three times, each time once 1,000
    more records were acknowledged. After dedup every message is there exactly once, in
    order, and some kill caught more than one batch in flight. (The waits are generous: on
    a loaded machine 20-record batches, each fsync'd, are acknowledged slowly.)"""
    servers = [logserver_factory() for _ in range(3)]
    by_endpoint = {s.endpoint: s for s in servers}
    transport = CountingTransport()
    client = zk_client(
        clients,
        zk_hosts,
        zk_path,
        tmp_path,
        transport=transport,
        choice="sticky",
        batching=BatchPolicy(max_records=20, linger_s=0.0, max_in_flight=8),
    )
    wait_known(client, 3)
    with Producer(client, "pipe", per_second=40_000, backlog=2000) as producer:
        for _ in range(3):
            progress(client, 1000, timeout=60)
            victim = by_endpoint[wait_for(lambda: client.stats().current_server, 10.0)]
            victim.kill()
            progress(client, 1000, timeout=60)
            victim.restart()
        progress(client, 1000, timeout=60)
        expected = producer.stop()
    assert client.flush(120), client.stats()
    got = messages(list(by_endpoint))
    assert len(got) == len(expected)
    assert got == expected
    stats = client.stats()
    assert stats.failovers >= 1 and stats.dropped == 0
    assert max(transport.outstanding_at_failure, default=0) > 1, transport.outstanding_at_failure
