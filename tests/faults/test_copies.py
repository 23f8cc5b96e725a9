"""Copies and hedged sends against real logserver processes, real ZooKeeper, real signals.

What must hold:

- with ``ReplicationPolicy(copies=2)``, a server SIGKILLed and its data directory deleted
  while an app logs loses no acknowledged record: the survivors hold every one;
- with fewer live servers than ``acks``, records wait (nothing is acknowledged on one copy),
  ``stats()`` names the shortfall, and they all arrive on two servers once one joins;
- servers registered with ``--zone`` get each batch's copies in different zones;
- a frozen server (SIGSTOP) and a silent partition (replies dropped in a network namespace)
  are hedged around: with an RPC timeout the test never waits out (30 s), logging goes on
  through the other server, and after the fault heals every record reads back once.

How long a failover and a hedge take is measured in ``bench`` (``failover_sigkill_copies``,
``failover_sigstop``), not here.
"""

from __future__ import annotations

import shutil
import signal
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from logclient import FailoverPolicy, LogClient, ReplicationPolicy, SpoolPolicy
from logserver.tools.launcher import LogServerProcess, ZooKeeperEnsemble, wait_for
from tests.delivery import Producer, log_all, messages, progress, wait_known, zk_client
from tests.helpers import numbered
from tests.readback import read_server

from .support import keep_logging_for, numbers_on

# The network namespace fixtures of the partition test (imported, not copied).
from .test_partition import Link, inside_server, link, link_zookeeper  # noqa: F401

ServerFactory = Callable[..., LogServerProcess]

#: An RPC timeout no test waits out: a frozen server's batches arrive only through a hedge.
PATIENT = FailoverPolicy(
    connect_timeout_s=1.0,
    rpc_timeout_s=30.0,
    down_backoff_s=0.5,
    max_down_backoff_s=2.0,
    probe_interval_s=0.2,
)


def _holders(endpoints: list[str], category: str = "app") -> Counter[str]:
    """How many of ``endpoints`` hold each message (a server counts once per message)."""
    held: Counter[str] = Counter()
    for endpoint in endpoints:
        held.update({r.message.decode() for r in read_server(endpoint, category)})
    return held


def test_a_server_killed_and_its_disk_wiped_loses_no_acknowledged_record(
    logserver_factory: ServerFactory,
    zk_hosts: str,
    zk_path: str,
    tmp_path: Path,
    clients: list[LogClient],
) -> None:
    """copies=2 over three servers: while an app logs, the server it sends to is SIGKILLed
    and its data directory deleted (a lost host). Every record acknowledged before the
    kill, and every one logged after, is on the two survivors; the wiped server comes back
    empty and takes new copies; every record logged after the kill is on two servers."""
    servers = [logserver_factory(f"s{i}", log_path=tmp_path / f"s{i}.log") for i in range(3)]
    by_endpoint = {s.endpoint: s for s in servers}
    client = zk_client(
        clients, zk_hosts, zk_path, tmp_path, replication=ReplicationPolicy(copies=2)
    )
    wait_known(client, 3)
    with Producer(client, "wipe") as producer:
        progress(client, 3000)
        victim = by_endpoint[wait_for(lambda: client.stats().current_server, 10.0)]
        acknowledged = client.stats().acknowledged
        logged_before_kill = producer.count
        victim.kill()
        shutil.rmtree(victim.data_dir)
        progress(client, 3000)
        victim.start()
        progress(client, 2000)
        expected = producer.stop()
    assert client.flush(60), client.stats()
    assert acknowledged > 0
    survivors = [e for e in by_endpoint if e != victim.endpoint]
    assert messages(survivors) == expected
    # Records logged after the kill were all stored twice (those before may have lost their
    # second copy with the disk: that is what `logserver repair` restores).
    held = _holders(list(by_endpoint))
    assert all(held[m] >= 2 for m in expected[logged_before_kill:])
    stats = client.stats()
    assert stats.failovers >= 1 and stats.dropped == 0 and stats.copies_given_up == 0


