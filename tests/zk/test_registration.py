"""What must hold for a logserver's registration in a real ZooKeeper."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import ConnectionLoss
from kazoo.security import make_digest_acl

from logserver.errors import RegistrationError
from logserver.registry import Registration
from logserver.tools.launcher import ZooKeeperEnsemble, wait_for
from logwire.serverset import Member

from .conftest import Node, make_member, nodes

RegistrationFactory = Callable[..., Registration]
KazooFactory = Callable[..., KazooClient]


def only_node(client: KazooClient, path: str) -> Node:
    [node] = nodes(client, path)
    return node


def test_registers_one_ephemeral_sequential_node_in_serverset_shape(
    zk_hosts: str, zk_path: str, observer: KazooClient, registration_factory: RegistrationFactory
) -> None:
    """One EPHEMERAL SEQUENTIAL ``member_NNNNNNNNNN`` node whose data is the ServerSet JSON;
    deregister() deletes it at once and leaves no thread behind."""
    threads_before = set(threading.enumerate())
    member = make_member()
    registration = registration_factory(zk_hosts, zk_path, member)
    registration.start()
    assert registration.wait_registered(10)

    node = only_node(observer, zk_path)
    assert re.fullmatch(r"member_\d{10}", node.name)
    assert node.owner != 0
    assert node.owner == registration.session_id
    assert registration.node_path == f"{zk_path}/{node.name}"
    doc = json.loads(node.data)
    assert doc["serviceEndpoint"] == {"host": member.endpoint.host, "port": member.endpoint.port}
    assert doc["additionalEndpoints"] == {}
    assert doc["status"] == "ALIVE"
    assert Member.from_json(node.data) == member
    assert "member_" in repr(registration) and "registered=True" in repr(registration)

    registration.deregister(timeout=5)
    # "At once": the node is gone when deregister() returns, not a session timeout later.
    assert observer.get_children(zk_path) == []
    assert not registration.registered and registration.node_path is None
    assert set(threading.enumerate()) <= threads_before
    registration.deregister()  # idempotent


def expire_session(hosts: str, registration: Registration) -> int:
    """Make ZooKeeper expire the registration's session for real; return the old session id.

    A second client attaches to the same session (id and password) and closes
    it: ZooKeeper ends the session, deletes its ephemeral nodes, and tells the
    original client "session expired" when it reconnects.
    """
    client_id = registration._client.client_id
    assert client_id is not None
    thief = KazooClient(hosts=hosts, client_id=client_id)
    thief.start(timeout=10)
    thief.stop()
    thief.close()
    return int(client_id[0])


def test_session_expiry_re_registers_exactly_once(
    zk_hosts: str, zk_path: str, observer: KazooClient, registration_factory: RegistrationFactory
) -> None:
    """After ZooKeeper really expires the session, the server is registered again under a new
    node and a new session, exactly once: no moment with two nodes of ours, and it stays one."""
    registration = registration_factory(zk_hosts, zk_path)
    registration.start()
    assert registration.wait_registered(10)
    old = only_node(observer, zk_path)

    seen_counts: list[int] = []
    observer.ChildrenWatch(zk_path, lambda children: seen_counts.append(len(children)))

    old_session = expire_session(zk_hosts, registration)
    wait_for(
        lambda: registration.registered and registration.session_id not in (None, old_session),
        15.0,
        what="re-registration under a new session",
    )
    new = only_node(observer, zk_path)
    assert new.name != old.name
    assert new.owner == registration.session_id != old_session
    assert registration.registrations == 2
    # Settled: still exactly one node a while later, and no watcher ever saw two.
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        assert [n.name for n in nodes(observer, zk_path)] == [new.name]
        time.sleep(0.05)
    assert max(seen_counts) == 1
    assert registration.registrations == 2


def test_node_deleted_by_an_operator_is_re_registered(
    zk_hosts: str, zk_path: str, observer: KazooClient, registration_factory: RegistrationFactory
) -> None:
    """Someone deletes our node while the session lives: we notice and register again."""
    registration = registration_factory(zk_hosts, zk_path)
    registration.start()
    assert registration.wait_registered(10)
    old = only_node(observer, zk_path)

    observer.delete(f"{zk_path}/{old.name}")

    wait_for(
        lambda: registration.registered and registration.node_path != f"{zk_path}/{old.name}",
        15.0,
        what="re-registration after delete",
    )
    new = only_node(observer, zk_path)
    assert new.name != old.name
    assert new.owner == old.owner == registration.session_id  # same session, new node
    assert registration.registrations == 2


class LostReplyRegistration(Registration):
    """A registration whose first create succeeds in ZooKeeper but whose reply is 'lost'.

    This is the "retried create" fault of docs/zookeeper.md: the connection drops after the server
    created the node and before the client heard so, and the create is retried.
    """

    creates = 0

    def _create_node(self) -> str:
        path = super()._create_node()
        self.creates += 1
        if self.creates == 1:
            raise ConnectionLoss("reply lost (injected)")
        return path


def test_retried_create_after_a_lost_reply_leaves_one_node(
    zk_hosts: str, zk_path: str, observer: KazooClient
) -> None:
    """A create whose reply was lost is retried without a second node: the retry finds the node
    by our process id and session and adopts it."""
    registration = LostReplyRegistration(zk_hosts, zk_path, make_member(), session_timeout_s=4)
    try:
        registration.start()
        assert registration.wait_registered(10)
        node = only_node(observer, zk_path)
        assert registration.creates == 1  # adopted, not created again
        assert registration.node_path == f"{zk_path}/{node.name}"
        assert node.owner == registration.session_id
    finally:
        registration.deregister()


def test_create_step_run_twice_keeps_one_node(
    zk_hosts: str, zk_path: str, observer: KazooClient, registration_factory: RegistrationFactory
) -> None:
    """Running the find-or-create step again adopts our node; a duplicate of ours in our own
    session (a retried create that did go through twice) is deleted, keeping the current one."""
    member = make_member()
    registration = registration_factory(zk_hosts, zk_path, member)
    registration.start()
    assert registration.wait_registered(10)
    first = only_node(observer, zk_path)

    node, session, adopted, _ = registration._find_or_create()
    assert (node, session, adopted) == (registration.node_path, registration.session_id, True)
    assert [n.name for n in nodes(observer, zk_path)] == [first.name]

    # A second node with our data in our session, as a blind retry would make.
    registration._create_node()
    assert len(nodes(observer, zk_path)) == 2
    node, _, adopted, _ = registration._find_or_create()
    assert adopted and node == registration.node_path
    assert [n.name for n in nodes(observer, zk_path)] == [first.name]


def test_ghost_of_a_previous_incarnation_is_deleted(
    zk_hosts: str,
    zk_path: str,
    observer: KazooClient,
    kazoo_factory: KazooFactory,
    registration_factory: RegistrationFactory,
) -> None:
    """A node with our endpoint owned by another, still-live session (our previous process, not yet
    expired) is deleted when we register; another server's node is left alone."""
    member = make_member()
    old_process = kazoo_factory(zk_hosts)  # kept alive: ZooKeeper would keep its node
    old_process.ensure_path(zk_path)
    ghost_member = Member(member.endpoint, process_id="previous-incarnation")
    old_process.create(f"{zk_path}/member_", ghost_member.to_json(), ephemeral=True, sequence=True)
    neighbour = make_member()
    old_process.create(f"{zk_path}/member_", neighbour.to_json(), ephemeral=True, sequence=True)
    assert len(nodes(observer, zk_path)) == 2

    registration = registration_factory(zk_hosts, zk_path, member)
    registration.start()
    assert registration.wait_registered(10)

    by_endpoint = {Member.from_json(n.data).endpoint: n for n in nodes(observer, zk_path)}
    assert set(by_endpoint) == {member.endpoint, neighbour.endpoint}
    assert by_endpoint[member.endpoint].owner == registration.session_id
    assert Member.from_json(by_endpoint[member.endpoint].data).process_id == member.process_id
    assert by_endpoint[neighbour.endpoint].owner == old_process.client_id[0]


