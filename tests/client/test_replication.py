"""Copies on several servers (``ReplicationPolicy``), against in-process servers.

What must hold: every batch is stored on ``copies`` distinct servers, spread over zones and
hosts first; it counts as acknowledged (``flush()``, ``stats().acknowledged``) only once
``acks`` servers hold it; with fewer live servers than ``acks`` records wait (and spool) and
are never acknowledged with fewer copies, and ``stats().servers_short`` says so; copies
beyond ``acks`` are made later when a server comes back, within a memory bound.
The same with real logserver processes is in ``tests/faults/test_copies.py``.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from pathlib import Path

import pytest

from logclient import (
    BatchPolicy,
    ChoicePolicy,
    FailoverPolicy,
    HedgePolicy,
    LogServerHandler,
    ReplicationPolicy,
    SpoolPolicy,
    StaticServers,
)
from logclient._servers import ServerPool
from logclient._source import KnownServer
from logserver.tools.launcher import wait_for
from logwire.serverset import Endpoint
from tests.delivery import log_all
from tests.helpers import numbered

from .conftest import ClientFactory, InProcFactory
from .inproc_server import InProcessLogServer

# ------------------------------------------------------------------ the policy


@pytest.mark.parametrize(
    "options",
    [
        {"copies": 0},
        {"copies": 17},
        {"copies": 1.5},
        {"copies": True},
        {"copies": 2, "acks": 3},
        {"copies": 2, "acks": 0},
        {"acks": "1"},
        {"max_waiting_bytes": 0},
    ],
)
def test_bad_replication_settings_fail_at_construction(options: dict[str, object]) -> None:
    """copies and acks are small positive ints, acks at most copies; the memory bound is > 0."""
    with pytest.raises(ValueError, match="ReplicationPolicy"):
        ReplicationPolicy(**options)  # type: ignore[arg-type]


def test_acks_default_to_every_copy() -> None:
    """Without acks a batch is acknowledged once every copy is stored."""
    assert ReplicationPolicy().required == 1
    assert ReplicationPolicy(copies=3).required == 3
    assert ReplicationPolicy(copies=3, acks=2).required == 2
    assert "copies=3" in repr(ReplicationPolicy(copies=3))


# ------------------------------------------------------------ choosing servers


def _pool(members: list[KnownServer], strategy: str = "random") -> ServerPool:
    pool = ServerPool(
        FailoverPolicy(),
        ChoicePolicy(strategy),
        rng=random.Random(7),  # type: ignore[arg-type]
    )
    pool.update(members)
    return pool


def test_copies_spread_over_zones_first_then_hosts() -> None:
    """Two copies never share a zone while another zone has a live server, nor a host while
    another host has one; only with no other choice do they share."""
    members = [
        KnownServer(Endpoint("h1", 1), "n1", 1, "a"),
        KnownServer(Endpoint("h1", 2), "n2", 2, "a"),
        KnownServer(Endpoint("h2", 1), "n3", 3, "a"),
        KnownServer(Endpoint("h3", 1), "n4", 4, "b"),
    ]
    pool = _pool(members)
    zone = {m.endpoint: m.zone for m in members}
    for _ in range(200):
        picks = pool.choose_copies(2)
        assert len(set(picks)) == 2
        assert {zone[e] for e in picks} == {"a", "b"}
    for _ in range(200):
        picks = pool.choose_copies(3)
        assert len({e.host for e in picks}) == 3  # zone b once, then a's other host
    everything = pool.choose_copies(4)
    assert sorted(everything) == sorted(m.endpoint for m in members)
    assert len(pool.choose_copies(5)) == 4


def test_bad_zones_for_static_servers_are_refused() -> None:
    """A zone follows the registration's rules (letters, digits, '.', '_', ':', '-')."""
    with pytest.raises(ValueError, match="zone"):
        StaticServers(["h:1"], zones={"h:1": "eu west"})
    assert StaticServers(["h:1"], zones={"h:1": "eu-west-1a"}).members()[0].zone == "eu-west-1a"


def test_without_zones_copies_spread_over_hosts() -> None:
    """Servers that registered no zone are spread by host."""
    members = [
        KnownServer(Endpoint(h, p), f"{h}{p}", i)
        for i, (h, p) in enumerate([("h1", 1), ("h1", 2), ("h2", 1)])
    ]
    pool = _pool(members)
    for _ in range(100):
        assert len({e.host for e in pool.choose_copies(2)}) == 2


def test_leader_picks_by_registration_order_for_every_copy() -> None:
    """With the leader choice the copies go to the servers that registered first (spread
    permitting), so every client picks the same ones."""
    members = [KnownServer(Endpoint(f"h{i}", 1), f"n{i}", 10 - i) for i in range(4)]
    pool = _pool(members, "leader")
    assert pool.choose_copies(2) == (Endpoint("h3", 1), Endpoint("h2", 1))
    pool.mark_down(Endpoint("h3", 1), "test")
    assert pool.choose_copies(2) == (Endpoint("h2", 1), Endpoint("h1", 1))


