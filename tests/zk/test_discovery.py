"""What must hold for ZooKeeperServers, the client's view of the registered logservers."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import pytest
from kazoo.client import KazooClient

from logclient.discovery import ZooKeeperServers
from logclient.errors import DiscoveryError
from logserver.registry import Registration
from logserver.tools.launcher import ZooKeeperEnsemble, wait_for
from logwire.serverset import Endpoint, Member

from .conftest import exactly, make_member

RegistrationFactory = Callable[..., Registration]
DiscoveryFactory = Callable[..., ZooKeeperServers]
KazooFactory = Callable[..., KazooClient]


def register(client: KazooClient, path: str, member: Member) -> str:
    """Create a member node the way a server does (used where the test needs full control)."""
    return str(
        client.create(
            f"{path}/member_", member.to_json(), ephemeral=True, sequence=True, makepath=True
        )
    )


class Recorder:
    """A listener that keeps every set it was given."""

    def __init__(self) -> None:
        self.calls: list[frozenset[Endpoint]] = []
        self.thread_names: set[str] = set()

    def __call__(self, servers: frozenset[Endpoint]) -> None:
        self.calls.append(servers)
        self.thread_names.add(threading.current_thread().name)


def test_sees_joins_and_leaves(
    zk_hosts: str,
    zk_path: str,
    registration_factory: RegistrationFactory,
    discovery_factory: DiscoveryFactory,
) -> None:
    """Servers appear when they register and disappear when they deregister; when ZooKeeper says
    the path is empty (while connected) the set is empty; listeners run on discovery's thread, and
    one listener raising does not stop the others or later updates."""
    discovery = discovery_factory(zk_hosts, zk_path)

    def broken_listener(servers: frozenset[Endpoint]) -> None:
        raise RuntimeError("a listener's bug must not stop discovery")

    discovery.subscribe(broken_listener)
    recorder = Recorder()
    discovery.subscribe(recorder)
    discovery.start()
    wait_for(lambda: discovery.stats().answered, 15.0, what="first answer")
    assert discovery.servers() == frozenset()

    members = [make_member() for _ in range(3)]
    registrations = [registration_factory(zk_hosts, zk_path, m) for m in members]
    for registration in registrations:
        registration.start()
    everyone = frozenset(m.endpoint for m in members)
    assert discovery.wait_for(lambda s: s == everyone, 10)

    registrations[0].deregister()
    assert discovery.wait_for(lambda s: s == everyone - {members[0].endpoint}, 10)
    for registration in registrations[1:]:
        registration.deregister()
    assert discovery.wait_for(lambda s: s == frozenset(), 10)
    # Listeners run on discovery's own thread: wait for them to have been told.
    wait_for(
        lambda: recorder.calls and recorder.calls[-1] == frozenset(), 15.0, what="listeners told"
    )
    wait_for(
        lambda: discovery.stats().updates == len(recorder.calls),
        15.0,
        what="every update delivered",
    )

    assert everyone in recorder.calls
    assert recorder.thread_names == {"logclient-discovery"}
    stats = discovery.stats()
    assert stats.connected and stats.state == "CONNECTED"
    assert stats.last_update is not None and stats.last_update <= time.monotonic()
    assert "state=CONNECTED" in repr(discovery)


def test_skips_and_counts_malformed_nodes(
    zk_hosts: str,
    zk_path: str,
    observer: KazooClient,
    discovery_factory: DiscoveryFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Nodes whose data is not a usable ServerSet member are skipped, counted once each and logged
    once each; members whose status is not ALIVE are left out without being malformed."""
    good = make_member()
    register(observer, zk_path, good)
    for junk in (b"not json", b"{}", b'{"serviceEndpoint": {"host": "", "port": 1}}'):
        observer.create(f"{zk_path}/member_", junk, ephemeral=True, sequence=True)
    dead = Member(make_member().endpoint, status="DEAD", process_id="x")
    register(observer, zk_path, dead)

    caplog.set_level(logging.WARNING, logger="logclient.discovery")
    discovery = discovery_factory(zk_hosts, zk_path)
    discovery.start()
    assert discovery.wait_for(lambda s: s == {good.endpoint}, 10)
    assert discovery.stats().malformed_nodes == 3
    assert discovery.stats().nodes == 5

    # More membership changes do not re-read, re-count or re-log the junk.
    late = make_member()
    register(observer, zk_path, late)
    assert discovery.wait_for(lambda s: s == {good.endpoint, late.endpoint}, 10)
    assert discovery.stats().malformed_nodes == 3
    malformed_logs = [r for r in caplog.records if "malformed" in r.getMessage()]
    assert len(malformed_logs) == 3