def test_zookeeper_unreachable_at_start(
    own_zookeeper: ZooKeeperEnsemble,
    zk_path: str,
    kazoo_factory: KazooFactory,
    registration_factory: RegistrationFactory,
) -> None:
    """With ZooKeeper down, start() returns at once and nothing raises; the server registers as
    soon as ZooKeeper comes up."""
    node = own_zookeeper.nodes[0]
    node.stop()
    registration = registration_factory(own_zookeeper.hosts, zk_path)

    started = time.monotonic()
    registration.start()
    assert time.monotonic() - started < 0.5
    assert not registration.wait_registered(1.5)
    assert "registered=False" in repr(registration)

    node.start(own_zookeeper.jar)
    own_zookeeper.wait_ready()
    assert registration.wait_registered(15)
    observer = kazoo_factory(own_zookeeper.hosts)
    assert only_node(observer, zk_path).owner == registration.session_id


def test_outage_that_keeps_the_session_does_not_re_register(
    own_zookeeper: ZooKeeperEnsemble,
    zk_path: str,
    kazoo_factory: KazooFactory,
    registration_factory: RegistrationFactory,
) -> None:
    """ZooKeeper restarting under a registered server is a SUSPENDED/reconnect that keeps the
    session: the node stays the same and nothing is created again (CURATOR-320); nothing raises.
    The session timeout is long (30 s) so that a slow restart of the JVM on a loaded machine is
    still an outage that keeps the session, which is what this test is about."""
    registration = registration_factory(own_zookeeper.hosts, zk_path, session_timeout_s=30)
    registration.start()
    assert registration.wait_registered(10)
    before = (registration.node_path, registration.session_id)

    own_zookeeper.nodes[0].stop()
    wait_for(lambda: registration._client.state == "SUSPENDED", 15.0, what="SUSPENDED")
    assert registration.registered  # the node lives until the session expires
    own_zookeeper.nodes[0].start(own_zookeeper.jar)
    own_zookeeper.wait_ready()
    # kazoo gives one connection attempt up to the session timeout: one made while the JVM
    # was still starting can take that long before the next attempt succeeds.
    wait_for(lambda: registration._client.state == "CONNECTED", 45.0, what="reconnect")

    observer = kazoo_factory(own_zookeeper.hosts)
    assert only_node(observer, zk_path).owner == before[1]
    assert (registration.node_path, registration.session_id) == before
    assert registration.registrations == 1