def test_a_down_server_is_probed_only_when_too_few_are_live() -> None:
    """With one of two servers down, a two-copy pick adds the down one as a probe at most once
    per probe interval; a pick that needs only one does not."""
    now = [100.0]
    pool = ServerPool(
        FailoverPolicy(probe_interval_s=1.0),
        ChoicePolicy("random"),
        clock=lambda: now[0],
    )
    a, b = Endpoint("h1", 1), Endpoint("h2", 1)
    pool.update([a, b])
    pool.mark_down(b, "test")
    assert pool.choose_copies(2, minimum=1) == (a,)
    assert pool.choose_copies(2, minimum=2) == (a, b)
    assert pool.choose_copies(2, minimum=2) == (a,)  # probed already in this interval
    now[0] += 1.0
    assert pool.choose_copies(2, minimum=2, probe=False) == (a,)
    assert pool.choose_copies(2, minimum=2) == (a, b)


# ------------------------------------------------------------ in-process servers


def _copies(servers: list[InProcessLogServer]) -> Counter[bytes]:
    """How many servers hold each message."""
    held: Counter[bytes] = Counter()
    for server in servers:
        held.update(set(server.messages()))
    return held


def test_every_batch_is_stored_on_two_servers(
    inproc: InProcFactory, make_client: ClientFactory
) -> None:
    """copies=2 over three servers: after flush() every record is on exactly two of them (a
    batch goes to distinct servers, once each), each server stored its batches in logging
    order, and acknowledged counts each record once. (Without hedging: a hedged batch would
    make a third copy.)"""
    servers = [inproc() for _ in range(3)]
    client = make_client(
        *servers, replication=ReplicationPolicy(copies=2), hedging=HedgePolicy.disabled()
    )
    expected = log_all(client, numbered("two", 3000), flush=20)
    held = _copies(servers)
    assert set(held) == {m.encode() for m in expected}
    assert set(held.values()) == {2}
    for server in servers:
        sequences = [b.sequence for b in server.batches()]
        assert sequences == sorted(sequences)
        assert server.duplicates == 0
    stats = client.stats()
    assert stats.acknowledged == len(expected)
    assert stats.sent == 2 * len(expected)
    assert stats.servers_short == 0 and stats.waiting_for_copies == 0


def test_zones_given_to_static_servers_spread_the_copies(
    inproc: InProcFactory, make_client: ClientFactory
) -> None:
    """Four servers in two zones: each record's two copies are in different zones."""
    servers = [inproc() for _ in range(4)]
    zones = {s.endpoint: "east" if i < 2 else "west" for i, s in enumerate(servers)}
    client = make_client(
        source=StaticServers([s.endpoint for s in servers], zones=zones),
        replication=ReplicationPolicy(copies=2),
        hedging=HedgePolicy.disabled(),
    )
    expected = log_all(client, numbered("zone", 2000), flush=20)
    east = set(servers[0].messages()) | set(servers[1].messages())
    west = set(servers[2].messages()) | set(servers[3].messages())
    assert east == west == {m.encode() for m in expected}


def test_with_fewer_live_servers_than_acks_records_wait_then_arrive(
    inproc: InProcFactory, make_client: ClientFactory
) -> None:
    """copies=2 and one of two servers gone: nothing is acknowledged (a batch on one server is
    not enough), flush() says False and stats() names the shortfall; when the server is back
    every record gets its two copies and flush() says True."""
    a, b = inproc(), inproc()
    b.stop()
    client = make_client(a, b, replication=ReplicationPolicy(copies=2))
    expected = log_all(client, numbered("short", 500), flush=None)
    assert not client.flush(1.0)
    stats = client.stats()
    assert stats.acknowledged == 0
    assert stats.unsettled == len(expected)
    wait_for(lambda: client.stats().servers_short == 1, 10, what="the shortfall in stats()")
    b.restart()
    assert client.flush(20), client.stats()
    assert set(_copies([a, b]).values()) == {2}
    assert set(_copies([a, b])) == {m.encode() for m in expected}
    assert client.stats().acknowledged == len(expected)
    assert client.stats().servers_short == 0


def test_records_waiting_for_a_second_server_spill_and_arrive_from_the_spool(
    inproc: InProcFactory, make_client: ClientFactory, tmp_path: Path
) -> None:
    """copies=2 with one server: after spill_after_s the waiting records go to the spool, and
    a second client on that spool delivers them to both servers once the second is up."""
    a, b = inproc(), inproc()
    b.stop()
    spool = tmp_path / "spool"
    client = make_client(
        a,
        b,
        spool_dir=spool,
        replication=ReplicationPolicy(copies=2),
        spool=SpoolPolicy(directory=spool, spill_after_s=0.2),
    )
    expected = log_all(client, numbered("spill", 400), flush=None)
    wait_for(lambda: client.stats().spooled == len(expected), 15, what="the records spooled")
    client.close(1)
    assert client.stats().acknowledged == 0
    b.restart()
    second = make_client(a, b, spool_dir=spool, replication=ReplicationPolicy(copies=2))
    assert second.flush(20), second.stats()
    wait_for(lambda: second.stats().spooled == 0, 10, what="the spool delivered")
    assert set(_copies([a, b])) == {m.encode() for m in expected}
    assert set(_copies([a, b]).values()) == {2}


