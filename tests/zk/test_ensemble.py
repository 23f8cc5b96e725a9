"""Registration and discovery against a real 3-node ensemble losing its leader."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from kazoo.client import KazooClient

from logclient.discovery import ZooKeeperServers
from logserver.registry import Registration
from logserver.tools.launcher import ZooKeeperEnsemble, wait_for

pytestmark = pytest.mark.ensemble


def test_leader_killed_registration_and_discovery_carry_on(
    ensemble: ZooKeeperEnsemble,
    zk_path: str,
    registration_factory: Callable[..., Registration],
    discovery_factory: Callable[..., ZooKeeperServers],
    kazoo_factory: Callable[..., KazooClient],
) -> None:
    """SIGKILL of the leader: the session moves to another node, so the registration keeps the
    same node and session (no re-registration), discovery keeps its servers, and a server joining
    after the new election is seen."""
    hosts = ensemble.hosts
    first = registration_factory(hosts, zk_path, session_timeout_s=10)
    first.start()
    discovery = discovery_factory(hosts, zk_path, session_timeout_s=10)
    discovery.start()
    assert first.wait_registered(15)
    assert discovery.wait_for(lambda s: s == {first.member.endpoint}, 15)
    before = (first.node_path, first.session_id)

    leader = ensemble.leader()
    assert leader is not None
    leader.kill()
    wait_for(
        lambda: (new := ensemble.leader()) is not None and new is not leader,
        30,
        what="a new leader",
    )

    second = registration_factory(hosts, zk_path, session_timeout_s=10)
    second.start()
    both = {first.member.endpoint, second.member.endpoint}
    assert discovery.wait_for(lambda s: s == both, 30)
    wait_for(lambda: first._client.state == "CONNECTED", 15.0, what="first reconnected")
    assert (first.node_path, first.session_id) == before
    assert first.registered and first.registrations == 1
    assert discovery.servers() == both
    observer = kazoo_factory(hosts)
    assert first.node_path is not None
    stat = observer.exists(first.node_path)
    assert stat is not None and stat.ephemeralOwner == before[1]