def test_errors_retrying_cannot_fix_are_registration_errors(
    zk_hosts: str, zk_path: str, observer: KazooClient, registration_factory: RegistrationFactory
) -> None:
    """A bad hosts string or path fails at construction; a path under an ephemeral node (no
    children allowed) surfaces from wait_registered() as RegistrationError, not a kazoo error."""
    with pytest.raises(RegistrationError):
        Registration("127.0.0.1:notaport", zk_path, make_member())
    with pytest.raises(RegistrationError):
        Registration("127.0.0.1:2181", "relative/path", make_member())
    with pytest.raises(RegistrationError):
        Registration("127.0.0.1:2181", "/a//b", make_member())

    observer.create(zk_path, ephemeral=True, makepath=True)
    registration = registration_factory(zk_hosts, f"{zk_path}/servers")
    registration.start()
    with pytest.raises(RegistrationError) as raised:
        registration.wait_registered(10)
    assert "NoChildrenForEphemerals" in str(raised.value)


def test_two_live_processes_with_one_endpoint_do_not_delete_each_other_forever(
    zk_hosts: str, zk_path: str, observer: KazooClient, registration_factory: RegistrationFactory
) -> None:
    """A live twin (a second process misconfigured with our endpoint) looks like a ghost to the
    newcomer, which deletes its node once; the twin re-registers and, not being a first
    registration, leaves the newcomer's node alone: two nodes, stable, no deletion ping-pong."""
    first = registration_factory(zk_hosts, zk_path)
    first.start()
    assert first.wait_registered(10)
    twin_member = Member(first.member.endpoint, process_id=make_member().process_id)
    twin = registration_factory(zk_hosts, zk_path, twin_member)
    twin.start()
    assert twin.wait_registered(10)
    wait_for(
        lambda: first.registered and first.registrations == 2, 15.0, what="first re-registered"
    )

    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        assert len(nodes(observer, zk_path)) == 2
        time.sleep(0.1)
    assert (first.registrations, twin.registrations) == (2, 1)
    assert {n.owner for n in nodes(observer, zk_path)} == {first.session_id, twin.session_id}


def test_auth_is_used_and_missing_auth_is_a_registration_error(
    zk_hosts: str,
    zk_path: str,
    kazoo_factory: KazooFactory,
    registration_factory: RegistrationFactory,
) -> None:
    """Under a path only a digest user may use, a registration with that user's credentials
    registers; one without them fails with RegistrationError (NoAuth) instead of retrying."""
    credentials = ("digest", "logserver:secret")
    admin = kazoo_factory(zk_hosts, auth_data=[credentials])
    acl = make_digest_acl("logserver", "secret", all=True)
    admin.create(zk_path, acl=[acl], makepath=True)

    allowed = registration_factory(zk_hosts, zk_path, auth=credentials)
    allowed.start()
    assert allowed.wait_registered(10)
    assert len(admin.get_children(zk_path)) == 1

    refused = registration_factory(zk_hosts, zk_path)
    refused.start()
    with pytest.raises(RegistrationError) as raised:
        refused.wait_registered(10)
    assert "NoAuth" in str(raised.value)