def test_a_copy_lost_with_its_server_is_made_on_another(
    inproc: InProcFactory, make_client: ClientFactory
) -> None:
    """copies=2 over three servers, one stopped while batches are in flight: every record
    still ends up on two live servers (the lost copies are made on the third)."""
    servers = [inproc() for _ in range(3)]
    client = make_client(
        *servers,
        replication=ReplicationPolicy(copies=2),
        batching=BatchPolicy(max_records=20, linger_s=0.0, max_in_flight=4),
    )
    first = log_all(client, numbered("before", 2000), flush=None)
    wait_for(lambda: client.stats().acknowledged >= 200, 10, what="some acknowledgements")
    victim = next(s for s in servers if s.messages())
    victim.stop()
    second = log_all(client, numbered("after", 2000))
    survivors = [s for s in servers if s is not victim]
    on_survivors = _copies(survivors)
    for m in second:
        assert on_survivors[m.encode()] == 2, m
    everywhere = _copies(servers)
    assert all(everywhere[m.encode()] >= 2 for m in first + second)
    assert client.stats().failovers >= 1 and client.stats().dropped == 0


def test_copies_beyond_acks_are_made_when_a_server_comes_back(
    inproc: InProcFactory, make_client: ClientFactory
) -> None:
    """copies=2, acks=1, one server down: records are acknowledged on one server at once and
    wait for their second copy; when the other server is back they get it."""
    a, b = inproc(), inproc()
    b.stop()
    client = make_client(a, b, replication=ReplicationPolicy(copies=2, acks=1))
    expected = log_all(client, numbered("later", 600), flush=10)
    assert client.stats().acknowledged == len(expected)
    wait_for(
        lambda: client.stats().waiting_for_copies == len(expected),
        10,
        what="every record waiting for its second copy",
    )
    b.restart()
    wait_for(
        lambda: client.stats().waiting_for_copies == 0,
        20,
        what=f"the second copies made: {client.stats()!r}",
    )
    assert set(b.messages()) == {m.encode() for m in expected}
    assert client.stats().copies_given_up == 0


def test_copies_waiting_beyond_the_memory_bound_or_at_close_are_given_up_and_counted(
    inproc: InProcFactory, make_client: ClientFactory
) -> None:
    """Missing copies wait within max_waiting_bytes; the oldest past it, and those left at
    close, are given up and counted (the records are stored, on fewer servers)."""
    a, b = inproc(), inproc()
    b.stop()
    client = make_client(
        a,
        b,
        replication=ReplicationPolicy(copies=2, acks=1, max_waiting_bytes=2000),
        batching=BatchPolicy(max_records=10, linger_s=0.0),
    )
    expected = log_all(client, numbered("bound", 500), flush=10)
    stats = client.stats()
    assert stats.copies_given_up > 0
    assert stats.copies_given_up + stats.waiting_for_copies == len(expected)
    client.close(1)
    assert client.stats().copies_given_up == len(expected)
    assert client.stats().dropped == 0
    assert set(a.messages()) == {m.encode() for m in expected}


def test_a_hung_copy_holds_the_acknowledgement_until_it_is_given_up_and_made_elsewhere(
    inproc: InProcFactory, make_client: ClientFactory
) -> None:
    """copies=2 over three servers, one of the two in use hangs: nothing is acknowledged with
    one copy; after the RPC timeout the copy goes to the third server."""
    servers = [inproc() for _ in range(3)]
    client = make_client(
        *servers,
        choice="leader",
        replication=ReplicationPolicy(copies=2),
        failover=FailoverPolicy(
            connect_timeout_s=0.5, rpc_timeout_s=0.5, down_backoff_s=5, probe_interval_s=0.1
        ),
    )
    client.log("app", "warm")
    assert client.flush(10)
    servers[1].behaviour.mode = "hang"
    expected = log_all(client, numbered("hang", 100), flush=20)
    held = _copies([servers[0], servers[2]])
    assert all(held[m.encode()] == 2 for m in expected)
    servers[1].resume()


def test_the_handler_takes_a_replication_policy(inproc: InProcFactory, tmp_path: Path) -> None:
    """LogServerHandler passes ReplicationPolicy to the client it makes."""
    a, b = inproc(), inproc()
    handler = LogServerHandler(
        servers=StaticServers([a.endpoint, b.endpoint]),
        replication=ReplicationPolicy(copies=2),
        spool=SpoolPolicy(directory=tmp_path / "spool"),
    )
    logger = logging.getLogger("test.replication.handler")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("stored twice")
        assert handler.client.flush(10)
    finally:
        logger.removeHandler(handler)
        handler.close()
    assert len(a.messages()) == len(b.messages()) == 1
    assert handler.client.replication.copies == 2
