"""ZooKeeper is for membership, not for the data path: logging goes on whatever the
ensemble does, and registrations heal afterwards (exactly one node per server).

Every test runs its own real 3-node ensemble (``ensemble``) with two logservers
registered in it and a client that found them there. Server sessions last 4 s
(what the ZooKeeper tests use), so an election does not expire them.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from logclient import LogClient
from logserver.tools.launcher import LogServerProcess, ZooKeeperEnsemble, wait_for
from tests.delivery import Producer, messages, progress, wait_known, zk_client

from .support import AckWatch, keep_logging_for, registrations, server_events

ServerFactory = Callable[..., LogServerProcess]

SESSION = 4.0
#: Logging must never wait on ZooKeeper: the longest pause in acknowledgements allowed.
MAX_STALL = 1.0


def start_servers(
    factory: ServerFactory, ensemble: ZooKeeperEnsemble, count: int = 2, **kwargs: object
) -> list[LogServerProcess]:
    kwargs.setdefault("session_timeout_s", SESSION)
    return [factory(zk=ensemble.hosts, **kwargs) for _ in range(count)]


def one_node_each(hosts: str, zk_path: str, servers: list[LogServerProcess]) -> dict[str, str]:
    """Wait until every server has exactly one node (and nothing else is registered);
    return endpoint -> node name."""

    def check() -> dict[str, str] | None:
        nodes = registrations(hosts, zk_path)
        if sorted(nodes) != sorted(s.endpoint for s in servers):
            return None
        if any(len(names) != 1 for names in nodes.values()):
            return None
        return {endpoint: names[0] for endpoint, names in nodes.items()}

    found = wait_for(check, 30, interval_s=0.2, what=f"one node per server under {zk_path}")
    assert isinstance(found, dict)
    return found


def registered_count(server: LogServerProcess) -> int:
    """How many times the server created (or adopted) its node, from its own log."""
    return len(server_events(server, "registered"))


def test_leader_killed_logging_goes_on_and_servers_stay_registered(
    ensemble: ZooKeeperEnsemble,
    logserver_factory: ServerFactory,
    zk_path: str,
    tmp_path: Path,
    clients: list[LogClient],
) -> None:
    """SIGKILL of the ensemble's leader while a client logs: acknowledgements never pause
    (ZooKeeper is not on the data path), each server keeps its one node (its session moves to
    a surviving node; nothing is registered again), and every message is stored once."""
    servers = start_servers(logserver_factory, ensemble)
    client = zk_client(clients, ensemble.hosts, zk_path, tmp_path)
    wait_known(client, 2)
    before = one_node_each(ensemble.hosts, zk_path, servers)
    with Producer(client, "leader") as producer, AckWatch(client) as watch:
        progress(client, 2000)
        leader = ensemble.leader()
        assert leader is not None
        leader.kill()
        wait_for(
            lambda: ensemble.leader() is not None, 30, interval_s=0.1, what="a new leader elected"
        )
        keep_logging_for(client, SESSION)
        leader.start(ensemble.jar)
        ensemble.wait_ready()
        progress(client, 2000)
        expected = producer.stop()
    assert client.flush(30), client.stats()
    assert messages([s.endpoint for s in servers]) == expected
    assert watch.longest_stall < MAX_STALL, watch
    assert watch.fewest_known == 2
    assert one_node_each(ensemble.hosts, zk_path, servers) == before
    assert [registered_count(s) for s in servers] == [1, 1]
    print(f"leader killed: {watch}")


def test_quorum_lost_for_ten_seconds_logging_goes_on_and_registration_heals(
    ensemble: ZooKeeperEnsemble,
    logserver_factory: ServerFactory,
    zk_path: str,
    tmp_path: Path,
    clients: list[LogClient],
) -> None:
    """Two of three nodes SIGKILLed for 10 s (no quorum: the survivor serves nobody), then
    started again. Throughout, the client keeps the servers it knew and keeps delivering to
    them without a pause; afterwards every server has exactly one node, and every message is
    stored once."""
    servers = start_servers(logserver_factory, ensemble)
    client = zk_client(clients, ensemble.hosts, zk_path, tmp_path)
    wait_known(client, 2)
    one_node_each(ensemble.hosts, zk_path, servers)
    with Producer(client, "quorum") as producer, AckWatch(client) as watch:
        progress(client, 2000)
        leader = ensemble.leader()
        assert leader is not None
        victims = [leader, next(n for n in ensemble.nodes if n is not leader)]
        for node in victims:
            node.kill()
        keep_logging_for(client, 10)
        for node in victims:
            node.start(ensemble.jar)
        ensemble.wait_ready()
        one_node_each(ensemble.hosts, zk_path, servers)
        progress(client, 2000)
        expected = producer.stop()
    assert client.flush(30), client.stats()
    assert messages([s.endpoint for s in servers]) == expected
    assert watch.longest_stall < MAX_STALL, watch
    assert watch.fewest_known == 2
    # Still one node each after the flush and read-back (no late duplicate from a retry).
    one_node_each(ensemble.hosts, zk_path, servers)
    print(f"quorum lost: {watch}, registrations {[registered_count(s) for s in servers]}")


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_whole_ensemble_down_for_thirty_seconds_logging_goes_on_and_all_heals(
    ensemble: ZooKeeperEnsemble,
    logserver_factory: ServerFactory,
    zk_path: str,
    tmp_path: Path,
    clients: list[LogClient],
) -> None:
    """Every ZooKeeper node SIGKILLed for 30 s, then started again. Logging goes on to the
    servers the client knew, without a pause; afterwards each server is registered exactly
    once, a new client discovers both and delivers to them, and every message of both clients
    is stored once."""
    servers = start_servers(logserver_factory, ensemble)
    endpoints = [s.endpoint for s in servers]
    client = zk_client(clients, ensemble.hosts, zk_path, tmp_path)
    wait_known(client, 2)
    one_node_each(ensemble.hosts, zk_path, servers)
    with Producer(client, "outage") as producer, AckWatch(client) as watch:
        progress(client, 2000)
        for node in ensemble.nodes:
            node.kill()
        keep_logging_for(client, 30)
        for node in ensemble.nodes:
            node.start(ensemble.jar)
        ensemble.wait_ready()
        one_node_each(ensemble.hosts, zk_path, servers)
        progress(client, 2000)
        expected = producer.stop()
    assert client.flush(30), client.stats()
    assert watch.longest_stall < MAX_STALL, watch
    assert watch.fewest_known == 2

    newcomer = zk_client(clients, ensemble.hosts, zk_path, tmp_path)
    wait_known(newcomer, 2)
    assert sorted(newcomer.stats().known_servers) == sorted(endpoints)
    with Producer(newcomer, "newcomer") as second:
        progress(newcomer, 2000)
        expected_new = second.stop()
    assert newcomer.flush(30), newcomer.stats()
    got = messages(endpoints)
    assert [m for m in got if m.startswith("outage-")] == expected
    assert [m for m in got if m.startswith("newcomer-")] == expected_new
    one_node_each(ensemble.hosts, zk_path, servers)
    print(f"ensemble down: {watch}, registrations {[registered_count(s) for s in servers]}")


def test_server_frozen_past_its_session_fails_over_and_re_registers_once(
    ensemble: ZooKeeperEnsemble,
    logserver_factory: ServerFactory,
    zk_path: str,
    tmp_path: Path,
    clients: list[LogClient],
) -> None:
    """The client's server is frozen (SIGSTOP) until ZooKeeper has expired its session (its
    node is gone), then thawed (SIGCONT). The client fails over within its RPC timeout and
    keeps delivering; the thawed server finds its session lost and registers again, exactly
    once; after dedup every message is stored once."""
    servers = start_servers(logserver_factory, ensemble, session_timeout_s=2.0)
    by_endpoint = {s.endpoint: s for s in servers}
    client = zk_client(clients, ensemble.hosts, zk_path, tmp_path, choice="sticky")
    wait_known(client, 2)
    before = one_node_each(ensemble.hosts, zk_path, servers)
    with Producer(client, "frozen") as producer, AckWatch(client) as watch:
        progress(client, 2000)
        frozen = by_endpoint[str(client.stats().current_server)]
        frozen.signal(signal.SIGSTOP)
        try:
            stopped_at = time.monotonic()
            watch.reset()
            wait_for(
                lambda: frozen.endpoint not in registrations(ensemble.hosts, zk_path),
                20,
                interval_s=0.2,
                what="ZooKeeper to expire the frozen server's session",
            )
            expired_after = time.monotonic() - stopped_at
            stall = watch.longest_stall
            assert client.stats().current_server != frozen.endpoint
        finally:
            frozen.signal(signal.SIGCONT)
        after = one_node_each(ensemble.hosts, zk_path, servers)
        keep_logging_for(client, 2)
        expected = producer.stop()
    assert client.flush(30), client.stats()
    assert messages(list(by_endpoint)) == expected
    assert stall < client.failover.rpc_timeout_s + 0.5, watch
    assert after[frozen.endpoint] != before[frozen.endpoint]
    assert one_node_each(ensemble.hosts, zk_path, servers) == after
    assert len(server_events(frozen, "zookeeper_session_lost")) == 1
    assert registered_count(frozen) == 2
    print(f"SIGSTOP: failover stall {stall:.2f}s, session expired after {expired_after:.1f}s")