def test_with_fewer_live_servers_than_acks_records_wait_and_arrive_when_one_joins(
    logserver_factory: ServerFactory,
    zk_hosts: str,
    zk_path: str,
    tmp_path: Path,
    clients: list[LogClient],
) -> None:
    """copies=2 with one of two servers SIGKILLed: records logged meanwhile are never
    acknowledged on one copy (flush() says False, stats() shows one server short); they
    spill to the spool; when the server is back every record is on both servers."""
    a, b = logserver_factory(), logserver_factory()
    client = zk_client(
        clients,
        zk_hosts,
        zk_path,
        tmp_path,
        replication=ReplicationPolicy(copies=2),
        spool=SpoolPolicy(directory=tmp_path / "spool", spill_after_s=0.5),
    )
    wait_known(client, 2)
    before = log_all(client, numbered("before", 1000))
    b.kill()
    acknowledged = client.stats().acknowledged
    during = log_all(client, numbered("during", 2000), flush=None)
    assert not client.flush(2)
    wait_for(lambda: client.stats().servers_short == 1, 20, what="one server short in stats()")
    wait_for(lambda: client.stats().spooled > 0, 20, what="the waiting records spooled")
    assert client.stats().acknowledged == acknowledged
    b.restart()
    assert client.flush(60), client.stats()
    assert client.stats().servers_short == 0
    held = _holders([a.endpoint, b.endpoint])
    assert all(held[m] == 2 for m in before + during)
    assert messages([a.endpoint, b.endpoint]) == before + during


def test_copies_go_to_different_zones_of_registered_servers(
    logserver_factory: ServerFactory,
    zk_hosts: str,
    zk_path: str,
    tmp_path: Path,
    clients: list[LogClient],
) -> None:
    """Four servers registered with --zone east, east, west, west: with copies=2 through
    ZooKeeper discovery, every record is stored in both zones."""
    servers = [
        logserver_factory(f"z{i}", extra_args=("--zone", "east" if i < 2 else "west"))
        for i in range(4)
    ]
    client = zk_client(
        clients, zk_hosts, zk_path, tmp_path, replication=ReplicationPolicy(copies=2)
    )
    wait_known(client, 4)
    expected = log_all(client, numbered("zoned", 3000))
    east = set(messages([servers[0].endpoint, servers[1].endpoint]))
    west = set(messages([servers[2].endpoint, servers[3].endpoint]))
    assert east == west == set(expected)


def test_a_frozen_server_is_hedged_around_and_nothing_reads_back_twice(
    logserver_factory: ServerFactory,
    zk_hosts: str,
    zk_path: str,
    tmp_path: Path,
    clients: list[LogClient],
) -> None:
    """The server in use is frozen (SIGSTOP) with an RPC timeout of 30 s: its batches are
    hedged to the other server and logging goes on there (no failover yet); after SIGCONT
    the frozen server stores what it held, and read back every message is there once."""
    servers = [logserver_factory() for _ in range(2)]
    by_endpoint = {s.endpoint: s for s in servers}
    client = zk_client(clients, zk_hosts, zk_path, tmp_path, choice="sticky", failover=PATIENT)
    wait_known(client, 2)
    with Producer(client, "frozen") as producer:
        progress(client, 3000)
        frozen = by_endpoint[wait_for(lambda: client.stats().current_server, 10.0)]
        frozen.signal(signal.SIGSTOP)
        try:
            keep_logging_for(client, 3)
            stats = client.stats()
            assert stats.hedged >= 1
            assert stats.current_server != frozen.endpoint
        finally:
            frozen.signal(signal.SIGCONT)
        progress(client, 2000)
        expected = producer.stop()
    assert client.flush(60), client.stats()
    assert messages(list(by_endpoint)) == expected


def test_a_silent_partition_is_hedged_around(
    link: Link,  # noqa: F811
    link_zookeeper: ZooKeeperEnsemble,  # noqa: F811
    inside_server: LogServerProcess,  # noqa: F811
    logserver_factory: ServerFactory,
    zk_path: str,
    tmp_path: Path,
    clients: list[LogClient],
) -> None:
    """One of two servers is cut off silently (its replies dropped, then everything), with an
    RPC timeout of 30 s: logging goes on through the other server at once; when the
    partition heals the client uses both again, and every message reads back once."""
    outside = logserver_factory("outside", zk=link_zookeeper.hosts)
    endpoints = [inside_server.endpoint, outside.endpoint]
    client = zk_client(clients, link_zookeeper.hosts, zk_path, tmp_path, failover=PATIENT)
    wait_known(client, 2)
    with Producer(client, "cut") as producer:
        wait_for(lambda: numbers_on(inside_server, "cut"), 20, what="records via the link")
        progress(client, 1000)
        link.data.drop_from_inside()
        keep_logging_for(client, 3)
        link.data.drop_from_outside()
        keep_logging_for(client, 3)
        assert client.stats().hedged >= 1
        link.data.heal()
        held = len(numbers_on(inside_server, "cut"))
        wait_for(
            lambda: len(numbers_on(inside_server, "cut")) > held,
            40,
            what="the client to deliver to the healed server again",
        )
        expected = producer.stop()
    assert client.flush(60), client.stats()
    assert messages(endpoints) == expected