def test_ghost_nodes_count_once_by_endpoint(
    zk_hosts: str,
    zk_path: str,
    kazoo_factory: KazooFactory,
    discovery_factory: DiscoveryFactory,
    registration_factory: RegistrationFactory,
) -> None:
    """While a restarted server's old node (same endpoint, older session) still exists, the client
    lists that endpoint once; the restarted server's registration then removes the ghost."""
    member = make_member()
    old_process = kazoo_factory(zk_hosts)
    register(old_process, zk_path, Member(member.endpoint, process_id="old-incarnation"))
    restarted_early = kazoo_factory(zk_hosts)  # the new process, before it cleans up
    register(restarted_early, zk_path, Member(member.endpoint, process_id="new-incarnation"))

    discovery = discovery_factory(zk_hosts, zk_path)
    discovery.start()
    assert discovery.wait_for(lambda s: s == {member.endpoint}, 10)
    wait_for(lambda: discovery.stats().nodes == 2, 15.0, what="both nodes seen")
    assert discovery.servers() == {member.endpoint}

    registration = registration_factory(zk_hosts, zk_path, member)
    registration.start()
    assert registration.wait_registered(10)
    wait_for(lambda: discovery.stats().nodes == 1, 15.0, what="ghosts deleted")
    assert discovery.servers() == {member.endpoint}


def test_keeps_last_membership_through_an_outage_and_resumes(
    own_zookeeper: ZooKeeperEnsemble,
    zk_path: str,
    discovery_factory: DiscoveryFactory,
    registration_factory: RegistrationFactory,
) -> None:
    """When its ZooKeeper stops, the client keeps the servers it knew (never an empty set); when
    ZooKeeper is back, updates flow again."""
    hosts = own_zookeeper.hosts
    first = registration_factory(hosts, zk_path, session_timeout_s=10)
    first.start()
    discovery = discovery_factory(hosts, zk_path, session_timeout_s=10)
    recorder = Recorder()
    discovery.subscribe(recorder)
    discovery.start()
    known = frozenset({first.member.endpoint})
    assert discovery.wait_for(lambda s: s == known, 10)

    own_zookeeper.nodes[0].stop()
    wait_for(lambda: discovery.stats().state == "SUSPENDED", 15.0, what="discovery SUSPENDED")
    assert discovery.servers() == known
    assert not discovery.stats().connected

    own_zookeeper.nodes[0].start(own_zookeeper.jar)
    own_zookeeper.wait_ready()
    wait_for(lambda: discovery.stats().connected, 15.0, what="discovery reconnected")
    assert discovery.servers() == known
    second = registration_factory(hosts, zk_path)
    second.start()
    assert discovery.wait_for(lambda s: s == known | {second.member.endpoint}, 15)
    assert frozenset() not in recorder.calls


def test_session_expiry_of_the_client_keeps_the_membership(
    zk_hosts: str,
    zk_path: str,
    discovery_factory: DiscoveryFactory,
    registration_factory: RegistrationFactory,
) -> None:
    """When ZooKeeper expires the discovery client's own session (LOST, then a new session), the
    known servers are kept throughout and changes keep arriving afterwards."""
    first = registration_factory(zk_hosts, zk_path)
    first.start()
    discovery = discovery_factory(zk_hosts, zk_path)
    recorder = Recorder()
    discovery.subscribe(recorder)
    discovery.start()
    assert discovery.wait_for(lambda s: s == {first.member.endpoint}, 10)

    client_id = discovery._client.client_id
    thief = KazooClient(hosts=zk_hosts, client_id=client_id)
    thief.start(timeout=10)
    thief.stop()
    thief.close()
    wait_for(
        lambda: discovery._client.client_id not in (None, client_id), 15.0, what="a new session"
    )
    assert discovery.servers() == {first.member.endpoint}

    second = registration_factory(zk_hosts, zk_path)
    second.start()
    assert discovery.wait_for(lambda s: s == {first.member.endpoint, second.member.endpoint}, 10)
    assert frozenset() not in recorder.calls


def test_parent_deleted_and_re_created_is_watched_again(
    zk_hosts: str, zk_path: str, observer: KazooClient, discovery_factory: DiscoveryFactory
) -> None:
    """A ChildrenWatch on a deleted node stops for good (kazoo #149): when the path is deleted the
    set empties (ZooKeeper says so), and when it is re-created its members are seen again."""
    discovery = discovery_factory(zk_hosts, zk_path)
    discovery.start()
    for round_ in range(2):
        member = make_member()
        register(observer, zk_path, member)
        assert discovery.wait_for(exactly(member.endpoint), 10), round_
        observer.delete(zk_path, recursive=True)
        assert discovery.wait_for(lambda s: s == frozenset(), 10), round_
    # Deleted and re-created faster than the watch could see the gap.
    member = make_member()
    register(observer, zk_path, member)
    assert discovery.wait_for(lambda s: s == {member.endpoint}, 10)
    observer.delete(zk_path, recursive=True)
    again = make_member()
    register(observer, zk_path, again)
    assert discovery.wait_for(lambda s: s == {again.endpoint}, 10)


