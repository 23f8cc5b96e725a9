"""How fast a watching client learns about a server joining or leaving (real ZooKeeper, loopback).

Run with ``-s`` or look at the summary line this test prints: it is the figure
quoted in reports. The assertions are loose enough for a busy CI machine; the
design target is "well under 100 ms".
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import pytest
from kazoo.client import KazooClient

from logclient.discovery import ZooKeeperServers
from logserver.registry import Registration
from logserver.tools.launcher import wait_for
from logwire.serverset import Endpoint

from .conftest import has, lacks, make_member

JOINS = 50


class Clock:
    """A discovery listener that notes when each endpoint first appeared and disappeared."""

    def __init__(self) -> None:
        self.seen: dict[Endpoint, float] = {}
        self.gone: dict[Endpoint, float] = {}
        self._last: frozenset[Endpoint] = frozenset()

    def __call__(self, servers: frozenset[Endpoint]) -> None:
        now = time.perf_counter()
        for endpoint in servers - self._last:
            self.seen[endpoint] = now
            self.gone.pop(endpoint, None)
        for endpoint in self._last - servers:
            self.gone[endpoint] = now
            self.seen.pop(endpoint, None)
        self._last = servers


def summary(name: str, samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    return (
        f"{name}: n={len(ms)} median={statistics.median(ms):.2f}ms "
        f"p99={p99:.2f}ms max={ms[-1]:.2f}ms"
    )


def test_join_and_leave_reach_a_watching_client_quickly(
    zk_hosts: str,
    zk_path: str,
    observer: KazooClient,
    discovery_factory: Callable[..., ZooKeeperServers],
    registration_factory: Callable[..., Registration],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A server's node being created (or deleted) reaches a subscribed ZooKeeperServers listener in
    well under 100 ms (median), measured over 50 joins and leaves; Registration.start() (a new
    session, ensure_path, the ghost scan and the create) to seen likewise."""
    discovery = discovery_factory(zk_hosts, zk_path)
    clock = Clock()
    discovery.subscribe(clock)
    discovery.start()
    assert discovery.wait_for(lambda s: True, 1)
    observer.ensure_path(zk_path)

    create_call, create_to_seen, delete_to_gone, start_to_seen = [], [], [], []
    for _ in range(JOINS):
        member = make_member()
        started = time.perf_counter()
        node = observer.create(
            f"{zk_path}/member_", member.to_json(), ephemeral=True, sequence=True
        )
        create_call.append(time.perf_counter() - started)  # ZooKeeper's own commit (fsync)
        assert discovery.wait_for(has(member.endpoint), 5)
        wait_for(lambda e=member.endpoint: e in clock.seen, 5)  # listeners run on their own thread
        create_to_seen.append(clock.seen[member.endpoint] - started)
        started = time.perf_counter()
        observer.delete(node)
        assert discovery.wait_for(lacks(member.endpoint), 5)
        wait_for(lambda e=member.endpoint: e in clock.gone, 5)
        delete_to_gone.append(clock.gone[member.endpoint] - started)

    for _ in range(JOINS):
        registration = registration_factory(zk_hosts, zk_path)
        endpoint = registration.member.endpoint
        started = time.perf_counter()
        registration.start()
        assert discovery.wait_for(has(endpoint), 5)
        wait_for(lambda e=endpoint: e in clock.seen, 5)
        start_to_seen.append(clock.seen[endpoint] - started)
        registration.deregister()
        assert discovery.wait_for(lacks(endpoint), 5)

    lines = [
        summary("create call (baseline)", create_call),
        summary("create->seen", create_to_seen),
        summary("delete->gone", delete_to_gone),
        summary("Registration.start()->seen", start_to_seen),
    ]
    with capsys.disabled():
        print("\n[discovery latency] " + " | ".join(lines))
    # Speed is the benchmark's job (bench: discovery case, p99 target 100 ms); here every
    # join and leave must reach the listener, which the waits above assert.
    assert len(create_to_seen) == len(delete_to_gone) == len(start_to_seen) == JOINS