def test_started_while_zookeeper_is_down_learns_servers_when_it_is_up(
    own_zookeeper: ZooKeeperEnsemble,
    zk_path: str,
    kazoo_factory: KazooFactory,
    discovery_factory: DiscoveryFactory,
) -> None:
    """start() with ZooKeeper down returns at once and servers() is empty; once ZooKeeper is up
    the client learns the registered servers."""
    member = make_member()
    operator = kazoo_factory(own_zookeeper.hosts)
    operator.create(f"{zk_path}/member_", member.to_json(), sequence=True, makepath=True)
    operator.stop()
    own_zookeeper.nodes[0].stop()

    discovery = discovery_factory(own_zookeeper.hosts, zk_path)
    started = time.monotonic()
    discovery.start()
    assert time.monotonic() - started < 0.5
    assert discovery.servers() == frozenset()
    assert not discovery.stats().answered

    own_zookeeper.nodes[0].start(own_zookeeper.jar)
    own_zookeeper.wait_ready()
    assert discovery.wait_for(lambda s: s == {member.endpoint}, 15)


def test_close_leaves_no_threads_behind(
    zk_hosts: str, zk_path: str, own_zookeeper: ZooKeeperEnsemble
) -> None:
    """No thread before start(); close() stops every thread start() started, also when ZooKeeper
    is unreachable, within its timeout; close() is idempotent."""
    before = set(threading.enumerate())
    discovery = ZooKeeperServers(zk_hosts, zk_path)
    assert set(threading.enumerate()) == before
    discovery.start()
    wait_for(lambda: discovery.stats().answered, 15.0, what="first answer")
    assert set(threading.enumerate()) > before
    discovery.close(timeout=5)
    assert set(threading.enumerate()) <= before
    assert discovery.stats().state == "CLOSED"
    discovery.close()

    own_zookeeper.nodes[0].stop()
    unreachable = ZooKeeperServers(own_zookeeper.hosts, zk_path)
    unreachable.start()
    wait_for(lambda: len(set(threading.enumerate()) - before) >= 3, 15.0, what="threads started")
    started = time.monotonic()
    unreachable.close(timeout=5)
    assert time.monotonic() - started < 5.5
    assert set(threading.enumerate()) <= before


def test_invalid_configuration_is_a_discovery_error() -> None:
    """A bad hosts string or path fails at construction with DiscoveryError, not a kazoo error."""
    for hosts, path in [
        ("127.0.0.1:notaport", "/logservers"),
        ("", "/logservers"),
        ("127.0.0.1:2181", "logservers"),
        ("127.0.0.1:2181", "/logservers/"),
    ]:
        with pytest.raises(DiscoveryError):
            ZooKeeperServers(hosts, path)
    closed = ZooKeeperServers("127.0.0.1:1", "/logservers")
    closed.close()
    with pytest.raises(DiscoveryError):
        closed.start()


def test_a_new_registration_of_a_known_endpoint_reaches_member_listeners(
    zk_hosts: str, zk_path: str, observer: KazooClient, discovery_factory: DiscoveryFactory
) -> None:
    """A server restarted on its endpoint registers a new node while its old one lingers (a
    ghost until its session expires): endpoint listeners hear nothing (the set is the same),
    member listeners hear of the new node, and the newest node stands for the endpoint, with
    ZooKeeper's sequence number as its order."""
    member = make_member()
    old = register(observer, zk_path, member)
    discovery = discovery_factory(zk_hosts, zk_path)
    endpoints, members = Recorder(), []
    discovery.subscribe(endpoints)
    discovery.subscribe_members(members.append)
    discovery.start()
    assert discovery.wait_for(lambda s: s == {member.endpoint}, 10)
    (first,) = discovery.members()
    assert first.node == old.rsplit("/", 1)[1] and first.order == int(old[-10:])

    new = register(observer, zk_path, member)  # the restarted server; the old node lingers
    wait_for(lambda: discovery.members()[0].node == new.rsplit("/", 1)[1], 10, what="new node")
    (renewed,) = discovery.members()
    assert renewed.order is not None and renewed.order > first.order
    assert members[-1] == (renewed,)
    observer.delete(old)  # the ghost expires: nothing changes for the client
    other = make_member()
    register(observer, zk_path, other)  # seen after the deletion: events come in order
    wait_for(lambda: len(endpoints.calls) == 2, 10, what="the listeners to hear of the new server")
    assert [m for m in discovery.members() if m.endpoint == member.endpoint] == [renewed]
    assert endpoints.calls == [{member.endpoint}, {member.endpoint, other.endpoint}]
